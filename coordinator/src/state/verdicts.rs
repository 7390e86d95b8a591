//! Verdict state per check, kept inside the replicated state: region
//! trackers fed by results, staleness driven by `Tick` entries from the
//! log, and the current cross-region verdict with the time it began.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vantage_common::observed::Observed;
use vantage_common::{FailureClass, Status};

use super::results::StoredResult;
use super::rollup::{DAY_MS, DAYS, HOUR_MS, Rollups, Tally};
use super::small_map::{Name, SmallMap};

use super::changes::Drift;
use super::incidents::Incidents;
use super::mesh::Impaired;
use crate::declared::{CheckDecl, Declared, NameMap, slot};
use crate::verdict::{Ballot, RegionState, RegionTracker, Verdict, vote};

/// Everything the vote keeps for one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckVerdict {
    /// Per assigned region.
    pub regions: SmallMap<RegionTracker>,
    /// The current verdict.
    pub verdict: Verdict,
    /// When it began (log time, ms since the epoch).
    pub since_ms: i64,
    /// Enough regions have voted once: until then a new check is BLIND
    /// for want of results, which is no incident.
    #[serde(default)]
    pub settled: bool,
    /// Regions whose latest result warns, with its message.
    #[serde(default)]
    pub warnings: SmallMap<String>,
    /// Per region: is it warning, held steady against flapping.
    #[serde(default)]
    pub warn_state: SmallMap<Steady<bool>>,
    /// DNS-answer kinds: the answer per region, held steady (one copy
    /// shared with `seen` while they are equal).
    #[serde(default)]
    pub answers: SmallMap<Steady<Arc<str>>>,
    /// DNS-answer kinds: the answer per region as last seen, and since when.
    #[serde(default)]
    pub seen: SmallMap<Seen>,
    /// Time spent per verdict class by hour and by day, closed periods
    /// only.
    #[serde(default, alias = "hours")]
    pub rollups: Rollups<VerdictSpans>,
    /// Kinds that keep a baseline: what regions observe, the value they
    /// agreed on, and its changes.
    #[serde(default)]
    pub drift: Drift,
}

/// Time in each verdict class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictTime {
    /// OK.
    pub up_ms: i64,
    /// WARNING or DIVERGENT: the target answers, with something to say
    /// (counted as up in uptime).
    #[serde(default)]
    pub noted_ms: i64,
    /// REGIONAL: down from some regions, below the quorum.
    pub degraded_ms: i64,
    /// OUTAGE.
    pub down_ms: i64,
    /// BLIND or not yet decided: not counted in uptime.
    pub unknown_ms: i64,
}

impl VerdictTime {
    /// The share of the decided time the target answered (OK, WARNING,
    /// DIVERGENT and REGIONAL; BLIND and undecided time left out), in %;
    /// `None` without decided time.
    pub fn uptime_pct(&self) -> Option<f64> {
        let up = self.up_ms + self.noted_ms + self.degraded_ms;
        let decided = up + self.down_ms;
        (decided > 0).then(|| up as f64 * 100.0 / decided as f64)
    }

    fn merge(&mut self, other: &VerdictTime) {
        self.up_ms += other.up_ms;
        self.noted_ms += other.noted_ms;
        self.degraded_ms += other.degraded_ms;
        self.down_ms += other.down_ms;
        self.unknown_ms += other.unknown_ms;
    }
}

/// Time in each verdict class within one hour or day, as kept (a day is
/// 86,400,000 ms: it fits in 32 bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictSpans {
    /// OK.
    pub up_ms: u32,
    /// WARNING or DIVERGENT (from 0.13; earlier builds counted it as OK).
    pub noted_ms: u32,
    /// REGIONAL.
    pub degraded_ms: u32,
    /// OUTAGE.
    pub down_ms: u32,
    /// BLIND or not yet decided.
    pub unknown_ms: u32,
}

