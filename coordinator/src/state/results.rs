//! Results as the cluster keeps them: the latest per (check, region), a
//! bounded recent history per check, and hourly roll-ups per region for
//! uptime (30 days).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use vantage_common::{FailureClass, Status};

/// Results kept per check in the recent history.
pub const HISTORY: usize = 30;
/// Hours of roll-ups kept per (check, region): 30 days.
pub const ROLLUP_HOURS: usize = 720;
/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// One result as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    /// Region it was seen from.
    pub region: String,
    /// Agent that ran it.
    pub agent: String,
    /// Probe start (agent clock, ms since the epoch).
    pub started_at_ms: i64,
    /// pass / warn / fail / error.
    pub status: Status,
    /// Failure class.
    pub class: Option<FailureClass>,
    /// One line.
    pub message: String,
    /// Probe wall time.
    pub duration_ms: u64,
    /// Details as JSON (records seen, banner...).
    pub details_json: String,
}

/// Counts of one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// Passing results.
    pub pass: u32,
    /// Warnings.
    pub warn: u32,
    /// Failures.
    pub fail: u32,
    /// Could-not-tell results.
    pub error: u32,
}

/// Everything kept for one check. (`recent` entries carry no details.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResults {
    /// Latest result per region (by probe start time).
    pub latest: BTreeMap<String, StoredResult>,
    /// Most recent results, oldest first.
    pub recent: VecDeque<StoredResult>,
    /// Region → hour (ms since the epoch, hour-aligned) → counts.
    #[serde(default)]
    pub hours: BTreeMap<String, BTreeMap<i64, Rollup>>,
}

impl CheckResults {
    /// Records one result.
    pub fn record(&mut self, result: StoredResult) {
        let newer = self
            .latest
            .get(&result.region)
            .is_none_or(|l| l.started_at_ms <= result.started_at_ms);
        if newer {
            self.latest.insert(result.region.clone(), result.clone());
        }
        let hour = result.started_at_ms - result.started_at_ms.rem_euclid(HOUR_MS);
        let hours = self.hours.entry(result.region.clone()).or_default();
        let r = hours.entry(hour).or_default();
        match result.status {
            Status::Pass => r.pass += 1,
            Status::Warn => r.warn += 1,
            Status::Fail => r.fail += 1,
            Status::Error => r.error += 1,
        }
        while hours.len() > ROLLUP_HOURS {
            hours.pop_first();
        }
        // The recent history is read for its lines, never its details: they
        // stay with the latest result only (a details object may be 16 KiB).
        self.recent.push_back(StoredResult {
            details_json: String::new(),
            ..result
        });
        while self.recent.len() > HISTORY {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(region: &str, at: i64, status: Status) -> StoredResult {
        StoredResult {
            region: region.into(),
            agent: "a".into(),
            started_at_ms: at,
            status,
            class: None,
            message: String::new(),
            duration_ms: 1,
            details_json: "{}".into(),
        }
    }

    #[test]
    fn latest_history_and_rollups_stay_bounded() {
        let mut c = CheckResults::default();
        // 150 results every 30 s: more than the history holds, 120 of
        // them in the first hour.
        for i in 0..150 {
            c.record(result(
                "eu",
                i * 30_000,
                if i % 2 == 0 {
                    Status::Pass
                } else {
                    Status::Fail
                },
            ));
        }
        // A late (older) result does not replace the latest.
        c.record(result("eu", 0, Status::Error));
        assert_eq!(c.latest["eu"].started_at_ms, 149 * 30_000);
        assert_eq!(c.recent.len(), HISTORY);
        // Details stay with the latest result only.
        assert_eq!(c.latest["eu"].details_json, "{}");
        assert!(c.recent.iter().all(|r| r.details_json.is_empty()));
        let first_hour = c.hours["eu"][&0];
        assert_eq!(
            (first_hour.pass, first_hour.fail, first_hour.error),
            (60, 60, 1)
        );
        for i in 0..(ROLLUP_HOURS as i64 + 10) {
            c.record(result("ru", i * HOUR_MS, Status::Pass));
        }
        assert_eq!(c.hours["ru"].len(), ROLLUP_HOURS);
    }
}
