//! Results as the cluster keeps them: the latest per (check, region), a
//! bounded recent history per check, and roll-ups per region for uptime
//! (24 hours by the hour, 30 days by the day).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vantage_common::{FailureClass, Status};

use super::rollup::{Hourly, Rollups, Tally};
use super::small_map::SmallMap;

/// Results kept per check in the recent history.
pub const HISTORY: usize = 30;

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
    /// The leaf certificate's expiry (Unix seconds), from the details of
    /// `tls` and `smtp` results, for `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
    /// Timed steps (name, microseconds), for remote-write; not kept in the
    /// state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<(String, u64)>,
}

/// Counts of one hour or day, as kept: an hour or a day of results of a
/// check run every 5 s from one region is at most 17,280 (the counts
/// saturate rather than wrap, also when read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Rollup")]
pub struct Counts {
    /// Passing results.
    pub pass: u16,
    /// Warnings.
    pub warn: u16,
    /// Failures.
    pub fail: u16,
    /// Could-not-tell results.
    pub error: u16,
}

/// Counts over any span.
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

/// One result of the recent history: what `vantagectl results` shows of
/// it (no details), in 40 bytes. Its origin and message are the very ones
/// of the same region's previous entry when they are equal, so that a
/// steady check costs little more than that per entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RecentForm")]
pub struct Recent {
    /// Region and agent it came from.
    pub origin: Arc<Origin>,
    /// Probe start (agent clock, ms since the epoch).
    pub started_at_ms: i64,
    /// One line.
    pub message: Arc<str>,
    /// Probe wall time (saturates at 49 days).
    pub duration_ms: u32,
    /// pass / warn / fail / error.
    pub status: Status,
    /// Failure class.
    pub class: Option<FailureClass>,
}

/// Where a result was seen from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Region.
    pub region: String,
    /// Agent.
    pub agent: String,
}

impl Recent {
    /// Region it was seen from.
    pub fn region(&self) -> &str {
        &self.origin.region
    }

    /// Agent that ran it.
    pub fn agent(&self) -> &str {
        &self.origin.agent
    }

    /// The entry of `result`, seen from `origin`, saying `message`.
    fn of(result: &StoredResult, origin: Arc<Origin>, message: Arc<str>) -> Self {
        Recent {
            origin,
            started_at_ms: result.started_at_ms,
            message,
            duration_ms: u32::try_from(result.duration_ms).unwrap_or(u32::MAX),
            status: result.status,
            class: result.class,
        }
    }
}

/// A recent entry as written: flat, every name spelled out.
#[derive(Deserialize)]
struct RecentForm {
    region: String,
    agent: String,
    started_at_ms: i64,
    status: Status,
    class: Option<FailureClass>,
    message: String,
    duration_ms: u64,
}

impl From<RecentForm> for Recent {
    fn from(f: RecentForm) -> Self {
        Recent {
            origin: Arc::new(Origin {
                region: f.region,
                agent: f.agent,
            }),
            started_at_ms: f.started_at_ms,
            message: Arc::from(f.message),
            duration_ms: u32::try_from(f.duration_ms).unwrap_or(u32::MAX),
            status: f.status,
            class: f.class,
        }
    }
}

/// Written as an array in [`RecentForm`]'s field order (read as that or as
/// an object): a snapshot holds 30 of them per check.
impl Serialize for Recent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            self.region(),
            self.agent(),
            self.started_at_ms,
            self.status,
            self.class,
            &*self.message,
            self.duration_ms,
        )
            .serialize(serializer)
    }
}

/// The latest result of a region as kept: its recent-history entry (names
/// and message shared with it) and its details. Written as a
/// [`StoredResult`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "StoredResult")]
pub struct Latest {
    /// The result.
    pub entry: Recent,
    /// Details as JSON (records seen, banner...).
    pub details_json: Box<str>,
    /// The leaf certificate's expiry (Unix seconds), if it had one.
    pub cert_not_after: Option<i64>,
}

impl From<StoredResult> for Latest {
    fn from(mut r: StoredResult) -> Self {
        let origin = Arc::new(Origin {
            region: std::mem::take(&mut r.region),
            agent: std::mem::take(&mut r.agent),
        });
        let message = Arc::from(std::mem::take(&mut r.message));
        Latest {
            entry: Recent::of(&r, origin, message),
            details_json: r.details_json.into_boxed_str(),
            cert_not_after: r.cert_not_after,
        }
    }
}

