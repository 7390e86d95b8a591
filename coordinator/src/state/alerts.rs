//! Notifications as the cluster agrees on them: which incident goes to
//! which channel when (routes, escalation steps, reminders), silences and
//! maintenance windows that hold notifications back, and the outbox the
//! leader delivers from, with every attempt's outcome written back.
//!
//! Planning is level-triggered and pure: for every incident that changed
//! (and for every open one on each `Tick`), the notifications it should
//! have had by now are computed from the declaration and log time; those
//! not yet queued and not silenced are queued under an idempotency key
//! `<incident>/<severity>/<channel>` (reminders add `/remind<n>`, the
//! resolution is `<incident>/resolved/<channel>`). A key is queued at most
//! once per incident, so no replay, failover or flapping verdict can queue
//! a second page; a notification a silence held back is queued when the
//! silence ends if the incident is still open.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::incidents::{Incident, Incidents, Queued, describe};
use crate::alert::{Event, Message};
use crate::declared::{CheckDecl, Declared};
use crate::verdict::Verdict;

/// Finished deliveries kept in the outbox for listings.
pub const KEEP_FINISHED: usize = 1000;
/// Age after which an undelivered notification is abandoned (retries go
/// on until then, at most every 5 minutes).
pub const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Ended silences are forgotten after this long.
const KEEP_SILENCES_MS: i64 = 7 * 24 * 3600 * 1000;
/// One week in ms.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// 1970-01-05T00:00:00Z, the first Monday of the epoch.
pub const FIRST_MONDAY_MS: i64 = 4 * 24 * 3600 * 1000;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet acknowledged by the receiver.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Given up after too many attempts or too long.
    Abandoned,
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// What is sent (its `key` is the outbox key).
    pub message: Message,
    /// Channel name.
    pub channel: String,
    /// When it was queued (log time).
    pub queued_ms: i64,
    /// Attempts that failed.
    pub attempts: u32,
    /// Not before this time (backoff after a failure).
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Pending, delivered or abandoned.
    pub state: DeliveryState,
    /// When it was delivered or abandoned.
    pub finished_ms: Option<i64>,
}

/// Silence or maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceKind {
    /// Ad hoc, from now for a while.
    Silence,
    /// Planned: one-off or weekly.
    Maintenance,
}

/// A weekly recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weekly {
    /// Start within the week, ms after Monday 00:00 UTC.
    pub offset_ms: i64,
    /// Length of each window.
    pub duration_ms: i64,
}

/// Holds back notifications of matching incidents; results, verdicts and
/// timelines go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Identifier (assigned when added).
    pub id: u64,
    /// Silence or maintenance.
    pub kind: SilenceKind,
    /// Labels an incident must carry (`check`, `severity`, the check's labels).
    pub matchers: BTreeMap<String, String>,
    /// First moment it holds.
    pub starts_ms: i64,
    /// End of a one-off window; for a weekly one, when the recurrence stops
    /// (`i64::MAX` for never).
    pub ends_ms: i64,
    /// Weekly recurrence.
    pub weekly: Option<Weekly>,
    /// Why.
    pub comment: String,
    /// Operator who added it.
    pub by: String,
    /// Ended early by an operator.
    pub expired_ms: Option<i64>,
}

impl Weekly {
    /// Windows of `duration_ms` each week at the time of week of `starts_ms`.
    pub fn starting_at(starts_ms: i64, duration_ms: i64) -> Weekly {
        Weekly {
            offset_ms: (starts_ms - FIRST_MONDAY_MS).rem_euclid(WEEK_MS),
            duration_ms,
        }
    }
}

impl Silence {
    /// Does it hold at `t`?
    pub fn active(&self, t: i64) -> bool {
        if t < self.starts_ms || t >= self.ends_ms || self.expired_ms.is_some_and(|e| e <= t) {
            return false;
        }
        match self.weekly {
            None => true,
            Some(w) => {
                let in_week = (t - FIRST_MONDAY_MS).rem_euclid(WEEK_MS);
                (in_week - w.offset_ms).rem_euclid(WEEK_MS) < w.duration_ms
            }
        }
    }

    /// Does it match these labels?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    fn over(&self, t: i64) -> bool {
        self.expired_ms.is_some_and(|e| e <= t) || self.ends_ms <= t
    }
}

