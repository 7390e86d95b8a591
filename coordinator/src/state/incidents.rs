//! Incidents: opened by the first non-OK verdict of a check, with a
//! timeline of every verdict and region transition and of acknowledgements,
//! resolved when the verdict is OK again (after `recover_after` passing
//! rounds, which the region trackers enforce).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::verdict::{RegionState, Verdict, severity};

/// Resolved incidents kept (the oldest are forgotten first).
pub const KEEP_RESOLVED: usize = 1000;

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Log time, ms since the epoch.
    pub at_ms: i64,
    /// What happened.
    pub what: String,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Identifier, increasing.
    pub id: u64,
    /// The check.
    pub check: String,
    /// Current (or, once resolved, last non-OK) verdict.
    pub verdict: Verdict,
    /// Worst verdict seen: `outage` pages, `regional`/`blind` notify only.
    pub worst: String,
    /// When it opened.
    pub opened_ms: i64,
    /// When it resolved.
    pub resolved_ms: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// Everything that happened.
    pub timeline: Vec<Event>,
    /// Routing severity now: the check's severity for an outage, `info`
    /// for REGIONAL and BLIND notices.
    #[serde(default)]
    pub severity: String,
    /// When it reached that severity.
    #[serde(default)]
    pub severity_since_ms: i64,
    /// When it could first be notified at that severity (no silence held
    /// it): escalation steps count from here.
    #[serde(default)]
    pub escalation_since_ms: Option<i64>,
    /// Notifications queued for it, by idempotency key.
    #[serde(default)]
    pub notified: BTreeMap<String, Queued>,
    /// Notifications a silence held back (recorded once in the timeline).
    #[serde(default)]
    pub suppressed: BTreeSet<String>,
    /// Trace of the result that last changed its verdict (W3C
    /// traceparent), continued by the notifications queued after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// A notification queued for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Channel.
    pub channel: String,
    /// When (log time).
    pub at_ms: i64,
}

/// Timeline events kept per incident: the first (how it opened) and the
/// latest ones.
pub const MAX_TIMELINE: usize = 500;

impl Incident {
    /// Appends to the timeline (forgetting the oldest events but the first
    /// beyond [`MAX_TIMELINE`]).
    pub fn note(&mut self, at_ms: i64, what: impl Into<String>) {
        self.timeline.push(Event {
            at_ms,
            what: what.into(),
        });
        if self.timeline.len() > MAX_TIMELINE {
            self.timeline.remove(1);
        }
    }

    /// Marks it resolved.
    fn close(&mut self, at_ms: i64, what: &str) {
        self.resolved_ms = Some(at_ms);
        self.note(at_ms, what);
    }
}

/// All incidents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incidents {
    /// Next identifier.
    pub next_id: u64,
    /// Open incident per check.
    pub open: BTreeMap<String, u64>,
    /// Incidents by id.
    pub all: BTreeMap<u64, Incident>,
    /// Incidents changed since notifications were last planned.
    #[serde(default)]
    pub dirty: BTreeSet<u64>,
    /// Incidents whose verdict changed while applying the current command
    /// (cleared after each command, never persisted).
    #[serde(skip)]
    pub verdict_changed: Vec<u64>,
}

/// `OUTAGE (down from eu, ru)` and the like.
pub fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Ok => "OK".into(),
        Verdict::Regional { down } => format!("REGIONAL (down from {})", down.join(", ")),
        Verdict::Outage { down } => format!("OUTAGE (down from {})", down.join(", ")),
        Verdict::Impaired { region, reason } => format!("vantage {region} impaired: {reason}"),
        Verdict::Warning { regions, message } => {
            format!("WARNING from {}: {message}", regions.join(", "))
        }
        Verdict::Divergent { answers } => {
            let answers: Vec<String> = answers.iter().map(|(r, a)| format!("{r}: {a}")).collect();
            format!("DIVERGENT DNS answers ({})", answers.join("; "))
        }
        Verdict::Blind { voting, needed } => {
            format!(
                "BLIND ({} of {needed} needed regions can vote)",
                voting.len()
            )
        }
    }
}

impl Incidents {
    /// A check's verdict changed.
    pub fn on_verdict(&mut self, check: &str, new: &Verdict, at_ms: i64) {
        let event = Event {
            at_ms,
            what: format!("verdict {}", describe(new)),
        };
        match (self.open.get(check).copied(), new) {
            (None, Verdict::Ok) => {}
            (None, _) => {
                self.next_id += 1;
                let id = self.next_id;
                let incident = Incident {
                    id,
                    check: check.to_owned(),
                    verdict: new.clone(),
                    worst: new.name().into(),
                    opened_ms: at_ms,
                    resolved_ms: None,
                    acked_by: None,
                    timeline: vec![Event {
                        at_ms,
                        what: format!("opened: {}", describe(new)),
                    }],
                    severity: String::new(),
                    severity_since_ms: at_ms,
                    escalation_since_ms: None,
                    notified: BTreeMap::new(),
                    suppressed: BTreeSet::new(),
                    trace: None,
                };
                self.dirty.insert(id);
                self.verdict_changed.push(id);
                self.all.insert(id, incident);
                self.open.insert(check.to_owned(), id);
            }
            (Some(id), Verdict::Ok) => {
                self.open.remove(check);
                self.dirty.insert(id);
                self.verdict_changed.push(id);
                if let Some(i) = self.all.get_mut(&id) {
                    i.close(at_ms, "resolved: OK from every voting region");
                }
            }
            (Some(id), _) => {
                self.dirty.insert(id);
                self.verdict_changed.push(id);
                if let Some(i) = self.all.get_mut(&id) {
                    if severity(new.name()) > severity(&i.worst) {
                        i.worst = new.name().into();
                    }
                    i.verdict = new.clone();
                    i.note(event.at_ms, event.what);
                }
            }
        }
    }

