//! Incidents: opened by the first non-OK verdict of a check, with a
//! timeline of every verdict and region transition and of acknowledgements,
//! resolved when the verdict is OK again (after `recover_after` passing
//! rounds, which the region trackers enforce).
//!
//! Every change to an incident is journalled; the state hands the journal
//! to alert planning once per command ([`Incidents::take_changed`]).

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

/// How the timeline events about the check itself begin (the rest are
/// about notifications and acknowledgements); region transitions read
/// `<region>: <old> -> <new>`.
const CHECK_EVENTS: [&str; 5] = [
    "opened: ",
    "verdict ",
    "resolved: ",
    "recorded: ",
    "closed: ",
];

impl Event {
    /// Whether it is about the check itself — opened, verdicts, region
    /// transitions, resolved — rather than the notifications (which name
    /// channels) or who acknowledged it: what a status page may show.
    pub fn is_about_the_check(&self) -> bool {
        if CHECK_EVENTS.iter().any(|p| self.what.starts_with(p)) {
            return true;
        }
        self.what.split_once(": ").is_some_and(|(region, change)| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && change.contains(" -> ")
        })
    }
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
    /// Trace of the result that last changed its verdict (W3C
    /// traceparent), continued by the notifications queued after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
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
    /// Changes since the journal was last taken (within one command; never
    /// persisted: every command ends by taking it).
    #[serde(skip)]
    journal: Vec<Change>,
}

/// One journalled change to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    id: u64,
    /// Its verdict changed (opened, moved, resolved).
    verdict: bool,
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
        Verdict::Changed { summary, .. } => format!("CHANGED {summary}"),
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
                    trace: None,
                };
                self.changed(id, true);
                self.all.insert(id, incident);
                self.open.insert(check.to_owned(), id);
            }
            (Some(id), Verdict::Ok) => {
                self.open.remove(check);
                self.changed(id, true);
                if let Some(i) = self.all.get_mut(&id) {
                    i.close(at_ms, "resolved: OK from every voting region");
                }
            }
            (Some(id), _) => {
                self.changed(id, true);
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

    /// What a check observes changed (`verdict` is a
    /// [`Verdict::Changed`]): a one-shot incident, opened and resolved at
    /// once, apart from the check's open incident. Returns its id.
    pub fn on_change(
        &mut self,
        check: &str,
        verdict: &Verdict,
        regions: &[String],
        at_ms: i64,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut incident = Incident {
            id,
            check: check.to_owned(),
            verdict: verdict.clone(),
            worst: verdict.name().into(),
            opened_ms: at_ms,
            resolved_ms: None,
            acked_by: None,
            timeline: vec![Event {
                at_ms,
                what: format!(
                    "opened: {} (seen from {})",
                    describe(verdict),
                    regions.join(", ")
                ),
            }],
            trace: None,
        };
        incident.close(at_ms, "recorded: the new value is the baseline");
        self.changed(id, true);
        self.all.insert(id, incident);
        id
    }

    fn changed(&mut self, id: u64, verdict: bool) {
        self.journal.push(Change { id, verdict });
    }

    /// Where the journal stands now (see [`Incidents::attach_traces`]).
    pub fn mark(&self) -> usize {
        self.journal.len()
    }

    /// The incidents changed since the journal was last taken, emptying it:
    /// the one hand-off to alert planning, once per command.
    pub fn take_changed(&mut self) -> BTreeSet<u64> {
        self.journal.drain(..).map(|c| c.id).collect()
    }

    /// Appends to the timeline of incident `id`, if it is kept.
    pub fn note(&mut self, id: u64, at_ms: i64, what: impl Into<String>) {
        if let Some(i) = self.all.get_mut(&id) {
            i.note(at_ms, what);
        }
    }

    /// Gives the incidents whose verdict changed since `mark` the trace of
    /// the result on their check that changed it (`traces`: check →
    /// traceparent).
    pub fn attach_traces(&mut self, mark: usize, traces: &BTreeMap<&str, &str>) {
        let changed: Vec<u64> = self
            .journal
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .filter(|c| c.verdict)
            .map(|c| c.id)
            .collect();
        for id in &changed {
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
        if let Some(id) = self.open.remove(check) {
            self.changed(id, true);
            if let Some(i) = self.all.get_mut(&id) {
                i.close(at_ms, "closed: the check was deleted");
            }
        }
    }

    /// Acknowledges incident `id`; false if unknown or already resolved.
    pub fn ack(&mut self, id: u64, by: &str, at_ms: i64) -> bool {
        match self.all.get_mut(&id) {
            Some(i) if i.resolved_ms.is_none() => {
                if i.acked_by.is_none() {
                    i.acked_by = Some(by.to_owned());
                    i.note(at_ms, format!("acknowledged by {by}"));
                    self.changed(id, false);
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets the resolved incidents beyond [`KEEP_RESOLVED`], those
    /// resolved longest ago first, and returns their ids. Called after
    /// planning (so never before a resolution is planned).
    pub fn forget_old(&mut self) -> Vec<u64> {
        let mut resolved: Vec<(i64, u64)> = self
            .all
            .values()
            .filter_map(|i| i.resolved_ms.map(|at| (at, i.id)))
            .collect();
        if resolved.len() <= KEEP_RESOLVED {
            return Vec::new();
        }
        resolved.sort_unstable();
        let old: Vec<u64> = resolved[..resolved.len() - KEEP_RESOLVED]
            .iter()
            .map(|(_, id)| *id)
            .collect();
        for id in &old {
            self.all.remove(id);
        }
        old
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
        // What a status page shows: the check's own events, not who
        // acknowledged it nor anything about notifications (which name
        // channels).
        let about = |what: &str| {
            Event {
                at_ms: 0,
                what: what.into(),
            }
            .is_about_the_check()
        };
        let shown: Vec<&str> = what.iter().copied().filter(|w| about(w)).collect();
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert!(!shown.contains(&"acknowledged by alice"));
        for hidden in [
            "queued critical notification to slack-ops",
            "delivered to slack-ops",
            "delivery to pager failed (attempt 1): 500: a -> b",
            "gave up on pager after 30 attempts: https://x: y -> z",
            "held back by silence 3: critical to slack-ops",
        ] {
            assert!(!about(hidden), "{hidden}");
        }
        assert!(
            !inc.ack(id, "carol", 50),
            "resolved incidents cannot be acknowledged"
        );
        // The next fault opens a new incident.
        inc.on_verdict("mx", &outage(), 60);
        assert_eq!(inc.open["mx"], id + 1);
    }
}