/// Outbox and silences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {
    /// Deliveries by idempotency key.
    pub outbox: BTreeMap<String, Delivery>,
    /// Silences and maintenance windows by id.
    pub silences: BTreeMap<u64, Silence>,
    /// Last silence id given.
    pub last_silence: u64,
}

/// Routing severity of a verdict: the check's own for an outage, `warning`
/// for warnings, divergent DNS answers and an impaired vantage (mesh
/// degraded), `info` for notices that must never page.
pub fn severity_of(verdict: &Verdict, check: Option<&CheckDecl>) -> String {
    match verdict {
        Verdict::Outage { .. } => check.map_or("critical", |c| c.severity.as_str()).to_owned(),
        Verdict::Impaired { .. } | Verdict::Warning { .. } | Verdict::Divergent { .. } => {
            "warning".to_owned()
        }
        Verdict::Ok | Verdict::Regional { .. } | Verdict::Blind { .. } => "info".to_owned(),
    }
}

/// The labels routes and silences match: the check's labels plus `check`,
/// `severity` and `verdict`.
pub fn labels_of(incident: &Incident, check: Option<&CheckDecl>) -> BTreeMap<String, String> {
    let mut labels = check.map(|c| c.labels.clone()).unwrap_or_default();
    labels.insert("check".into(), incident.check.clone());
    labels.insert("severity".into(), incident.severity.clone());
    labels.insert("verdict".into(), incident.verdict.name().into());
    if let Verdict::Impaired { region, .. } = &incident.verdict {
        labels.insert("region".into(), region.clone());
    }
    labels
}

impl Alerts {
    /// Adds a silence; returns its id.
    pub fn add_silence(&mut self, mut silence: Silence) -> u64 {
        self.last_silence += 1;
        silence.id = self.last_silence;
        self.silences.insert(silence.id, silence);
        self.last_silence
    }

    /// Ends silence `id` now; false if unknown or already over.
    pub fn expire_silence(&mut self, id: u64, at_ms: i64) -> bool {
        match self.silences.get_mut(&id) {
            Some(s) if !s.over(at_ms) => {
                s.expired_ms = Some(at_ms);
                true
            }
            _ => false,
        }
    }

    /// Plans notifications for the incidents that changed and, when
    /// `all_open`, for every open one (escalation by age, reminders, ended
    /// silences).
    pub fn plan(
        &mut self,
        incidents: &mut Incidents,
        declared: &Declared,
        now_ms: i64,
        all_open: bool,
    ) {
        let mut ids = std::mem::take(&mut incidents.dirty);
        if all_open {
            ids.extend(incidents.open.values().copied());
        }
        if ids.is_empty() {
            return;
        }
        let checks = declared.checks_by_name();
        let mut resolved = false;
        for id in ids {
            if let Some(incident) = incidents.all.get_mut(&id) {
                let check = checks.get(incident.check.as_str()).copied();
                self.plan_one(incident, check, declared, now_ms);
                resolved |= incident.resolved_ms.is_some();
            }
        }
        if resolved {
            incidents.forget_old();
        }
    }