impl Serialize for Latest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// [`StoredResult`], borrowed.
        #[derive(Serialize)]
        struct Form<'a> {
            region: &'a str,
            agent: &'a str,
            started_at_ms: i64,
            status: Status,
            class: Option<FailureClass>,
            message: &'a str,
            duration_ms: u32,
            details_json: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            cert_not_after: Option<i64>,
        }
        let e = &self.entry;
        Form {
            region: e.region(),
            agent: e.agent(),
            started_at_ms: e.started_at_ms,
            status: e.status,
            class: e.class,
            message: &e.message,
            duration_ms: e.duration_ms,
            details_json: &self.details_json,
            cert_not_after: self.cert_not_after,
        }
        .serialize(serializer)
    }
}

/// Everything kept for one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResults {
    /// Latest result per region (by probe start time).
    pub latest: SmallMap<Latest>,
    /// Most recent results, oldest first.
    pub recent: VecDeque<Recent>,
    /// Region → counts by hour and by day.
    #[serde(default, alias = "hours")]
    pub rollups: SmallMap<Rollups<Counts>>,
    /// Region → summed duration (ms) of the passing and warning results
    /// by hour, the last 24 hours: divided by that hour's `pass + warn` in
    /// [`CheckResults::rollups`], the mean latency (failures are left out:
    /// their duration is mostly a timeout). From 0.13.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub latency: SmallMap<Hourly<u32>>,
}

impl CheckResults {
    /// Mean latency (ms) of the passing and warning results from `region`
    /// per hour of the last 24 hours that had any: (hour start, mean).
    pub fn hourly_latency(&self, region: &str) -> Vec<(i64, f64)> {
        let (Some(sums), Some(counts)) = (self.latency.get(region), self.rollups.get(region))
        else {
            return Vec::new();
        };
        let counts: std::collections::HashMap<i64, u32> = counts
            .hours()
            .map(|(at, c)| (at, u32::from(c.pass) + u32::from(c.warn)))
            .collect();
        sums.hours()
            .filter_map(|(at, ms)| {
                let n = *counts.get(&at)?;
                (n > 0).then(|| (at, f64::from(*ms) / f64::from(n)))
            })
            .collect()
    }
}

/// Written as `[pass, warn, fail, error]` (read as that or as an object):
/// a snapshot holds 162 of them per check.
impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.pass, self.warn, self.fail, self.error).serialize(serializer)
    }
}

impl From<Rollup> for Counts {
    fn from(r: Rollup) -> Self {
        let narrow = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        Counts {
            pass: narrow(r.pass),
            warn: narrow(r.warn),
            fail: narrow(r.fail),
            error: narrow(r.error),
        }
    }
}

impl Tally for Counts {
    type Sum = Rollup;

    fn merge(&mut self, other: &Self) {
        self.pass = self.pass.saturating_add(other.pass);
        self.warn = self.warn.saturating_add(other.warn);
        self.fail = self.fail.saturating_add(other.fail);
        self.error = self.error.saturating_add(other.error);
    }

    fn add_to(&self, sum: &mut Rollup) {
        sum.pass += u32::from(self.pass);
        sum.warn += u32::from(self.warn);
        sum.fail += u32::from(self.fail);
        sum.error += u32::from(self.error);
    }
}

impl CheckResults {
    /// Records one result.
    pub fn record(&mut self, result: &StoredResult) {
        let mut one = Counts::default();
        match result.status {
            Status::Pass => one.pass = 1,
            Status::Warn => one.warn = 1,
            Status::Fail => one.fail = 1,
            Status::Error => one.error = 1,
        }
        self.rollups
            .entry(&result.region)
            .or_default()
            .add(result.started_at_ms, &one);
        if matches!(result.status, Status::Pass | Status::Warn) {
            let ms = u32::try_from(result.duration_ms).unwrap_or(u32::MAX);
            self.latency
                .entry(&result.region)
                .or_default()
                .add(result.started_at_ms, &ms);
        }
        // The recent history is read for its lines, never its details: they
        // stay with the latest result only (a details object may be 16 KiB).
        // The region's latest result shares what its history does.
        let prev = self.latest.get(&result.region).map(|l| &l.entry);
        let (origin, message) = shared(prev, &result.region, &result.agent, &result.message);
        let entry = Recent::of(result, origin, message);
        self.push_recent(entry.clone());
        let latest = Latest {
            entry,
            details_json: Box::from(result.details_json.as_str()),
            cert_not_after: result.cert_not_after,
        };
        match self.latest.get_mut(&result.region) {
            Some(l) if l.entry.started_at_ms <= latest.entry.started_at_ms => *l = latest,
            Some(_) => {} // older than the latest
            None => {
                self.latest.insert(&result.region, latest);
            }
        }
    }