    /// Gives the incidents whose verdict changed during this command the
    /// trace of the result on their check that changed it (`traces`: check
    /// → traceparent).
    pub fn attach_traces(&mut self, traces: &BTreeMap<&str, &str>) {
        for id in &self.verdict_changed {
            if let Some(i) = self.all.get_mut(id)
                && let Some(trace) = traces.get(i.check.as_str())
            {
                i.trace = Some((*trace).to_owned());
            }
        }
    }

    /// A region's state for a check changed: recorded while an incident is open.
    pub fn on_region(
        &mut self,
        check: &str,
        region: &str,
        old: RegionState,
        new: RegionState,
        at_ms: i64,
    ) {
        if let Some(i) = self.open.get(check).and_then(|id| self.all.get_mut(id)) {
            i.note(
                at_ms,
                format!("{region}: {old:?} -> {new:?}").to_lowercase(),
            );
        }
    }

    /// The check was deleted: its open incident ends.
    pub fn on_deleted(&mut self, check: &str, at_ms: i64) {
        if let Some(i) = self.open.remove(check).and_then(|id| self.all.get_mut(&id)) {
            self.dirty.insert(i.id);
            i.close(at_ms, "closed: the check was deleted");
        }
    }

    /// Acknowledges incident `id`; false if unknown or already resolved.
    pub fn ack(&mut self, id: u64, by: &str, at_ms: i64) -> bool {
        match self.all.get_mut(&id) {
            Some(i) if i.resolved_ms.is_none() => {
                if i.acked_by.is_none() {
                    self.dirty.insert(id);
                    i.acked_by = Some(by.to_owned());
                    i.note(at_ms, format!("acknowledged by {by}"));
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets the resolved incidents beyond [`KEEP_RESOLVED`], those
    /// resolved longest ago first; never one whose notifications are not
    /// planned yet. Called after planning.
    pub fn forget_old(&mut self) {
        let mut resolved: Vec<(i64, u64)> = self
            .all
            .values()
            .filter(|i| !self.dirty.contains(&i.id))
            .filter_map(|i| i.resolved_ms.map(|at| (at, i.id)))
            .collect();
        if resolved.len() <= KEEP_RESOLVED {
            return;
        }
        resolved.sort_unstable();
        for (_, id) in &resolved[..resolved.len() - KEEP_RESOLVED] {
            self.all.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regional() -> Verdict {
        Verdict::Regional {
            down: vec!["ru".into()],
        }
    }
    fn outage() -> Verdict {
        Verdict::Outage {
            down: vec!["eu".into(), "ru".into()],
        }
    }

    #[test]
    fn lifecycle_with_timeline_and_ack() {
        let mut inc = Incidents::default();
        inc.on_verdict("mx", &Verdict::Ok, 1);
        assert!(inc.all.is_empty(), "OK opens nothing");
        inc.on_verdict("mx", &regional(), 10);
        let id = inc.open["mx"];
        inc.on_region("mx", "eu", RegionState::Up, RegionState::Down, 20);
        inc.on_verdict("mx", &outage(), 20);
        assert!(inc.ack(id, "alice", 25));
        assert!(
            inc.ack(id, "bob", 26),
            "a second ack is accepted but keeps the first"
        );
        inc.on_verdict("mx", &regional(), 30);
        inc.on_verdict("mx", &Verdict::Ok, 40);
        let i = &inc.all[&id];
        assert_eq!(
            (i.worst.as_str(), i.resolved_ms, i.acked_by.as_deref()),
            ("outage", Some(40), Some("alice"))
        );
        let what: Vec<&str> = i.timeline.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "opened: REGIONAL (down from ru)",
                "eu: up -> down",
                "verdict OUTAGE (down from eu, ru)",
                "acknowledged by alice",
                "verdict REGIONAL (down from ru)",
                "resolved: OK from every voting region",
            ]
        );
        assert!(
            !inc.ack(id, "carol", 50),
            "resolved incidents cannot be acknowledged"
        );
        // The next fault opens a new incident.
        inc.on_verdict("mx", &outage(), 60);
        assert_eq!(inc.open["mx"], id + 1);
    }
}
