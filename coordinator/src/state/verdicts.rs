//! Verdict state per check, kept inside the replicated state: region
//! trackers fed by results, staleness driven by `Tick` entries from the
//! log, and the current cross-region verdict with the time it began.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vantage_common::Status;

use super::incidents::Incidents;
use super::mesh::Impaired;
use crate::declared::{CheckDecl, parse_seconds};
use crate::verdict::{Ballot, RegionTracker, Verdict, vote};

/// Everything the vote keeps for one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckVerdict {
    /// Per assigned region.
    pub regions: BTreeMap<String, RegionTracker>,
    /// The current verdict.
    pub verdict: Verdict,
    /// When it began (log time, ms since the epoch).
    pub since_ms: i64,
    /// Enough regions have voted once: until then a new check is BLIND
    /// for want of results, which is no incident.
    #[serde(default)]
    pub settled: bool,
}

impl CheckVerdict {
    fn new(check: &CheckDecl, impaired: &Impaired, at_ms: i64) -> Self {
        let regions = check
            .regions
            .iter()
            .map(|r| (r.clone(), RegionTracker::default()))
            .collect();
        let mut v = CheckVerdict {
            regions,
            verdict: Verdict::Ok,
            since_ms: at_ms,
            settled: false,
        };
        v.verdict = v.decide(check, impaired);
        v
    }

    fn decide(&self, check: &CheckDecl, impaired: &Impaired) -> Verdict {
        let ballots: Vec<Ballot<'_>> = self
            .regions
            .iter()
            .map(|(region, t)| Ballot {
                region: region.as_str(),
                state: t.state,
                trusted: !impaired.contains_key(region),
            })
            .collect();
        vote(&ballots, &check.quorum)
    }

    fn refresh(
        &mut self,
        check: &CheckDecl,
        incidents: &mut Incidents,
        impaired: &Impaired,
        at_ms: i64,
    ) {
        let verdict = self.decide(check, impaired);
        self.settled |= !matches!(verdict, Verdict::Blind { .. });
        if verdict != self.verdict {
            if self.settled {
                incidents.on_verdict(&check.name, &verdict, at_ms);
            }
            self.verdict = verdict;
            self.since_ms = at_ms;
        }
    }
}

/// Verdicts of all checks.
pub type Verdicts = BTreeMap<String, CheckVerdict>;

/// Follows a new declaration: new checks start OK, removed ones go, a
/// check's region list is followed (trackers of kept regions stay).
pub fn follow_declaration(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    checks: &[CheckDecl],
    impaired: &Impaired,
    at_ms: i64,
) {
    verdicts.retain(|name, _| {
        let kept = checks.iter().any(|c| &c.name == name);
        if !kept {
            incidents.on_deleted(name, at_ms);
        }
        kept
    });
    for check in checks {
        match verdicts.get_mut(&check.name) {
            None => {
                verdicts.insert(
                    check.name.clone(),
                    CheckVerdict::new(check, impaired, at_ms),
                );
            }
            Some(v) => {
                v.regions.retain(|r, _| check.regions.contains(r));
                for r in &check.regions {
                    v.regions.entry(r.clone()).or_default();
                }
                v.refresh(check, incidents, impaired, at_ms);
            }
        }
    }
}

/// Counts one result of `check` from `region` in its region tracker;
/// returns whether the region's state changed (the caller then refreshes
/// the verdict, once per batch).
pub fn observe(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    check: &CheckDecl,
    region: &str,
    status: Status,
    started_at_ms: i64,
    at_ms: i64,
) -> bool {
    let v = verdicts
        .entry(check.name.clone())
        .or_insert_with(|| CheckVerdict::new(check, &Impaired::new(), at_ms));
    // Results from a region the check is not assigned to do not vote.
    let Some(tracker) = v.regions.get_mut(region) else {
        return false;
    };
    let old = tracker.state;
    match tracker.observe(status, started_at_ms, check.fail_after, check.recover_after) {
        Some(new) => {
            incidents.on_region(&check.name, region, old, new, at_ms);
            true
        }
        None => false,
    }
}

/// Votes again on `checks`.
pub fn refresh<'a>(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    checks: impl IntoIterator<Item = &'a CheckDecl>,
    impaired: &Impaired,
    at_ms: i64,
) {
    for check in checks {
        if let Some(v) = verdicts.get_mut(&check.name) {
            v.refresh(check, incidents, impaired, at_ms);
        }
    }
}

/// Marks regions silent for three intervals stale, and votes again on the
/// checks that changed (all of them when `all`: the impaired set changed).
pub fn tick(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    checks: &[CheckDecl],
    impaired: &Impaired,
    now_ms: i64,
    all: bool,
) {
    for check in checks {
        let Some(v) = verdicts.get_mut(&check.name) else {
            continue;
        };
        let interval_ms = parse_seconds(&check.interval).unwrap_or(60) as i64 * 1000;
        let mut changed = all;
        for (region, tracker) in v.regions.iter_mut() {
            let old = tracker.state;
            if let Some(new) = tracker.expire(now_ms, interval_ms) {
                incidents.on_region(&check.name, region, old, new, now_ms);
                changed = true;
            }
        }
        if changed {
            v.refresh(check, incidents, impaired, now_ms);
        }
    }
}