/// Written as `[up, degraded, down, unknown]`, with `noted` as a fifth
/// element when not 0 (so that a bucket without warnings reads as before
/// 0.13); read as that or as an object.
impl Serialize for VerdictSpans {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self;
        if s.noted_ms == 0 {
            (s.up_ms, s.degraded_ms, s.down_ms, s.unknown_ms).serialize(serializer)
        } else {
            (s.up_ms, s.degraded_ms, s.down_ms, s.unknown_ms, s.noted_ms).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for VerdictSpans {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, SeqAccess, Visitor};
        struct Spans;
        impl<'de> Visitor<'de> for Spans {
            type Value = VerdictSpans;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[up, degraded, down, unknown(, noted)] in ms")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VerdictSpans, A::Error> {
                let mut next = |i: usize| -> Result<u32, A::Error> {
                    seq.next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))
                };
                let (up_ms, degraded_ms, down_ms, unknown_ms) =
                    (next(0)?, next(1)?, next(2)?, next(3)?);
                let noted_ms = seq.next_element()?.unwrap_or(0);
                Ok(VerdictSpans {
                    up_ms,
                    noted_ms,
                    degraded_ms,
                    down_ms,
                    unknown_ms,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VerdictSpans, A::Error> {
                let mut s = VerdictSpans::default();
                while let Some(key) = map.next_key::<String>()? {
                    let field = match key.as_str() {
                        "up_ms" => &mut s.up_ms,
                        "noted_ms" => &mut s.noted_ms,
                        "degraded_ms" => &mut s.degraded_ms,
                        "down_ms" => &mut s.down_ms,
                        "unknown_ms" => &mut s.unknown_ms,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map.next_value()?;
                }
                Ok(s)
            }
        }
        deserializer.deserialize_any(Spans)
    }
}

impl VerdictSpans {
    /// `ms` (within one hour) of `verdict`.
    fn of(verdict: &Verdict, ms: u32) -> Self {
        let mut s = VerdictSpans::default();
        match verdict {
            Verdict::Ok | Verdict::Changed { .. } => s.up_ms = ms,
            Verdict::Warning { .. } | Verdict::Divergent { .. } => s.noted_ms = ms,
            Verdict::Regional { .. } => s.degraded_ms = ms,
            Verdict::Outage { .. } => s.down_ms = ms,
            Verdict::Blind { .. } | Verdict::Impaired { .. } => s.unknown_ms = ms,
        }
        s
    }
}

impl Tally for VerdictSpans {
    type Sum = VerdictTime;

    fn merge(&mut self, other: &VerdictSpans) {
        self.up_ms = self.up_ms.saturating_add(other.up_ms);
        self.noted_ms = self.noted_ms.saturating_add(other.noted_ms);
        self.degraded_ms = self.degraded_ms.saturating_add(other.degraded_ms);
        self.down_ms = self.down_ms.saturating_add(other.down_ms);
        self.unknown_ms = self.unknown_ms.saturating_add(other.unknown_ms);
    }

    fn add_to(&self, sum: &mut VerdictTime) {
        sum.up_ms += i64::from(self.up_ms);
        sum.noted_ms += i64::from(self.noted_ms);
        sum.degraded_ms += i64::from(self.degraded_ms);
        sum.down_ms += i64::from(self.down_ms);
        sum.unknown_ms += i64::from(self.unknown_ms);
    }
}

/// Adds `verdict` from `from` to `to` into the roll-ups, hour by hour
/// (what is older than the roll-ups keep is skipped).
fn account(rollups: &mut Rollups<VerdictSpans>, verdict: &Verdict, from: i64, to: i64) {
    let mut t = from.max(to - DAYS as i64 * DAY_MS);
    while t < to {
        let end = (t - t.rem_euclid(HOUR_MS) + HOUR_MS).min(to);
        // At most an hour.
        let ms = u32::try_from(end - t).unwrap_or(u32::MAX);
        rollups.add(t, &VerdictSpans::of(verdict, ms));
        t = end;
    }
}

/// A region's latest answer and when it was seen (probe times).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The answer (`None`: the region got none to compare).
    pub answer: Option<Arc<str>>,
    /// When it was first seen, in an unbroken run of equal answers.
    pub since_ms: i64,
    /// When it was last seen.
    pub at_ms: i64,
}

/// A per-region value that changes only after the same observation
/// `n` times in a row (the `fail_after`/`recover_after` of facts that are
/// not votes: warnings, DNS answers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steady<T> {
    /// The value in force (`None`: none yet, or gone).
    pub value: Option<T>,
    candidate: Option<T>,
    count: u32,
}

impl<T: PartialEq + Clone> Steady<T> {
    /// Observes `v`; returns whether the value in force changed.
    pub fn observe(&mut self, v: Option<T>, n: u32) -> bool {
        if self.candidate == v {
            self.count = self.count.saturating_add(1);
        } else {
            self.candidate = v;
            self.count = 1;
        }
        if self.count >= n.max(1) && self.value != self.candidate {
            self.value = self.candidate.clone();
            return true;
        }
        false
    }
}

impl Steady<Arc<str>> {
    /// Holds `shared` in place of an equal value or candidate of its own
    /// (after they were read from a snapshot, where each has its own).
    fn share(&mut self, shared: &Arc<str>) {
        for held in [&mut self.value, &mut self.candidate].into_iter().flatten() {
            if *held == *shared {
                *held = shared.clone();
            }
        }
    }
}

