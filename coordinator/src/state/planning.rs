//! Alert planning: which incident goes to which channel when — routes,
//! escalation steps, reminders, resolutions — and what a silence holds
//! back. It owns its own data per incident ([`Plan`]: severity, escalation
//! clock, what was queued); incidents own theirs. The hand-off is one list:
//! the incidents that changed while a command was applied
//! (`Incidents::take_changed`), planned right after it.
//!
//! Planning is level-triggered and pure: for every incident that changed
//! (and for every open one when time passed, routes changed or a silence
//! ended), the notifications it should have had by now are computed from
//! the declaration and log time; those not yet queued and not silenced go
//! to the outbox under their [`Key`]. A key is queued at most once per
//! incident, so no replay, failover or flapping verdict can queue a second
//! page.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vantage_common::clock::human_duration;

use super::incidents::{Incident, Incidents, describe};
use super::outbox::Outbox;
use super::silences::Silences;
use crate::declared::{CheckDecl, Declared};
use crate::notification::{Event, Key, Message, Severity};
use crate::verdict::Verdict;

/// A notification queued for an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// When (log time).
    pub at_ms: i64,
}

/// What planning keeps for one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Routing severity now: the check's severity for an outage, `info`
    /// for REGIONAL and BLIND notices.
    pub severity: Severity,
    /// When it could first be notified at that severity (no silence held
    /// it): escalation steps count from here.
    pub escalation_since_ms: Option<i64>,
    /// Notifications queued for it.
    pub notified: BTreeMap<Key, Queued>,
    /// Notifications a silence held back (recorded once in the timeline).
    pub suppressed: BTreeSet<Key>,
}

/// Plans by incident id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Planning {
    /// By incident id.
    pub plans: BTreeMap<u64, Plan>,
}

/// Routing severity of a verdict: the check's own for an outage, `warning`
/// for warnings, divergent DNS answers and an impaired vantage (mesh
/// degraded), `info` for notices that must never page.
pub fn severity_of(verdict: &Verdict, check: Option<&CheckDecl>) -> Severity {
    match verdict {
        Verdict::Outage { .. } => check.map_or(Severity::Critical, |c| c.severity),
        Verdict::Impaired { .. } | Verdict::Warning { .. } | Verdict::Divergent { .. } => {
            Severity::Warning
        }
        Verdict::Changed { severity, .. } => *severity,
        Verdict::Ok | Verdict::Regional { .. } | Verdict::Blind { .. } => Severity::Info,
    }
}

/// The labels routes and silences match: the check's labels plus `check`,
/// `severity` and `verdict`.
pub fn labels_of(
    incident: &Incident,
    severity: Severity,
    check: Option<&CheckDecl>,
) -> BTreeMap<String, String> {
    let mut labels = check.map(|c| c.labels.clone()).unwrap_or_default();
    labels.insert("check".into(), incident.check.clone());
    labels.insert("severity".into(), severity.to_string());
    labels.insert("verdict".into(), incident.verdict.name().into());
    if let Verdict::Impaired { region, .. } = &incident.verdict {
        labels.insert("region".into(), region.clone());
    }
    labels
}

/// What a planning pass reads and where it queues.
#[derive(Debug)]
pub struct Context<'a> {
    /// Checks, routes and channels.
    pub declared: &'a Declared,
    /// What holds notifications back.
    pub silences: &'a Silences,
    /// Where notifications go.
    pub outbox: &'a mut Outbox,
    /// Log time.
    pub now_ms: i64,
}

impl Planning {
    /// The severity planned for incident `id`, once planned.
    pub fn severity(&self, id: u64) -> Option<Severity> {
        self.plans.get(&id).map(|p| p.severity)
    }

    /// Plans the notifications of incidents `ids`.
    pub fn plan(&mut self, ids: &BTreeSet<u64>, incidents: &mut Incidents, mut cx: Context<'_>) {
        if ids.is_empty() {
            return;
        }
        for id in ids {
            if let Some(incident) = incidents.all.get_mut(id) {
                let check = cx.declared.check(&incident.check);
                let plan = self.plans.entry(*id).or_insert_with(|| Plan {
                    severity: severity_of(&incident.verdict, check),
                    escalation_since_ms: None,
                    notified: BTreeMap::new(),
                    suppressed: BTreeSet::new(),
                });
                plan_one(plan, incident, check, &mut cx);
            }
        }
    }

    /// Drops the plans of incidents no longer kept.
    pub fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            self.plans.remove(id);
        }
    }
}