    fn plan_one(
        &mut self,
        incident: &mut Incident,
        check: Option<&CheckDecl>,
        declared: &Declared,
        now_ms: i64,
    ) {
        if incident.resolved_ms.is_some() {
            // Everyone told it fired hears it ended, silences or not.
            let told: BTreeSet<String> = incident
                .notified
                .iter()
                .filter(|(key, _)| !key.contains("/resolved/"))
                .map(|(_, q)| q.channel.clone())
                .collect();
            for channel in told {
                let key = format!("{}/resolved/{channel}", incident.id);
                self.queue(incident, check, &key, &channel, Event::Resolved, now_ms);
            }
            return;
        }
        let severity = severity_of(&incident.verdict, check);
        if severity != incident.severity {
            incident.severity = severity;
            incident.severity_since_ms = now_ms;
            incident.escalation_since_ms = None;
        }
        let labels = labels_of(incident, check);
        let silence = self
            .silences
            .values()
            .find(|s| s.active(now_ms) && s.matches(&labels))
            .map(|s| (s.id, s.kind));
        // Escalation steps count from the first moment the incident could
        // be notified at this severity: after a silence, not during it.
        if silence.is_none() && incident.escalation_since_ms.is_none() {
            incident.escalation_since_ms = Some(now_ms);
        }
        let age_ms = incident
            .escalation_since_ms
            .map_or(0, |since| now_ms - since);
        let mut wanted: Vec<(String, String)> = Vec::new();
        for route in declared.routes.iter().filter(|r| {
            check.is_none_or(|c| c.routes.is_empty() || c.routes.contains(&r.name))
                && r.takes(&incident.severity)
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
                Some(r) if incident.acked_by.is_none() => Some(r.ms().max(1)),
                _ => None,
            };
            for channel in due {
                let base = format!("{}/{}/{channel}", incident.id, incident.severity);
                // Reminders count from the first notice, once it went out.
                if let (Some(repeat), Some(first)) = (repeat_ms, incident.notified.get(&base)) {
                    let n = (now_ms - first.at_ms) / repeat;
                    if n > 0 {
                        wanted.push((format!("{base}/remind{n}"), channel.clone()));
                    }
                }
                wanted.push((base, channel.clone()));
            }
        }
        for (key, channel) in wanted {
            if incident.notified.contains_key(&key) {
                continue;
            }
            if let Some((id, kind)) = silence {
                if incident.suppressed.insert(key.clone()) {
                    let kind = match kind {
                        SilenceKind::Silence => "silence",
                        SilenceKind::Maintenance => "maintenance window",
                    };
                    incident.note(
                        now_ms,
                        format!(
                            "held back by {kind} {id}: {} to {channel}",
                            incident.severity
                        ),
                    );
                }
                continue;
            }
            self.queue(incident, check, &key, &channel, Event::Firing, now_ms);
        }
    }

    fn queue(
        &mut self,
        incident: &mut Incident,
        check: Option<&CheckDecl>,
        key: &str,
        channel: &str,
        event: Event,
        now_ms: i64,
    ) {
        if incident.notified.contains_key(key) {
            return;
        }
        let summary = match event {
            Event::Firing => describe(&incident.verdict),
            Event::Resolved => format!(
                "resolved after {} (worst: {})",
                human_duration(now_ms - incident.opened_ms),
                incident.worst
            ),
        };
        let message = Message {
            key: key.to_owned(),
            incident: incident.id,
            event,
            test: false,
            check: incident.check.clone(),
            severity: incident.severity.clone(),
            verdict: incident.verdict.name().into(),
            summary,
            labels: labels_of(incident, check),
            started_ms: incident.opened_ms,
            ended_ms: incident.resolved_ms,
            trace: incident.trace.clone(),
        };
        let what = match event {
            Event::Firing if key.contains("/remind") => "reminder",
            Event::Firing => incident.severity.as_str(),
            Event::Resolved => "resolved",
        };
        incident.note(now_ms, format!("queued {what} notification to {channel}"));
        if let Some((base, _)) = key.split_once("/remind") {
            // Only the latest reminder key is needed to queue each once.
            let prefix = format!("{base}/remind");
            incident
                .notified
                .retain(|k, _| !k.starts_with(&prefix) || k == key);
            incident.suppressed.retain(|k| !k.starts_with(&prefix));
        }
        incident.notified.insert(
            key.to_owned(),
            Queued {
                channel: channel.to_owned(),
                at_ms: now_ms,
            },
        );
        self.outbox.insert(
            key.to_owned(),
            Delivery {
                message,
                channel: channel.to_owned(),
                queued_ms: now_ms,
                attempts: 0,
                next_attempt_ms: now_ms,
                last_error: None,
                state: DeliveryState::Pending,
                finished_ms: None,
            },
        );
    }

    /// The receiver accepted `key`.
    pub fn delivered(&mut self, incidents: &mut Incidents, key: &str, at_ms: i64) -> bool {
        let Some(d) = self.outbox.get_mut(key) else {
            return false;
        };
        if d.state != DeliveryState::Pending {
            return false; // a late duplicate acknowledgement
        }
        d.state = DeliveryState::Delivered;
        d.finished_ms = Some(at_ms);
        if let Some(i) = incidents.all.get_mut(&d.message.incident) {
            i.note(at_ms, format!("delivered to {}", d.channel));
        }
        self.forget_finished();
        true
    }