/// The answer a DNS-kind result carries: its records or MX hosts, sorted;
/// `none` when it found none; `None` when it got no answer to compare (an
/// error, a timeout, a resolver failure).
fn answer(result: &StoredResult, details: Option<&serde_json::Value>) -> Option<Arc<str>> {
    let answered = match result.status {
        Status::Pass | Status::Warn => true,
        Status::Fail => result.class == Some(FailureClass::Policy),
        Status::Error => false,
    };
    if !answered {
        return None;
    }
    let details = details?;
    for key in ["record", "records", "hosts"] {
        match details.get(key) {
            Some(serde_json::Value::Array(items)) => {
                let mut items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                items.sort();
                return Some(Arc::from(items.join(" ")));
            }
            Some(v) => return Some(Arc::from(v.to_string())),
            None => {}
        }
    }
    Some(Arc::from("none"))
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
            warnings: SmallMap::new(),
            warn_state: SmallMap::new(),
            answers: SmallMap::new(),
            seen: SmallMap::new(),
            rollups: Rollups::default(),
            drift: Drift::default(),
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
                trusted: !impaired.contains_key(region.as_str()),
            })
            .collect();
        let verdict = vote(&ballots, &check.quorum);
        if verdict != Verdict::Ok {
            return verdict;
        }
        if let Some(answers) = self.divergence(impaired) {
            return Verdict::Divergent { answers };
        }
        match self.warnings.iter().next() {
            Some((_, message)) => Verdict::Warning {
                regions: self.warnings.keys().map(|r| r.to_string()).collect(),
                message: message.clone(),
            },
            None => Verdict::Ok,
        }
    }

    /// The held answers per region when the regions really disagree: their
    /// answers, held steady, differ, and so do the answers they see now,
    /// among the regions that have answered since the latest change seen
    /// anywhere. A change on its way to every region (seen a few seconds
    /// apart) is therefore no divergence; answers seen through an impaired
    /// vantage prove nothing.
    fn divergence(&self, impaired: &Impaired) -> Option<BTreeMap<String, String>> {
        let unseen = Seen::default();
        let trusted: Vec<(&str, &Steady<Arc<str>>, &Seen)> = self
            .answers
            .iter()
            .filter(|(region, _)| !impaired.contains_key(region.as_str()))
            .map(|(region, held)| {
                let seen = self.seen.get(region.as_str()).unwrap_or(&unseen);
                (region.as_str(), held, seen)
            })
            .collect();
        let changed_ms = trusted.iter().map(|(_, _, seen)| seen.since_ms).max()?;
        let fresh = trusted
            .iter()
            .filter(|(_, _, seen)| seen.at_ms >= changed_ms);
        let held: BTreeMap<String, String> = fresh
            .clone()
            .filter_map(|(region, held, _)| {
                Some(((*region).to_owned(), held.value.as_deref()?.to_owned()))
            })
            .collect();
        let now: BTreeSet<&str> = fresh
            .filter_map(|(_, _, seen)| seen.answer.as_deref())
            .collect();
        let distinct: BTreeSet<&String> = held.values().collect();
        (distinct.len() > 1 && now.len() > 1).then_some(held)
    }

    fn refresh(
        &mut self,
        check: &CheckDecl,
        incidents: &mut Incidents,
        impaired: &Impaired,
        at_ms: i64,
    ) {
        if check.tracks_changes() {
            let assigned = self.regions.len();
            self.drift
                .settle(check, assigned, impaired, incidents, at_ms);
        }
        let verdict = self.decide(check, impaired);
        self.settled |= !matches!(verdict, Verdict::Blind { .. });
        if !verdict.same_as(&self.verdict) {
            if self.settled {
                incidents.on_verdict(&check.name, &verdict, at_ms);
            }
            account(&mut self.rollups, &self.verdict, self.since_ms, at_ms);
            self.verdict = verdict;
            self.since_ms = at_ms;
        }
    }
}

impl CheckVerdict {
    /// Shares each region's answer between what it saw and what it holds
    /// again (after they were read from a snapshot, where each has its
    /// own).
    pub fn share(&mut self) {
        for (region, held) in self.answers.iter_mut() {
            if let Some(seen) = self
                .seen
                .get(region.as_str())
                .and_then(|s| s.answer.as_ref())
            {
                held.share(seen);
            }
        }
    }

    /// Time per verdict class from `since_ms` (rounded down to the hour
    /// within the last 24 hours, else to the day) to `now_ms`, the current
    /// verdict included.
    pub fn time_since(&self, since_ms: i64, now_ms: i64) -> VerdictTime {
        let mut open = Rollups::default();
        account(&mut open, &self.verdict, self.since_ms, now_ms);
        let mut total = self.rollups.since(since_ms);
        total.merge(&open.since(since_ms));
        total
    }

    /// The roll-ups with the current verdict counted up to `now_ms` (for
    /// the status page's bars).
    pub fn rollups_until(&self, now_ms: i64) -> Rollups<VerdictSpans> {
        let mut r = self.rollups.clone();
        account(&mut r, &self.verdict, self.since_ms, now_ms);
        r
    }
}

/// Verdicts of all checks.
pub type Verdicts = NameMap<Arc<CheckVerdict>>;

