//! Change alerts (drift): per check, the value a quorum of regions agreed
//! on ([`Baseline`]: the normalised record set, SPF terms, DMARC/DKIM
//! tags, certificate) and the changes from one agreed value to the next.
//!
//! Each region's observation is held steady for `recover_after` results
//! (`CheckVerdict::observed`); when a quorum of trusted regions holds the
//! same value, more of them than hold any other, and it is not the
//! baseline, that is a change: recorded with a readable diff, raised as a
//! CHANGED incident at the check's `on_change` severity (a certificate
//! renewal: `info`), and the new value becomes the baseline. The first
//! value agreed on is the baseline without a change. A change that reaches
//! the regions seconds apart is therefore one change, never a divergence
//! (`verdicts.rs` compares only fresh answers).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use vantage_common::observed::Observed;
use vantage_common::spec::Kind;

use super::incidents::Incidents;
use super::mesh::Impaired;
use super::small_map::SmallMap;
use super::verdicts::Steady;
use crate::declared::CheckDecl;
use crate::notification::Severity;
use crate::verdict::{Verdict, needed};

/// Changes kept per check (the oldest are forgotten first).
pub const KEEP_CHANGES: usize = 100;

/// The value regions last agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The value.
    pub value: Observed,
    /// Since when (log time).
    pub since_ms: i64,
}

/// One change of a check's agreed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When the quorum agreed on the new value (log time).
    pub at_ms: i64,
    /// The value before.
    pub old: Observed,
    /// The value now.
    pub new: Observed,
    /// `SPF example.org: -all → ~all; removed ip4:192.0.2.62`.
    pub summary: String,
    /// Severity of the CHANGED incident; `None` when `on_change = "ignore"`.
    pub severity: Option<Severity>,
    /// A certificate renewed (same subject and issuer, later expiry).
    pub renewal: bool,
    /// The regions that agreed on the new value.
    pub regions: Vec<String>,
    /// The CHANGED incident it raised.
    pub incident: Option<u64>,
}

/// The changes of one check (or all) at or after `since_ms`, with their
/// check's name, oldest first.
pub fn since<'a>(
    verdicts: &'a super::verdicts::Verdicts,
    check: Option<&str>,
    since_ms: i64,
) -> Vec<(&'a str, &'a Change)> {
    let mut changes: Vec<(&str, &Change)> = verdicts
        .iter()
        .filter(|(name, _)| check.is_none_or(|c| c == name.as_str()))
        .flat_map(|(name, v)| {
            v.drift
                .changes
                .iter()
                .filter(move |c| c.at_ms >= since_ms)
                .map(move |c| (name.as_str(), c))
        })
        .collect();
    // By time, then check; a check's own changes stay in their order.
    changes.sort_by_key(|(name, c)| (c.at_ms, *name));
    changes
}

/// What change tracking keeps for one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Each region's observation, held for `recover_after` results.
    pub observed: SmallMap<Steady<Observed>>,
    /// The value agreed on.
    pub baseline: Option<Baseline>,
    /// Changes, oldest first (at most [`KEEP_CHANGES`]).
    pub changes: VecDeque<Change>,
    /// Changes ever recorded (`vantage_check_changes_total`; counted from
    /// 0.12 on).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Drift {
    /// Holds `region`'s observation; returns whether its held value changed.
    pub fn observe(&mut self, region: &str, seen: Observed, check: &CheckDecl) -> bool {
        self.observed
            .entry(region)
            .or_default()
            .observe(Some(seen), check.recover_after)
    }

    /// Forgets what regions no longer assigned saw.
    pub fn retain_regions(&mut self, regions: &[String]) {
        self.observed
            .retain(|r, _| regions.iter().any(|a| a == r.as_str()));
    }

    /// Moves the baseline when a quorum agrees on a new value, recording
    /// the change and raising its incident.
    pub fn settle(
        &mut self,
        check: &CheckDecl,
        assigned: usize,
        impaired: &Impaired,
        incidents: &mut Incidents,
        at_ms: i64,
    ) {
        let Some((value, regions)) = self.agreed(check, assigned, impaired) else {
            return;
        };
        let old = match &self.baseline {
            Some(b) if b.value == value => return,
            Some(b) => b.value.clone(),
            None => {
                self.baseline = Some(Baseline {
                    value,
                    since_ms: at_ms,
                });
                return;
            }
        };
        let renewal = check.kind == Kind::Tls && value.is_renewal_of(&old);
        let severity = check
            .on_change
            .severity()
            .map(|s| if renewal { Severity::Info } else { s });
        let summary = format!(
            "{} {}: {}",
            check.kind.name().to_uppercase(),
            check.target,
            old.diff(&value).join("; ")
        );
        let incident = severity.map(|severity| {
            let verdict = Verdict::Changed {
                summary: summary.clone(),
                severity,
            };
            incidents.on_change(&check.name, &verdict, &regions, at_ms)
        });
        self.total += 1;
        self.changes.push_back(Change {
            at_ms,
            old,
            new: value.clone(),
            summary,
            severity,
            renewal,
            regions,
            incident,
        });
        while self.changes.len() > KEEP_CHANGES {
            self.changes.pop_front();
        }
        self.baseline = Some(Baseline {
            value,
            since_ms: at_ms,
        });
    }

    /// The value a quorum of trusted regions holds, held by more regions
    /// than any other value, with those regions.
    fn agreed(
        &self,
        check: &CheckDecl,
        assigned: usize,
        impaired: &Impaired,
    ) -> Option<(Observed, Vec<String>)> {
        let mut held: BTreeMap<&Observed, Vec<String>> = BTreeMap::new();
        for (region, steady) in &self.observed {
            if let Some(value) = &steady.value
                && !impaired.contains_key(region.as_str())
            {
                held.entry(value).or_default().push(region.to_string());
            }
        }
        let mut ranked: Vec<(&Observed, Vec<String>)> = held.into_iter().collect();
        ranked.sort_by_key(|(_, regions)| std::cmp::Reverse(regions.len()));
        let mut ranked = ranked.into_iter();
        let (value, regions) = ranked.next()?;
        let runner_up = ranked.next().map_or(0, |(_, r)| r.len());
        (regions.len() >= needed(&check.quorum, assigned) && regions.len() > runner_up)
            .then(|| (value.clone(), regions))
    }
}