    /// An attempt at `key` failed: back off, or give up once it is a day
    /// old. The timeline notes the first failure, then one in twelve.
    pub fn failed(
        &mut self,
        incidents: &mut Incidents,
        key: &str,
        error: &str,
        at_ms: i64,
    ) -> bool {
        let Some(d) = self.outbox.get_mut(key) else {
            return false;
        };
        if d.state != DeliveryState::Pending {
            return false;
        }
        d.attempts += 1;
        d.last_error = Some(error.to_owned());
        d.next_attempt_ms = at_ms.saturating_add(backoff_ms(d.attempts));
        let give_up = at_ms - d.queued_ms > MAX_AGE_MS;
        if give_up {
            d.state = DeliveryState::Abandoned;
            d.finished_ms = Some(at_ms);
        }
        if let Some(i) = incidents.all.get_mut(&d.message.incident) {
            let (channel, n) = (&d.channel, d.attempts);
            if give_up {
                i.note(
                    at_ms,
                    format!("gave up on {channel} after {n} attempts: {error}"),
                );
            } else if n % 12 == 1 {
                i.note(
                    at_ms,
                    format!("delivery to {channel} failed (attempt {n}): {error}"),
                );
            }
        }
        if give_up {
            self.forget_finished();
        }
        true
    }

    /// Forgets silences long over.
    pub fn prune(&mut self, now_ms: i64) {
        self.silences
            .retain(|_, s| !s.over(now_ms - KEEP_SILENCES_MS));
    }

    fn forget_finished(&mut self) {
        let mut finished: Vec<(i64, String)> = self
            .outbox
            .iter()
            .filter(|(_, d)| d.state != DeliveryState::Pending)
            .map(|(k, d)| (d.finished_ms.unwrap_or(0), k.clone()))
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        for (_, key) in finished.iter().take(finished.len() - KEEP_FINISHED) {
            self.outbox.remove(key);
        }
    }
}

/// Wait after `attempts` failures: 2 s doubling, at most 5 min.
pub fn backoff_ms(attempts: u32) -> i64 {
    (2_000i64 << attempts.saturating_sub(1).min(8)).min(300_000)
}