/// Follows a new declaration: new checks start OK, removed ones go, a
/// check's region list is followed (trackers of kept regions stay), and a
/// check that now probes something else (kind, target, params) starts a
/// new baseline.
pub fn follow_declaration(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    old: &Declared,
    checks: &[CheckDecl],
    impaired: &Impaired,
    at_ms: i64,
) {
    let before = old.checks_by_name();
    let names: std::collections::HashSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    // In name order: what deleting does to incidents depends on the order.
    let mut deleted: Vec<String> = verdicts
        .keys()
        .filter(|name| !names.contains(name.as_str()))
        .cloned()
        .collect();
    deleted.sort_unstable();
    for name in deleted {
        incidents.on_deleted(&name, at_ms);
        verdicts.remove(&name);
    }
    for check in checks {
        match verdicts.get_mut(&check.name) {
            None => {
                verdicts.insert(
                    check.name.clone(),
                    Arc::new(CheckVerdict::new(check, impaired, at_ms)),
                );
            }
            Some(v) => {
                let v = Arc::make_mut(v);
                let assigned = |r: &Name| check.runs_in(r.as_str());
                v.regions.retain(|r, _| assigned(r));
                v.warnings.retain(|r, _| assigned(r));
                v.answers.retain(|r, _| assigned(r));
                v.seen.retain(|r, _| assigned(r));
                v.warn_state.retain(|r, _| assigned(r));
                v.drift.retain_regions(&check.regions);
                let probed = |c: &CheckDecl| (c.kind, c.target.clone(), c.params.clone());
                if before
                    .get(check.name.as_str())
                    .is_some_and(|o| probed(o) != probed(check))
                {
                    v.drift = Drift::default();
                }
                for r in &check.regions {
                    v.regions.entry(r).or_default();
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
    result: &StoredResult,
    at_ms: i64,
) -> bool {
    let new = || Arc::new(CheckVerdict::new(check, &Impaired::new(), at_ms));
    let Some(v) = slot(verdicts, &check.name, new) else {
        return false;
    };
    let v = Arc::make_mut(v);
    let region = result.region.as_str();
    // Results from a region the check is not assigned to do not vote.
    let Some(tracker) = v.regions.get_mut(region) else {
        return false;
    };
    let newest = result.started_at_ms >= tracker.last_result_ms;
    let old = tracker.state;
    let mut changed = match tracker.observe(
        result.status,
        result.started_at_ms,
        check.fail_after,
        check.recover_after,
    ) {
        Some(new) => {
            incidents.on_region(&check.name, region, old, new, at_ms);
            true
        }
        None => false,
    };
    if !newest {
        return changed;
    }
    // Warnings and answers change after `fail_after` equal results (a
    // warning clears after `recover_after`), so flapping opens nothing.
    let warning = match result.status {
        Status::Warn => Some(true),
        Status::Pass | Status::Fail => Some(false),
        Status::Error => None,
    };
    if let Some(w) = warning {
        let n = if w {
            check.fail_after
        } else {
            check.recover_after
        };
        let state = v.warn_state.entry(region).or_default();
        if state.observe(Some(w), n) {
            changed = true;
            if !w {
                v.warnings.remove(region);
            }
        }
        if state.value == Some(true) {
            // The latest message, which alone does not make a new situation.
            v.warnings.insert(region, result.message.clone());
        }
    }
    let details: Option<serde_json::Value> = (check.kind.compares_answers()
        || check.tracks_changes())
    .then(|| serde_json::from_str(&result.details_json).ok())
    .flatten();
    if check.tracks_changes()
        && matches!(result.status, Status::Pass | Status::Warn)
        && let Some(seen) = details.as_ref().and_then(Observed::from_details)
    {
        changed |= v.drift.observe(region, seen, check);
    }
    if check.kind.compares_answers() {
        let changed_ms = v.seen.values().map(|s| s.since_ms).max().unwrap_or(0);
        let seen = v.seen.entry(region).or_default();
        // The answer seen before, when equal: one copy of it however
        // often it is seen and held.
        let now = match (answer(result, details.as_ref()), &seen.answer) {
            (Some(now), Some(before)) if now == *before => Some(before.clone()),
            (now, _) => now,
        };
        // A new answer, or the first since a change elsewhere (the region
        // is comparable again), may decide a divergence.
        changed |= seen.answer != now || seen.at_ms < changed_ms;
        if seen.answer != now || seen.at_ms == 0 {
            seen.answer = now.clone();
            seen.since_ms = result.started_at_ms;
        }
        seen.at_ms = result.started_at_ms;
        // No answer (a timeout, a resolver failure) held long enough drops
        // the region from the comparison.
        changed |= v
            .answers
            .entry(region)
            .or_default()
            .observe(now, check.fail_after);
    }
    changed
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
            Arc::make_mut(v).refresh(check, incidents, impaired, at_ms);
        }
    }
}

/// When each check's regions next fall silent, so that a tick looks at
/// the checks due rather than at every check. Derived: rebuilt from the
/// trackers after a load or a declaration. A check's entry is never later
/// than the deadline of any of its regions that is not stale yet (it may
/// be earlier: results move deadlines on without touching the queue).
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    built: bool,
    /// (due, check's position in the declaration), earliest first.
    /// Positions hold until the next declaration, which invalidates all.
    queue: BTreeSet<(i64, usize)>,
    /// Each check's entry in the queue by position (`i64::MAX`: none).
    due: Vec<i64>,
}

impl PartialEq for Deadlines {
    fn eq(&self, _: &Self) -> bool {
        true // derived data
    }
}

impl Deadlines {
    /// Forgets everything: rebuilt at the next tick.
    pub fn invalidate(&mut self) {
        *self = Deadlines::default();
    }

    /// A region of the check at `position` (`check`) saw a result started
    /// at `at_ms`: its deadline is at least three intervals on.
    pub fn observed(&mut self, position: usize, check: &CheckDecl, at_ms: i64) {
        if self.built {
            self.schedule(position, at_ms.saturating_add(3 * check.interval.ms()));
        }
    }

    /// Queues the check at `position` at `due_ms` unless it is queued
    /// earlier already.
    fn schedule(&mut self, position: usize, due_ms: i64) {
        let Some(queued) = self.due.get_mut(position) else {
            return;
        };
        if *queued <= due_ms {
            return;
        }
        if *queued != i64::MAX {
            self.queue.remove(&(*queued, position));
        }
        *queued = due_ms;
        self.queue.insert((due_ms, position));
    }

    /// Queues the check at `position` at the earliest deadline of its
    /// regions not stale yet.
    fn requeue(&mut self, position: usize, check: &CheckDecl, v: &CheckVerdict) {
        let interval_ms = check.interval.ms();
        let next = v
            .regions
            .values()
            .filter(|t| t.state != RegionState::Stale)
            .map(|t| t.last_result_ms.saturating_add(3 * interval_ms))
            .min();
        if let Some(due) = next {
            self.schedule(position, due);
        }
    }

    /// Takes the positions of the checks due before `now_ms` (all of them
    /// when not built), in declaration order.
    fn take_due(&mut self, now_ms: i64, declared: &Declared, verdicts: &Verdicts) -> Vec<usize> {
        if !self.built {
            self.built = true;
            self.due = vec![i64::MAX; declared.checks.len()];
            for (i, check) in declared.checks.iter().enumerate() {
                if let Some(v) = verdicts.get(&check.name) {
                    self.requeue(i, check, v);
                }
            }
        }
        let mut due = Vec::new();
        while let Some(&(at, position)) = self.queue.first()
            && at < now_ms
        {
            self.queue.pop_first();
            if let Some(queued) = self.due.get_mut(position) {
                *queued = i64::MAX;
            }
            due.push(position);
        }
        // In declaration order, as every replica takes them.
        due.sort_unstable();
        due
    }
}

/// Marks regions silent for three intervals stale, and votes again on the
/// checks that changed (all of them when `all`: the impaired set changed).
/// Only checks due in `deadlines` are looked at, unless `all`.
pub fn tick(
    verdicts: &mut Verdicts,
    incidents: &mut Incidents,
    deadlines: &mut Deadlines,
    declared: &Declared,
    impaired: &Impaired,
    now_ms: i64,
    all: bool,
) {
    let due = deadlines.take_due(now_ms, declared, verdicts);
    let mut expire = |position: usize, check: &CheckDecl, deadlines: &mut Deadlines| {
        let Some(v) = verdicts.get_mut(&check.name) else {
            return;
        };
        let v = Arc::make_mut(v);
        let interval_ms = check.interval.ms();
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
        deadlines.requeue(position, check, v);
    };
    if all {
        for (i, check) in declared.checks.iter().enumerate() {
            expire(i, check, deadlines);
        }
    } else {
        for i in due {
            if let Some(check) = declared.checks.get(i) {
                expire(i, check, deadlines);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::Declared;
    use crate::notification::Severity;

    fn check(kind: &str, params: &str) -> CheckDecl {
        let text = format!(
            "[[check]]\nname = \"c\"\nkind = \"{kind}\"\ntarget = \"example.org\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ {params} }}\n"
        );
        match Declared::parse(std::path::Path::new("t.toml"), &text) {
            Ok(mut d) => d.checks.remove(0),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn spans_keep_warning_time_apart_and_read_the_four_element_form() {
        let mut r = Rollups::<VerdictSpans>::default();
        let warning = Verdict::Warning {
            regions: vec!["eu".into()],
            message: "expires soon".into(),
        };
        account(&mut r, &Verdict::Ok, 0, HOUR_MS / 2);
        account(&mut r, &warning, HOUR_MS / 2, HOUR_MS + 60_000);
        let hours: Vec<VerdictSpans> = r.hours().map(|(_, s)| *s).collect();
        assert_eq!(
            hours
                .iter()
                .map(|s| (s.up_ms, s.noted_ms))
                .collect::<Vec<_>>(),
            [(1_800_000, 1_800_000), (0, 60_000)]
        );
        // Written as four numbers without warning time, five with it.
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"hours":[[0,[1800000,0,0,0,1800000]],[1,[0,0,0,0,60000]]],"days":[[0,[1800000,0,0,0,1860000]]]}"#
        );
        let back: Result<Rollups<VerdictSpans>, _> = serde_json::from_str(&json);
        assert!(back.as_ref().is_ok_and(|b| *b == r), "{back:?}");
        // What 0.12 wrote (four numbers, or an object) reads with no
        // warning time; a short array is an error.
        let old: Result<Vec<VerdictSpans>, _> =
            serde_json::from_str(r#"[[1, 2, 3, 4], {"up_ms": 5, "down_ms": 6}]"#);
        let old = old.unwrap_or_default();
        assert_eq!(
            old.iter()
                .map(|s| (s.up_ms, s.degraded_ms, s.down_ms, s.unknown_ms, s.noted_ms))
                .collect::<Vec<_>>(),
            [(1, 2, 3, 4, 0), (5, 0, 6, 0, 0)]
        );
        assert!(serde_json::from_str::<VerdictSpans>("[1, 2, 3]").is_err());
        // Uptime counts warning time as up.
        let v = CheckVerdict {
            rollups: r,
            verdict: warning,
            since_ms: HOUR_MS + 60_000,
            ..CheckVerdict::new(&check("smtp", "port = 25"), &Impaired::default(), 0)
        };
        let t = v.time_since(0, 2 * HOUR_MS);
        assert_eq!((t.up_ms, t.noted_ms), (1_800_000, 5_400_000));
    }

    fn result(region: &str, at: i64, status: Status, message: &str, details: &str) -> StoredResult {
        StoredResult {
            region: region.into(),
            agent: format!("{region}-1"),
            started_at_ms: at,
            status,
            class: None,
            message: message.into(),
            duration_ms: 1,
            details_json: details.into(),
            cert_not_after: None,
            phases: Vec::new(),
        }
    }

    fn feed(v: &mut Verdicts, inc: &mut Incidents, check: &CheckDecl, results: &[StoredResult]) {
        for r in results {
            if observe(v, inc, check, r, r.started_at_ms) {
                refresh(v, inc, [check], &Impaired::new(), r.started_at_ms);
            }
        }
    }

    #[test]
    fn time_is_accounted_per_verdict_class_and_hour() {
        let c = check("tls", "port = 25");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let at = |h: i64, m: i64| 100 * HOUR_MS + h * HOUR_MS + m * 60_000;
        let all = |t: i64, s: Status| -> Vec<StoredResult> {
            ["ru", "eu", "us"]
                .iter()
                .map(|r| result(r, t, s, "", "{}"))
                .collect()
        };
        feed(&mut v, &mut inc, &c, &all(at(0, 0), Status::Pass));
        // RU down 30 min (REGIONAL), then everyone 15 min (OUTAGE), then back.
        feed(
            &mut v,
            &mut inc,
            &c,
            &[result("ru", at(0, 30), Status::Fail, "", "{}")],
        );
        feed(
            &mut v,
            &mut inc,
            &c,
            &[result("ru", at(0, 31), Status::Fail, "", "{}")],
        );
        for t in [at(1, 1), at(1, 2)] {
            feed(&mut v, &mut inc, &c, &all(t, Status::Fail)[1..]);
        }
        for t in [at(1, 17), at(1, 18)] {
            feed(&mut v, &mut inc, &c, &all(t, Status::Pass));
        }
        let t = v["c"].time_since(at(0, 0), at(3, 0));
        let min = 60_000;
        assert_eq!(t.degraded_ms, 31 * min, "{t:?}");
        assert_eq!(t.down_ms, 16 * min, "{t:?}");
        assert_eq!(
            t.up_ms + t.degraded_ms + t.down_ms + t.unknown_ms,
            3 * HOUR_MS
        );
        // A window starting later sees only its own hours.
        let later = v["c"].time_since(at(2, 0), at(3, 0));
        assert_eq!(later.up_ms, HOUR_MS);
    }

    #[test]
    fn warn_results_open_a_warning_incident_without_a_vote() {
        let c = check("tls", "port = 25");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let at = |t: i64, status: Status, msg: &str| vec![result("eu", t, status, msg, "{}")];
        let ok: Vec<StoredResult> = ["ru", "eu", "us"]
            .iter()
            .map(|r| result(r, 1, Status::Pass, "", "{}"))
            .collect();
        feed(&mut v, &mut inc, &c, &ok);
        assert_eq!(v["c"].verdict, Verdict::Ok);
        // One warning alone, then a pass: flapping opens nothing.
        feed(
            &mut v,
            &mut inc,
            &c,
            &at(2, Status::Warn, "expires in 12 days"),
        );
        feed(&mut v, &mut inc, &c, &at(3, Status::Pass, ""));
        assert_eq!((v["c"].verdict.name(), inc.all.len()), ("ok", 0));
        // fail_after (2) warnings in a row: a warning incident.
        feed(
            &mut v,
            &mut inc,
            &c,
            &at(4, Status::Warn, "expires in 12 days"),
        );
        feed(
            &mut v,
            &mut inc,
            &c,
            &at(5, Status::Warn, "expires in 12 days"),
        );
        assert_eq!(v["c"].verdict.name(), "warning");
        // A new message for the same regions is the same situation.
        feed(
            &mut v,
            &mut inc,
            &c,
            &at(6, Status::Warn, "expires in 11 days"),
        );
        let incident = &inc.all[&inc.open["c"]];
        assert_eq!(incident.timeline.len(), 1, "{:?}", incident.timeline);
        assert_eq!(
            incident.timeline[0].what,
            "opened: WARNING from eu: expires in 12 days"
        );
        // recover_after (2) passes clear it.
        feed(&mut v, &mut inc, &c, &at(7, Status::Pass, ""));
        assert_eq!(v["c"].verdict.name(), "warning");
        feed(&mut v, &mut inc, &c, &at(8, Status::Pass, ""));
        assert_eq!(v["c"].verdict, Verdict::Ok);
        assert!(inc.open.is_empty(), "resolved");
    }

    #[test]
    fn different_dns_answers_per_region_are_a_finding() {
        let c = check("spf", "");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let a = r#"{"record":"v=spf1 -all"}"#;
        let b = r#"{"record":"v=spf1 ip4:192.0.2.1 -all"}"#;
        let round = |t: i64, ru: &str| {
            vec![
                result("ru", t, Status::Pass, "", ru),
                result("eu", t, Status::Pass, "", a),
                result("us", t, Status::Error, "timeout", "{}"),
            ]
        };
        for t in [1, 2] {
            feed(&mut v, &mut inc, &c, &round(t, a));
        }
        assert_eq!(v["c"].verdict, Verdict::Ok, "errors carry no answer");
        // An answer seen again and again is kept once: what the region saw
        // and what it holds share it, also once read back from a snapshot.
        let one_copy = |cv: &CheckVerdict| {
            let seen = cv.seen.get("eu").and_then(|s| s.answer.clone());
            let held = cv.answers.get("eu");
            match (
                seen,
                held.and_then(|h| h.value.as_ref()),
                held.and_then(|h| h.candidate.as_ref()),
            ) {
                (Some(s), Some(value), Some(candidate)) => {
                    Arc::ptr_eq(&s, value) && Arc::ptr_eq(&s, candidate)
                }
                other => panic!("{other:?}"),
            }
        };
        assert!(one_copy(&v["c"]));
        let json = serde_json::to_string(&*v["c"]).unwrap_or_default();
        let mut back: CheckVerdict = match serde_json::from_str(&json) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert!(!one_copy(&back));
        back.share();
        assert!(one_copy(&back) && back == *v["c"]);
        // One odd answer (a rotating set, a cache) is not yet a finding.
        feed(&mut v, &mut inc, &c, &round(3, b));
        assert_eq!(v["c"].verdict, Verdict::Ok);
        feed(&mut v, &mut inc, &c, &round(4, b));
        match &v["c"].verdict {
            Verdict::Divergent { answers } => {
                assert_eq!(answers["ru"], "\"v=spf1 ip4:192.0.2.1 -all\"");
                assert_eq!(answers["eu"], "\"v=spf1 -all\"");
                assert!(!answers.contains_key("us"));
            }
            other => panic!("{other:?}"),
        }
        for t in [5, 6] {
            feed(&mut v, &mut inc, &c, &round(t, a));
        }
        assert_eq!(v["c"].verdict, Verdict::Ok);
        assert_eq!(inc.all.len(), 1);
        // A target that fails everywhere outranks the divergence.
        let fails: Vec<StoredResult> = ["ru", "eu", "us"]
            .iter()
            .flat_map(|r| [7, 8].map(|t| result(r, t, Status::Fail, "no SPF record", "{}")))
            .collect();
        feed(&mut v, &mut inc, &c, &fails);
        assert_eq!(v["c"].verdict.name(), "outage");
    }

    #[test]
    fn a_change_reaching_every_region_is_no_divergence() {
        let c = check("spf", "");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let old = r#"{"record":"v=spf1 -all"}"#;
        let new = r#"{"record":"v=spf1 ~all"}"#;
        // Each region probes every 10 s, a few seconds apart; the record
        // changes at 25 s, and back at 85 s.
        for t in (0..150).step_by(10) {
            for (offset, region) in [(0, "ru"), (3, "eu"), (6, "us")] {
                let at = t + offset;
                let answer = if (25..85).contains(&at) { new } else { old };
                feed(
                    &mut v,
                    &mut inc,
                    &c,
                    &[result(region, at, Status::Pass, "", answer)],
                );
                assert_ne!(v["c"].verdict.name(), "divergent", "at {at}");
            }
        }
        assert!(inc.all.is_empty(), "no incident: {:?}", inc.all);
        // A region that keeps seeing the old answer is a divergence.
        for t in (150..200).step_by(10) {
            for (offset, region) in [(0, "ru"), (3, "eu"), (6, "us")] {
                let answer = if region == "ru" { old } else { new };
                feed(
                    &mut v,
                    &mut inc,
                    &c,
                    &[result(region, t + offset, Status::Pass, "", answer)],
                );
            }
        }
        assert_eq!(v["c"].verdict.name(), "divergent");
    }

    fn spf_details(record: &str) -> String {
        let observed = Observed::spf(record).unwrap_or_default();
        serde_json::json!({ "record": record, "observed": observed }).to_string()
    }

    /// Every region probes every 10 s, a few seconds apart; `record(at)` is
    /// what the DNS serves at `at`.
    fn run_spf(
        v: &mut Verdicts,
        inc: &mut Incidents,
        c: &CheckDecl,
        from: i64,
        to: i64,
        record: impl Fn(i64) -> &'static str,
    ) {
        for t in (from..to).step_by(10) {
            for (offset, region) in [(0, "ru"), (3, "eu"), (6, "us")] {
                let at = t + offset;
                let details = spf_details(record(at));
                feed(v, inc, c, &[result(region, at, Status::Pass, "", &details)]);
                assert_ne!(v["c"].verdict.name(), "divergent", "at {at}");
            }
        }
    }

    #[test]
    fn a_change_seen_by_a_quorum_is_one_changed_incident_and_its_restoration_another() {
        let c = check("spf", "");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let old = "v=spf1 ip4:192.0.2.61 ip4:192.0.2.62 -all";
        let new = "v=spf1 ip4:192.0.2.61 ~all";
        // The first agreed value is the baseline, no change.
        run_spf(&mut v, &mut inc, &c, 0, 50, |_| old);
        assert!(v["c"].drift.baseline.is_some() && v["c"].drift.changes.is_empty());
        assert!(inc.all.is_empty());
        // Changed at 55 s, restored at 125 s.
        run_spf(&mut v, &mut inc, &c, 50, 200, |at| {
            if (55..125).contains(&at) { new } else { old }
        });
        let changes = &v["c"].drift.changes;
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(
            changes[0].summary,
            "SPF example.org: -all → ~all; removed ip4:192.0.2.62"
        );
        assert_eq!(
            changes[1].summary,
            "SPF example.org: ~all → -all; added ip4:192.0.2.62"
        );
        assert_eq!(changes[0].severity, Some(Severity::Warning));
        // One CHANGED incident per change, each over at once; nothing else.
        let opened: Vec<(&str, bool)> = inc
            .all
            .values()
            .map(|i| (i.verdict.name(), i.resolved_ms.is_some()))
            .collect();
        assert_eq!(opened, [("changed", true), ("changed", true)]);
        assert!(inc.open.is_empty());
        assert_eq!(changes[0].incident, Some(1));
        assert_eq!(v["c"].verdict, Verdict::Ok);
    }

    #[test]
    fn one_region_alone_changes_nothing_and_ignore_records_without_an_incident() {
        let c = check("spf", "");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let old = "v=spf1 -all";
        let new = "v=spf1 ~all";
        run_spf(&mut v, &mut inc, &c, 0, 50, |_| old);
        // Only RU sees the new record: below the quorum (a divergence, not a change).
        for t in (50..100).step_by(10) {
            for (offset, region) in [(0, "ru"), (3, "eu"), (6, "us")] {
                let record = if region == "ru" { new } else { old };
                let details = spf_details(record);
                let r = result(region, t + offset, Status::Pass, "", &details);
                feed(&mut v, &mut inc, &c, &[r]);
            }
        }
        assert!(v["c"].drift.changes.is_empty());
        assert_eq!(v["c"].verdict.name(), "divergent");

        let mut quiet = check("spf", "");
        quiet.on_change = crate::declared::OnChange::Ignore;
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        run_spf(&mut v, &mut inc, &quiet, 0, 100, |at| {
            if at < 50 { old } else { new }
        });
        assert_eq!(v["c"].drift.changes.len(), 1);
        assert_eq!(v["c"].drift.changes[0].severity, None);
        assert!(inc.all.is_empty(), "{:?}", inc.all);
    }

    #[test]
    fn a_renewal_is_an_info_change_and_a_new_issuer_a_warning() {
        let c = check("tls", "port = 25");
        let (mut v, mut inc) = (Verdicts::default(), Incidents::default());
        let cert = |fp: &str, issuer: &str, not_after: &str| {
            let mut o = Observed::new();
            o.set("sha256", fp);
            o.set("subject", "CN=mx.example.org");
            o.set("issuer", issuer);
            o.set("not_after", not_after);
            serde_json::json!({ "observed": o }).to_string()
        };
        let serve = [
            cert("sha256:aa", "CN=R3", "2027-01-01T00:00:00Z"),
            cert("sha256:bb", "CN=R3", "2027-04-01T00:00:00Z"),
            cert("sha256:cc", "CN=Other CA", "2027-04-01T00:00:00Z"),
        ];
        for (step, details) in serve.iter().enumerate() {
            for t in 0..3 {
                for region in ["ru", "eu", "us"] {
                    let at = step as i64 * 100 + t;
                    feed(
                        &mut v,
                        &mut inc,
                        &c,
                        &[result(region, at, Status::Pass, "", details)],
                    );
                }
            }
        }
        let changes = &v["c"].drift.changes;
        let kinds: Vec<(Option<Severity>, bool)> =
            changes.iter().map(|c| (c.severity, c.renewal)).collect();
        assert_eq!(
            kinds,
            [
                (Some(Severity::Info), true),
                (Some(Severity::Warning), false)
            ]
        );
        assert!(
            changes[1].summary.contains("issuer: CN=R3 → CN=Other CA"),
            "{changes:?}"
        );
        assert_eq!(inc.all.len(), 2);
    }
}