fn plan_one(
    plan: &mut Plan,
    incident: &mut Incident,
    check: Option<&CheckDecl>,
    cx: &mut Context<'_>,
) {
    let now_ms = cx.now_ms;
    // A change is notified once, at once: no escalation, no reminder, no
    // resolution.
    let event = incident.verdict.is_event();
    if incident.resolved_ms.is_some() && !event {
        // Everyone told it fired hears it ended, silences or not.
        let told: BTreeSet<String> = plan
            .notified
            .keys()
            .filter(|key| matches!(key, Key::Notice { .. }))
            .map(|key| key.channel().to_owned())
            .collect();
        for channel in told {
            let key = Key::Resolved {
                incident: incident.id,
                channel,
            };
            queue(plan, incident, check, key, Event::Resolved, cx);
        }
        return;
    }
    let severity = severity_of(&incident.verdict, check);
    if severity != plan.severity {
        plan.severity = severity;
        plan.escalation_since_ms = None;
    }
    let labels = labels_of(incident, plan.severity, check);
    let silence = cx.silences.holding(&labels, now_ms).map(|s| (s.id, s.kind));
    // Escalation steps count from the first moment the incident could be
    // notified at this severity: after a silence, not during it.
    if silence.is_none() && plan.escalation_since_ms.is_none() {
        plan.escalation_since_ms = Some(now_ms);
    }
    let age_ms = match plan.escalation_since_ms {
        Some(since) if !event => now_ms - since,
        _ => 0,
    };
    let mut wanted: Vec<Key> = Vec::new();
    for route in cx.declared.routes.iter().filter(|r| {
        check.is_none_or(|c| c.routes.is_empty() || c.routes.contains(&r.name))
            && r.takes(plan.severity)
            && r.matches.iter().all(|(k, v)| labels.get(k) == Some(v))
    }) {
        let steps = std::iter::once((0, &route.channels))
            .chain(route.escalate.iter().map(|s| (s.after.ms(), &s.channels)));
        let mut due: Vec<&String> = Vec::new();
        for (after_ms, channels) in steps {
            // Escalation stops at an acknowledgement; the first step does not.
            if age_ms >= after_ms && (after_ms == 0 || incident.acked_by.is_none()) {
                due.extend(channels);
            }
        }
        let repeat_ms = match route.repeat {
            Some(r) if incident.acked_by.is_none() && !event => Some(r.ms().max(1)),
            _ => None,
        };
        for channel in due {
            let first = Key::notice(incident.id, plan.severity, channel);
            // Reminders count from the first notice, once it went out.
            if let (Some(repeat), Some(sent)) = (repeat_ms, plan.notified.get(&first)) {
                let n = u64::try_from((now_ms - sent.at_ms) / repeat).unwrap_or(0);
                if n > 0 {
                    wanted.push(Key::Notice {
                        incident: incident.id,
                        severity: plan.severity,
                        channel: channel.clone(),
                        reminder: n,
                    });
                }
            }
            wanted.push(first);
        }
    }
    for key in wanted {
        if plan.notified.contains_key(&key) {
            continue;
        }
        if let Some((id, kind)) = silence {
            if plan.suppressed.insert(key.clone()) {
                incident.note(
                    now_ms,
                    format!(
                        "held back by {} {id}: {} to {}",
                        kind.describe(),
                        plan.severity,
                        key.channel()
                    ),
                );
            }
            continue;
        }
        queue(plan, incident, check, key, Event::Firing, cx);
    }
}