    /// Shares the names and messages of the recent history and the
    /// latest results again (after they were read from a snapshot, where
    /// each entry has its own).
    pub fn share(&mut self) {
        for mut entry in std::mem::take(&mut self.recent) {
            let prev = self.last_recent(entry.region());
            (entry.origin, entry.message) =
                shared(prev, entry.region(), entry.agent(), &entry.message);
            self.push_recent(entry);
        }
        let mut latest = std::mem::take(&mut self.latest);
        for (_, l) in latest.iter_mut() {
            let e = &mut l.entry;
            let prev = self.last_recent(e.region());
            (e.origin, e.message) = shared(prev, e.region(), e.agent(), &e.message);
        }
        self.latest = latest;
    }

    /// The history's last entry from `region`.
    fn last_recent(&self, region: &str) -> Option<&Recent> {
        self.recent.iter().rev().find(|p| p.region() == region)
    }

    /// Appends to the recent history, dropping the oldest beyond
    /// [`HISTORY`].
    fn push_recent(&mut self, entry: Recent) {
        while self.recent.len() >= HISTORY {
            self.recent.pop_front();
        }
        if self.recent.capacity() == 0 {
            self.recent.reserve_exact(HISTORY);
        }
        self.recent.push_back(entry);
    }
}

/// The origin and message of a new entry from `region`: the very ones
/// of `prev` (the region's previous entry) when equal, else new ones.
fn shared(
    prev: Option<&Recent>,
    region: &str,
    agent: &str,
    message: &str,
) -> (Arc<Origin>, Arc<str>) {
    let origin = match prev {
        Some(p) if p.agent() == agent => p.origin.clone(),
        _ => Arc::new(Origin {
            region: region.to_owned(),
            agent: agent.to_owned(),
        }),
    };
    let message = match prev {
        Some(p) if &*p.message == message => p.message.clone(),
        _ => Arc::from(message),
    };
    (origin, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rollup::HOUR_MS;

    fn result(region: &str, at: i64, status: Status) -> StoredResult {
        StoredResult {
            region: region.into(),
            agent: "a".into(),
            started_at_ms: at,
            status,
            class: None,
            message: if status == Status::Pass { "ok" } else { "down" }.into(),
            duration_ms: 1,
            details_json: "{}".into(),
            cert_not_after: None,
            phases: Vec::new(),
        }
    }

    #[test]
    fn latest_history_and_rollups_stay_bounded() {
        let mut c = CheckResults::default();
        // 150 results every 30 s: more than the history holds, 120 of
        // them in the first hour.
        for i in 0..150 {
            c.record(&result(
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
        c.record(&result("eu", 0, Status::Error));
        assert_eq!(c.latest["eu"].entry.started_at_ms, 149 * 30_000);
        assert_eq!(c.recent.len(), HISTORY);
        assert_eq!(std::mem::size_of::<Recent>(), 40);
        assert_eq!(c.recent.capacity(), HISTORY);
        // Details stay with the latest result only.
        assert_eq!(&*c.latest["eu"].details_json, "{}");
        // Each region's entries, and its latest result, share one message
        // and names.
        let eu: Vec<&Recent> = c.recent.iter().filter(|r| r.region() == "eu").collect();
        let shared = |c: &CheckResults| {
            let eu: Vec<&Recent> = c.recent.iter().filter(|r| r.region() == "eu").collect();
            let latest = &c.latest["eu"].entry;
            eu.windows(2).all(|w| {
                Arc::ptr_eq(&w[0].origin, &w[1].origin)
                    && (w[0].message != w[1].message || Arc::ptr_eq(&w[0].message, &w[1].message))
            }) && eu.iter().any(|r| {
                Arc::ptr_eq(&r.origin, &latest.origin) && Arc::ptr_eq(&r.message, &latest.message)
            })
        };
        assert!(eu.len() > 2 && shared(&c));
        // Read back from JSON each has its own, until shared again.
        let mut back: CheckResults =
            match serde_json::to_string(&c).map(|j| serde_json::from_str(&j)) {
                Ok(Ok(b)) => b,
                other => panic!("{other:?}"),
            };
        assert!(!shared(&back));
        back.share();
        assert!(shared(&back) && back == c);
        let first_hour = c.rollups["eu"].hours().next().map(|(at, r)| (at, *r));
        assert_eq!(
            first_hour.map(|(at, r)| (at, r.pass, r.fail, r.error)),
            Some((0, 60, 60, 1))
        );
        for i in 0..(40 * 24) {
            c.record(&result("ru", i * HOUR_MS, Status::Pass));
        }
        let ru = &c.rollups["ru"];
        assert_eq!((ru.hours().count(), ru.days().count()), (24, 30));
    }

    #[test]
    fn latency_is_the_mean_of_passing_and_warning_results_by_hour() {
        let mut c = CheckResults::default();
        let timed = |at: i64, status: Status, ms: u64| StoredResult {
            duration_ms: ms,
            ..result("eu", at, status)
        };
        c.record(&timed(0, Status::Pass, 10));
        c.record(&timed(60_000, Status::Warn, 30));
        // A failure's duration is a timeout: left out.
        c.record(&timed(120_000, Status::Fail, 5_000));
        c.record(&timed(3 * HOUR_MS, Status::Pass, 7));
        // An hour of failures only has no latency.
        c.record(&timed(4 * HOUR_MS, Status::Error, 5_000));
        assert_eq!(c.hourly_latency("eu"), [(0, 20.0), (3 * HOUR_MS, 7.0)]);
        assert!(c.hourly_latency("ru").is_empty());
        // Kept for 24 hours, written and read back.
        let json = serde_json::to_value(&c).unwrap_or_default();
        assert_eq!(json["latency"]["eu"], serde_json::json!([[0, 40], [3, 7]]));
        let back: Result<CheckResults, _> = serde_json::from_value(json);
        assert!(back.is_ok_and(|b| b.latency == c.latency));
        c.record(&timed(30 * HOUR_MS, Status::Pass, 1));
        assert_eq!(c.hourly_latency("eu"), [(30 * HOUR_MS, 1.0)]);
        // Without any, nothing is written (as 0.12 wrote it).
        let none = serde_json::to_value(CheckResults::default()).unwrap_or_default();
        assert!(none.get("latency").is_none(), "{none}");
    }

    #[test]
    fn entries_and_counts_are_written_as_arrays_and_read_in_either_form() {
        let mut c = CheckResults::default();
        c.record(&result("eu", HOUR_MS, Status::Fail));
        let json = serde_json::to_value(&c).unwrap_or_default();
        assert_eq!(
            json["recent"],
            serde_json::json!([["eu", "a", HOUR_MS, "fail", null, "down", 1]])
        );
        assert_eq!(
            json["rollups"]["eu"]["hours"],
            serde_json::json!([[1, [0, 0, 1, 0]]])
        );
        // The latest result is written as it came.
        assert_eq!(
            json["latest"]["eu"],
            serde_json::to_value(result("eu", HOUR_MS, Status::Fail)).unwrap_or_default()
        );
        // As 0.8's first snapshots wrote them: objects.
        let old = serde_json::json!({
            "latest": {},
            "recent": [{"region": "eu", "agent": "a", "started_at_ms": HOUR_MS, "status": "fail",
                "class": null, "message": "down", "duration_ms": 1}],
            "rollups": {"eu": {"hours": [[1, {"pass": 0, "warn": 0, "fail": 1, "error": 0}]],
                "days": [[0, {"pass": 0, "warn": 0, "fail": 1, "error": 0}]]}},
        });
        let back: Result<CheckResults, _> = serde_json::from_value(old);
        let back = back.map(|mut b| {
            b.latest = c.latest.clone();
            b
        });
        assert!(back.as_ref().is_ok_and(|b| *b == c), "{back:?}");
        // Counts beyond a bucket's 16 bits saturate rather than fail the load.
        let big: Result<Counts, _> = serde_json::from_str(r#"[70000, 0, 1, 0]"#);
        assert_eq!(big.map(|c| (c.pass, c.fail)).ok(), Some((u16::MAX, 1)));
    }
}
