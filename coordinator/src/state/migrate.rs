//! Snapshots of earlier state layouts, brought up to [`STATE_VERSION`] on
//! load, so a rolling upgrade keeps its incidents, plans and outbox. (Log
//! entries need no migration: commands keep their serialised form.)
//!
//! - 1 → 2: alert planning left the incidents (`severity`,
//!   `escalation_since_ms`, `notified`, `suppressed` → `planning`), and the
//!   `alerts` object became `silences` and `outbox`.
//! - 2 → 3: snapshots hold the state as records, one per check
//!   (`state/stream.rs`), and roll-ups are 24 hours by the hour and 30 days
//!   by the day (`state/rollup.rs`; the hourly maps of 2 are read as such).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::stream::PerCheck;
use super::{STATE_VERSION, State};

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Not a state at all.
    #[error("snapshot is not a state: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a build this one cannot read (a newer one).
    #[error("snapshot holds state version {0}, this build reads 1..={STATE_VERSION}")]
    Version(u64),
    /// Ends before its last record.
    #[error("snapshot is truncated")]
    Truncated,
    /// Could not be read.
    #[error("reading the snapshot: {0}")]
    Io(#[from] std::io::Error),
}

/// The version alone (the rest skipped, not built).
#[derive(serde::Deserialize)]
struct Version {
    #[serde(default)]
    version: u64,
}

/// Reads the core record of a snapshot in records (`state/stream.rs`).
pub fn core(bytes: &[u8]) -> Result<State, MigrateError> {
    let Version { version } = serde_json::from_slice(bytes)?;
    if version != u64::from(STATE_VERSION) {
        return Err(MigrateError::Version(version));
    }
    Ok(serde_json::from_slice(bytes)?)
}

/// Reads a state serialised as one JSON document (snapshots before 0.8),
/// of any known version.
pub fn load(bytes: &[u8]) -> Result<State, MigrateError> {
    let Version { version } = serde_json::from_slice(bytes)?;
    // 2 → 3 needs no rewriting: roll-ups read either form.
    let (mut state, per_check): (State, PerCheck) =
        if (2..=u64::from(STATE_VERSION)).contains(&version) {
            // Straight into the state: a generic JSON tree of a large state
            // takes several times its size in memory.
            (
                serde_json::from_slice(bytes)?,
                serde_json::from_slice(bytes)?,
            )
        } else {
            let mut value: Value = serde_json::from_slice(bytes)?;
            match version {
                1 => v1_to_v2(&mut value),
                v => return Err(MigrateError::Version(v)),
            }
            (
                serde_json::from_value(value.clone())?,
                serde_json::from_value(value)?,
            )
        };
    state.results = per_check
        .results
        .into_iter()
        .map(|(name, mut r)| {
            r.share();
            (name, Arc::new(r))
        })
        .collect();
    state.verdicts = per_check
        .verdicts
        .into_iter()
        .map(|(name, mut v)| {
            v.share();
            (name, Arc::new(v))
        })
        .collect();
    state.version = STATE_VERSION;
    Ok(state)
}

fn v1_to_v2(state: &mut Value) {
    let Some(root) = state.as_object_mut() else {
        return; // not an object: deserialising reports it
    };
    let mut alerts = root.remove("alerts").unwrap_or_else(|| json!({}));
    root.insert("outbox".into(), take(&mut alerts, "outbox"));
    root.insert(
        "silences".into(),
        json!({
            "by_id": take(&mut alerts, "silences"),
            "last_id": take(&mut alerts, "last_silence"),
        }),
    );
    let mut plans = Map::new();
    if let Some(incidents) = root.get_mut("incidents").and_then(Value::as_object_mut) {
        incidents.remove("dirty");
        if let Some(all) = incidents.get_mut("all").and_then(Value::as_object_mut) {
            for (id, incident) in all.iter_mut() {
                let severity = take(incident, "severity");
                let escalation_since_ms = take(incident, "escalation_since_ms");
                let notified = take(incident, "notified");
                let suppressed = take(incident, "suppressed");
                take(incident, "severity_since_ms");
                // Never planned (an empty severity): nothing to keep.
                if severity.as_str().is_none_or(str::is_empty) {
                    continue;
                }
                let notified: Map<String, Value> = notified
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(key, q)| (key.clone(), json!({ "at_ms": q["at_ms"] })))
                    .collect();
                plans.insert(
                    id.clone(),
                    json!({
                        "severity": severity,
                        "escalation_since_ms": escalation_since_ms,
                        "notified": notified,
                        "suppressed": if suppressed.is_null() { json!([]) } else { suppressed },
                    }),
                );
            }
        }
    }
    root.insert("planning".into(), Value::Object(plans));
    root.insert("version".into(), json!(2));
}

