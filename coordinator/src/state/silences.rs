//! Silences and maintenance windows: they hold back notifications of the
//! incidents whose labels they match while they are active; results,
//! verdicts and timelines go on. A notification a silence held back is
//! queued when the silence ends if the incident is still open
//! (`state/planning.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Ended silences are forgotten after this long.
const KEEP_SILENCES_MS: i64 = 7 * 24 * 3600 * 1000;
/// One week in ms.
pub const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// 1970-01-05T00:00:00Z, the first Monday of the epoch.
pub const FIRST_MONDAY_MS: i64 = 4 * 24 * 3600 * 1000;

/// Silence or maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceKind {
    /// Ad hoc, from now for a while.
    Silence,
    /// Planned: one-off or weekly.
    Maintenance,
}

impl SilenceKind {
    /// `silence`, `maintenance window`.
    pub fn describe(self) -> &'static str {
        match self {
            SilenceKind::Silence => "silence",
            SilenceKind::Maintenance => "maintenance window",
        }
    }
}

/// A weekly recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weekly {
    /// Start within the week, ms after Monday 00:00 UTC.
    pub offset_ms: i64,
    /// Length of each window.
    pub duration_ms: i64,
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

/// Holds back notifications of matching incidents.
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

/// Silences and maintenance windows by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silences {
    /// By id.
    pub by_id: BTreeMap<u64, Silence>,
    /// Last id given.
    pub last_id: u64,
}

impl Silences {
    /// Adds a silence; returns its id.
    pub fn add(&mut self, mut silence: Silence) -> u64 {
        self.last_id += 1;
        silence.id = self.last_id;
        self.by_id.insert(silence.id, silence);
        self.last_id
    }

    /// Ends silence `id` now; false if unknown or already over.
    pub fn expire(&mut self, id: u64, at_ms: i64) -> bool {
        match self.by_id.get_mut(&id) {
            Some(s) if !s.over(at_ms) => {
                s.expired_ms = Some(at_ms);
                true
            }
            _ => false,
        }
    }

    /// The first silence holding back notifications with `labels` at `t`.
    pub fn holding(&self, labels: &BTreeMap<String, String>, t: i64) -> Option<&Silence> {
        self.by_id
            .values()
            .find(|s| s.active(t) && s.matches(labels))
    }

    /// Forgets silences long over.
    pub fn prune(&mut self, now_ms: i64) {
        self.by_id.retain(|_, s| !s.over(now_ms - KEEP_SILENCES_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_silence_releases_and_weekly_windows_recur() {
        let mut a = Silences::default();
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
        let id = a.add(weekly.clone());
        let s = &a.by_id[&id];
        let sunday_3am_week_5 = weekly.starts_ms + 5 * WEEK_MS + 3_600_000;
        assert!(s.active(sunday_3am_week_5));
        assert!(!s.active(sunday_3am_week_5 + 2 * 3_600_000));
        assert!(
            !s.active(weekly.starts_ms - 3_600_000),
            "not before it starts"
        );
        let labels = BTreeMap::from([("team".into(), "mail".into())]);
        assert_eq!(
            a.holding(&labels, sunday_3am_week_5).map(|s| s.id),
            Some(id)
        );
        assert!(a.holding(&BTreeMap::new(), sunday_3am_week_5).is_none());
        assert!(a.expire(id, sunday_3am_week_5));
        assert!(!a.by_id[&id].active(sunday_3am_week_5 + WEEK_MS));
        assert!(!a.expire(id, sunday_3am_week_5), "already over");
        a.prune(sunday_3am_week_5 + KEEP_SILENCES_MS + 1);
        assert!(a.by_id.is_empty(), "forgotten a week after it ended");
    }
}