/// `2h13m`, `4m05s`, `12s`.
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Keys queued so far, sorted.
    fn keys(a: &Alerts) -> Vec<String> {
        a.outbox.keys().cloned().collect()
    }

    struct World {
        alerts: Alerts,
        incidents: Incidents,
        declared: Declared,
    }

    impl World {
        fn new() -> Self {
            World {
                alerts: Alerts::default(),
                incidents: Incidents::default(),
                declared: declared(),
            }
        }
        fn verdict(&mut self, v: &Verdict, at: i64) {
            self.incidents.on_verdict("mx", v, at);
            self.alerts
                .plan(&mut self.incidents, &self.declared, at, false);
        }
        fn tick(&mut self, at: i64) {
            self.alerts
                .plan(&mut self.incidents, &self.declared, at, true);
        }
    }

    #[test]
    fn regional_notices_reach_low_severity_routes_only() {
        let mut w = World::new();
        w.verdict(&regional(), 0);
        w.tick(30 * MIN);
        assert_eq!(keys(&w.alerts), ["1/info/chat"], "no page for REGIONAL");
        w.verdict(&Verdict::Ok, 31 * MIN);
        assert_eq!(keys(&w.alerts), ["1/info/chat", "1/resolved/chat"]);
    }

    #[test]
    fn an_outage_pages_once_per_channel_escalates_reminds_and_resolves_once() {
        let mut w = World::new();
        w.verdict(&regional(), 0);
        w.verdict(&outage(), MIN);
        assert_eq!(
            keys(&w.alerts),
            ["1/critical/chat", "1/critical/pager", "1/info/chat"]
        );
        // Flapping between verdicts inside the incident queues nothing new.
        for i in 0..10 {
            let v = if i % 2 == 0 { regional() } else { outage() };
            w.verdict(&v, MIN + i * 1000);
        }
        w.verdict(&outage(), 2 * MIN);
        assert_eq!(w.alerts.outbox.len(), 3);
        // 15 min at critical, unacknowledged: the manager step.
        w.tick(2 * MIN + 15 * MIN);
        assert!(w.alerts.outbox.contains_key("1/critical/boss"));
        // An hour after each first notice: one reminder per channel of the route.
        w.tick(MIN + 61 * MIN);
        w.tick(MIN + 62 * MIN);
        w.tick(17 * MIN + 61 * MIN);
        let reminders: Vec<String> = keys(&w.alerts)
            .into_iter()
            .filter(|k| k.contains("remind"))
            .collect();
        assert_eq!(
            reminders,
            ["1/critical/boss/remind1", "1/critical/pager/remind1"]
        );
        w.verdict(&Verdict::Ok, 3 * 60 * MIN);
        let resolved: Vec<String> = keys(&w.alerts)
            .into_iter()
            .filter(|k| k.contains("resolved"))
            .collect();
        assert_eq!(
            resolved,
            ["1/resolved/boss", "1/resolved/chat", "1/resolved/pager"]
        );
        let before = w.alerts.outbox.len();
        w.tick(4 * 60 * MIN);
        assert_eq!(w.alerts.outbox.len(), before, "resolved is queued once");
        let m = &w.alerts.outbox["1/resolved/pager"].message;
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
        assert_eq!(keys(&w.alerts), ["1/critical/chat", "1/critical/pager"]);
    }

    #[test]
    fn silences_hold_notifications_back_until_they_end() {
        let mut w = World::new();
        w.alerts.add_silence(Silence {
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
        assert!(w.alerts.outbox.is_empty(), "silenced: nothing queued");
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
        assert_eq!(keys(&w.alerts), ["1/critical/chat", "1/critical/pager"]);
        w.tick(135 * MIN);
        assert_eq!(w.alerts.outbox.len(), 2);
        w.tick(136 * MIN);
        assert!(w.alerts.outbox.contains_key("1/critical/boss"));
    }

    #[test]
    fn an_expired_silence_releases_and_weekly_windows_recur() {
        let mut a = Alerts::default();
        let weekly = Silence {
            id: 0,
            kind: SilenceKind::Maintenance,
            matchers: BTreeMap::from([("team".into(), "mail".into())]),
            // Sunday 1970-01-11 02:00 UTC, two hours, every week.
            starts_ms: FIRST_MONDAY_MS + 6 * 86_400_000 + 2 * 3_600_000,
            ends_ms: i64::MAX,
            weekly: Some(Weekly {
                offset_ms: 6 * 86_400_000 + 2 * 3_600_000,
                duration_ms: 2 * 3_600_000,
            }),
            comment: String::new(),
            by: "ops".into(),
            expired_ms: None,
        };
        let id = a.add_silence(weekly.clone());
        let s = &a.silences[&id];
        let sunday_3am_week_5 = weekly.starts_ms + 5 * WEEK_MS + 3_600_000;
        assert!(s.active(sunday_3am_week_5));
        assert!(!s.active(sunday_3am_week_5 + 2 * 3_600_000));
        assert!(
            !s.active(weekly.starts_ms - 3_600_000),
            "not before it starts"
        );
        assert!(a.expire_silence(id, sunday_3am_week_5));
        assert!(!a.silences[&id].active(sunday_3am_week_5 + WEEK_MS));
        assert!(!a.expire_silence(id, sunday_3am_week_5), "already over");
    }

    #[test]
    fn failures_back_off_and_are_abandoned() {
        let mut w = World::new();
        w.verdict(&outage(), 0);
        let key = "1/critical/pager";
        assert!(w.alerts.failed(&mut w.incidents, key, "HTTP 500", 1000));
        assert_eq!(w.alerts.outbox[key].next_attempt_ms, 1000 + 2000);
        assert!(w.alerts.failed(&mut w.incidents, key, "HTTP 500", 3000));
        assert_eq!(w.alerts.outbox[key].next_attempt_ms, 3000 + 4000);
        for i in 2..40 {
            w.alerts
                .failed(&mut w.incidents, key, "HTTP 500", 10_000 + i);
        }
        assert_eq!(
            w.alerts.outbox[key].state,
            DeliveryState::Pending,
            "retried for a day"
        );
        let noted = w.incidents.all[&1]
            .timeline
            .iter()
            .filter(|e| e.what.starts_with("delivery to pager failed"))
            .count();
        assert_eq!(noted, 4, "attempts 1, 13, 25, 37 noted");
        w.alerts
            .failed(&mut w.incidents, key, "HTTP 500", MAX_AGE_MS + 1);
        assert_eq!(w.alerts.outbox[key].state, DeliveryState::Abandoned);
        assert!(!w.alerts.delivered(&mut w.incidents, key, 20_000));
        assert!(
            w.alerts
                .delivered(&mut w.incidents, "1/critical/chat", 20_000)
        );
        assert!(
            !w.alerts
                .delivered(&mut w.incidents, "1/critical/chat", 20_001),
            "a duplicate acknowledgement changes nothing"
        );
        assert_eq!(backoff_ms(30), 300_000);
    }
}