fn queue(
    plan: &mut Plan,
    incident: &mut Incident,
    check: Option<&CheckDecl>,
    key: Key,
    event: Event,
    cx: &mut Context<'_>,
) {
    if plan.notified.contains_key(&key) {
        return;
    }
    let now_ms = cx.now_ms;
    let summary = match event {
        Event::Firing => describe(&incident.verdict),
        Event::Resolved => format!(
            "resolved after {} (worst: {})",
            human_duration(now_ms - incident.opened_ms),
            incident.worst
        ),
    };
    let what = match event {
        Event::Firing if key.is_reminder() => "reminder".to_owned(),
        Event::Firing => plan.severity.to_string(),
        Event::Resolved => "resolved".to_owned(),
    };
    incident.note(
        now_ms,
        format!("queued {what} notification to {}", key.channel()),
    );
    if let Key::Notice {
        incident: id,
        severity,
        channel,
        reminder,
    } = &key
        && *reminder > 0
    {
        // Only the latest reminder key is needed to queue each once.
        let older = |k: &Key| {
            matches!(k, Key::Notice { incident: i, severity: s, channel: c, reminder: r }
                if i == id && s == severity && c == channel && *r > 0 && r != reminder)
        };
        plan.notified.retain(|k, _| !older(k));
        plan.suppressed.retain(|k| !older(k) && k != &key);
    }
    plan.notified.insert(key.clone(), Queued { at_ms: now_ms });
    cx.outbox.queue(
        Message {
            key,
            incident: incident.id,
            event,
            test: false,
            check: incident.check.clone(),
            severity: plan.severity,
            verdict: incident.verdict.name().into(),
            summary,
            labels: labels_of(incident, plan.severity, check),
            started_ms: incident.opened_ms,
            // A change's incident is over at once; its notice is no resolution.
            ended_ms: incident
                .resolved_ms
                .filter(|_| !incident.verdict.is_event()),
            trace: incident.trace.clone(),
        },
        now_ms,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::silences::{Silence, SilenceKind};

    const DECL: &str = r#"
[[check]]
name = "mx"
kind = "tcp"
target = "127.0.0.1"
regions = ["ru", "eu", "us"]
labels = { team = "mail" }
params = { port = 25 }

[[channel]]
name = "chat"
kind = "webhook"
settings = { url = "http://127.0.0.1:1/chat" }

[[channel]]
name = "pager"
kind = "pagerduty"
settings = { routing_key_env = "PD_KEY" }

[[channel]]
name = "boss"
kind = "webhook"
settings = { url = "http://127.0.0.1:1/boss" }

[[route]]
name = "notices"
match = { team = "mail" }
severities = ["info", "critical"]
channels = ["chat"]

[[route]]
name = "oncall"
match = { team = "mail" }
channels = ["pager"]
escalate = [{ after = "15m", channels = ["boss"] }]
repeat = "1h"
"#;

    const MIN: i64 = 60_000;

    fn declared() -> Declared {
        match Declared::parse(std::path::Path::new("t.toml"), DECL) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn outage() -> Verdict {
        Verdict::Outage {
            down: vec!["eu".into(), "ru".into()],
        }
    }

    fn regional() -> Verdict {
        Verdict::Regional {
            down: vec!["ru".into()],
        }
    }

    struct World {
        planning: Planning,
        outbox: Outbox,
        silences: Silences,
        incidents: Incidents,
        declared: Declared,
    }

    impl World {
        fn new() -> Self {
            World {
                planning: Planning::default(),
                outbox: Outbox::default(),
                silences: Silences::default(),
                incidents: Incidents::default(),
                declared: declared(),
            }
        }
        /// Keys queued so far, sorted.
        fn keys(&self) -> Vec<String> {
            let mut keys: Vec<String> = self.outbox.deliveries.keys().map(Key::to_string).collect();
            keys.sort();
            keys
        }
        fn plan(&mut self, ids: BTreeSet<u64>, at: i64) {
            let cx = Context {
                declared: &self.declared,
                silences: &self.silences,
                outbox: &mut self.outbox,
                now_ms: at,
            };
            self.planning.plan(&ids, &mut self.incidents, cx);
        }
        /// A verdict: the incidents it changed are planned.
        fn verdict(&mut self, v: &Verdict, at: i64) {
            self.incidents.on_verdict("mx", v, at);
            let changed = self.incidents.take_changed();
            self.plan(changed, at);
        }
        /// Time passes: every open incident is planned.
        fn tick(&mut self, at: i64) {
            let mut ids = self.incidents.take_changed();
            ids.extend(self.incidents.open.values().copied());
            self.plan(ids, at);
        }
    }

    #[test]
    fn regional_notices_reach_low_severity_routes_only() {
        let mut w = World::new();
        w.verdict(&regional(), 0);
        w.tick(30 * MIN);
        assert_eq!(w.keys(), ["1/info/chat"], "no page for REGIONAL");
        w.verdict(&Verdict::Ok, 31 * MIN);
        assert_eq!(w.keys(), ["1/info/chat", "1/resolved/chat"]);
    }

    #[test]
    fn an_outage_pages_once_per_channel_escalates_reminds_and_resolves_once() {
        let mut w = World::new();
        w.verdict(&regional(), 0);
        w.verdict(&outage(), MIN);
        assert_eq!(
            w.keys(),
            ["1/critical/chat", "1/critical/pager", "1/info/chat"]
        );
        // Flapping between verdicts inside the incident queues nothing new.
        for i in 0..10 {
            let v = if i % 2 == 0 { regional() } else { outage() };
            w.verdict(&v, MIN + i * 1000);
        }
        w.verdict(&outage(), 2 * MIN);
        assert_eq!(w.outbox.deliveries.len(), 3);
        // 15 min at critical, unacknowledged: the manager step.
        w.tick(2 * MIN + 15 * MIN);
        assert!(w.keys().contains(&"1/critical/boss".to_owned()));
        // An hour after each first notice: one reminder per channel of the route.
        w.tick(MIN + 61 * MIN);
        w.tick(MIN + 62 * MIN);
        w.tick(17 * MIN + 61 * MIN);
        let reminders: Vec<String> = w
            .keys()
            .into_iter()
            .filter(|k| k.contains("remind"))
            .collect();
        assert_eq!(
            reminders,
            ["1/critical/boss/remind1", "1/critical/pager/remind1"]
        );
        w.verdict(&Verdict::Ok, 3 * 60 * MIN);
        let resolved: Vec<String> = w
            .keys()
            .into_iter()
            .filter(|k| k.contains("resolved"))
            .collect();
        assert_eq!(
            resolved,
            ["1/resolved/boss", "1/resolved/chat", "1/resolved/pager"]
        );
        let before = w.outbox.deliveries.len();
        w.tick(4 * 60 * MIN);
        assert_eq!(w.outbox.deliveries.len(), before, "resolved is queued once");
        let key = Key::Resolved {
            incident: 1,
            channel: "pager".into(),
        };
        let m = &w.outbox.deliveries[&key].message;
        assert_eq!((m.event, m.incident), (Event::Resolved, 1));
        assert!(m.summary.contains("worst: outage"), "{}", m.summary);
    }

    #[test]
    fn an_acknowledgement_stops_escalation_and_reminders() {
        let mut w = World::new();
        w.verdict(&outage(), 0);
        assert!(w.incidents.ack(1, "alice", MIN));
        w.tick(MIN);
        w.tick(3 * 60 * MIN);
        assert_eq!(w.keys(), ["1/critical/chat", "1/critical/pager"]);
    }

    #[test]
    fn silences_hold_notifications_back_until_they_end() {
        let mut w = World::new();
        w.silences.add(Silence {
            id: 0,
            kind: SilenceKind::Silence,
            matchers: BTreeMap::from([("check".into(), "mx".into())]),
            starts_ms: 0,
            ends_ms: 120 * MIN,
            weekly: None,
            comment: "upgrade".into(),
            by: "alice".into(),
            expired_ms: None,
        });
        w.verdict(&outage(), MIN);
        w.tick(2 * MIN);
        assert!(w.outbox.deliveries.is_empty(), "silenced: nothing queued");
        let held: Vec<&str> = w.incidents.all[&1]
            .timeline
            .iter()
            .map(|e| e.what.as_str())
            .filter(|w| w.starts_with("held back"))
            .collect();
        assert_eq!(held.len(), 2, "recorded once per notification: {held:?}");
        // The silence ends while the outage goes on: the page goes out, and
        // escalation counts from now, not from the start of the outage.
        w.tick(121 * MIN);
        assert_eq!(w.keys(), ["1/critical/chat", "1/critical/pager"]);
        w.tick(135 * MIN);
        assert_eq!(w.outbox.deliveries.len(), 2);
        w.tick(136 * MIN);
        assert!(w.keys().contains(&"1/critical/boss".to_owned()));
    }

    #[test]
    fn a_change_is_notified_once_without_escalation_reminder_or_resolution() {
        let mut w = World::new();
        let changed = |severity| Verdict::Changed {
            summary: "SPF example.org: -all → ~all".into(),
            severity,
        };
        let id = w
            .incidents
            .on_change("mx", &changed(Severity::Critical), &["ru".into()], 0);
        let ids = w.incidents.take_changed();
        w.plan(ids, 0);
        // Hours later (escalation and reminder periods passed) nothing more.
        w.plan(BTreeSet::from([id]), 3 * 60 * MIN);
        assert_eq!(w.keys(), ["1/critical/chat", "1/critical/pager"]);
        let msg = &w
            .outbox
            .deliveries
            .values()
            .next()
            .map(|d| d.message.clone());
        assert!(
            msg.as_ref().is_some_and(|m| m.event == Event::Firing
                && m.ended_ms.is_none()
                && m.summary == "CHANGED SPF example.org: -all → ~all"),
            "{msg:?}"
        );
        // A renewal (info) reaches only the routes that take info.
        w.incidents
            .on_change("mx", &changed(Severity::Info), &["ru".into()], 4 * 60 * MIN);
        let ids = w.incidents.take_changed();
        w.plan(ids, 4 * 60 * MIN);
        assert_eq!(
            w.keys(),
            ["1/critical/chat", "1/critical/pager", "2/info/chat"]
        );
    }
}