/// Removes `key` from an object (null when absent).
fn take(value: &mut Value, key: &str) -> Value {
    value
        .as_object_mut()
        .and_then(|o| o.remove(key))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::{Key, Severity};

    /// The layout version 1 wrote: one incident paged on two channels,
    /// one delivered, a silence.
    const V1: &str = r#"{
      "version": 1,
      "declared": {"check": [{"name": "mx", "kind": "tcp", "target": "127.0.0.1",
        "interval": "60s", "regions": ["ru", "eu"], "labels": {}, "fail_after": 2,
        "recover_after": 2, "quorum": "majority", "severity": "critical", "routes": [],
        "params": {"port": 25}}], "channel": [], "route": []},
      "revoked": [], "agents": {}, "results": {}, "verdicts": {},
      "incidents": {"next_id": 1, "open": {"mx": 1}, "dirty": [],
        "all": {"1": {"id": 1, "check": "mx", "verdict": {"Outage": {"down": ["eu", "ru"]}},
          "worst": "outage", "opened_ms": 1000, "resolved_ms": null, "acked_by": null,
          "timeline": [{"at_ms": 1000, "what": "opened"}],
          "severity": "critical", "severity_since_ms": 1000, "escalation_since_ms": 1000,
          "notified": {"1/critical/pager": {"channel": "pager", "at_ms": 1000},
                       "1/critical/chat": {"channel": "chat", "at_ms": 1000}},
          "suppressed": ["1/critical/boss"]}}},
      "alerts": {"outbox": {"1/critical/pager": {"message": {"key": "1/critical/pager",
          "incident": 1, "event": "firing", "check": "mx", "severity": "critical",
          "verdict": "outage", "summary": "OUTAGE", "labels": {}, "started_ms": 1000,
          "ended_ms": null}, "channel": "pager", "queued_ms": 1000, "attempts": 0,
          "next_attempt_ms": 1000, "last_error": null, "state": "delivered",
          "finished_ms": 1200}},
        "silences": {"3": {"id": 3, "kind": "silence", "matchers": {"check": "mx"},
          "starts_ms": 0, "ends_ms": 5000, "weekly": null, "comment": "", "by": "alice",
          "expired_ms": null}},
        "last_silence": 3},
      "impaired": {}, "applied_commands": 9, "clock_ms": 1200
    }"#;

    #[test]
    fn version_1_keeps_plans_outbox_and_silences() {
        let state = match load(V1.as_bytes()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(state.version, STATE_VERSION);
        let plan = &state.planning.plans[&1];
        assert_eq!(plan.severity, Severity::Critical);
        assert_eq!(plan.escalation_since_ms, Some(1000));
        assert!(
            plan.notified
                .contains_key(&Key::notice(1, Severity::Critical, "pager"))
        );
        assert_eq!(plan.notified.len(), 2);
        assert!(
            plan.suppressed
                .contains(&Key::notice(1, Severity::Critical, "boss"))
        );
        assert_eq!(state.outbox.deliveries.len(), 1);
        assert_eq!((state.silences.last_id, state.silences.by_id.len()), (3, 1));
        assert_eq!(state.incidents.open["mx"], 1);
        assert_eq!(state.declared.checks[0].interval.secs(), 60);
        // And it reads back as the current layout.
        let mut again = Vec::new();
        assert!(super::super::stream::write(&state, &mut again).is_ok());
        assert!(super::super::stream::read(&mut again.as_slice()).is_ok_and(|s| s == state));
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        assert!(matches!(
            load(br#"{"version": 99}"#),
            Err(MigrateError::Version(99))
        ));
        assert!(matches!(load(b"[1, 2"), Err(MigrateError::Malformed(_))));
    }
}
