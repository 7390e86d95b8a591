//! Results as the cluster keeps them: the latest per (check, region), a
//! bounded recent history per check, and per-minute roll-ups per region for
//! uptime.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use vantage_common::{FailureClass, Status};

/// Results kept per check in the recent history.
pub const HISTORY: usize = 100;
/// Minutes of roll-ups kept per (check, region): one day.
pub const ROLLUP_MINUTES: usize = 1440;

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

/// Counts of one minute.
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

/// Everything kept for one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResults {
    /// Latest result per region (by probe start time).
    pub latest: BTreeMap<String, StoredResult>,
    /// Most recent results, oldest first.
    pub recent: VecDeque<StoredResult>,
    /// Region → minute (ms since the epoch, minute-aligned) → counts.
    pub minutes: BTreeMap<String, BTreeMap<i64, Rollup>>,
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
        let minute = result.started_at_ms - result.started_at_ms.rem_euclid(60_000);
        let minutes = self.minutes.entry(result.region.clone()).or_default();
        let r = minutes.entry(minute).or_default();
        match result.status {
            Status::Pass => r.pass += 1,
            Status::Warn => r.warn += 1,
            Status::Fail => r.fail += 1,
            Status::Error => r.error += 1,
        }
        while minutes.len() > ROLLUP_MINUTES {
            minutes.pop_first();
        }
        self.recent.push_back(result);
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
        for i in 0..(HISTORY as i64 + 50) {
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
        assert_eq!(c.latest["eu"].started_at_ms, (HISTORY as i64 + 49) * 30_000);
        assert_eq!(c.recent.len(), HISTORY);
        let first_minute = c.minutes["eu"][&0];
        assert_eq!(
            (first_minute.pass, first_minute.fail, first_minute.error),
            (1, 1, 1)
        );
        for i in 0..(ROLLUP_MINUTES as i64 + 10) {
            c.record(result("ru", i * 60_000, Status::Pass));
        }
        assert_eq!(c.minutes["ru"].len(), ROLLUP_MINUTES);
    }
}
