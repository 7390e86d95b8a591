//! Vantage health: a region whose vantage is impaired — an agent there
//! failing its control checks, or a burst of unrelated targets failing (or
//! erroring) from that region only — does not vote, and a mesh-degraded
//! incident (`vantage/<region>`, severity warning) says which and why.
//! Pure: computed from the replicated agents and latest results.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vantage_common::Status;

use super::agents::AgentRecord;
use super::results::CheckResults;
use crate::declared::{CheckDecl, NameMap};

/// Checks failing from one region only that make a burst (at least this
/// many, and more than half of the region's checks shared with others).
pub const BURST_MIN: usize = 3;

/// Why a region's vantage is impaired, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impairment {
    /// One line.
    pub reason: String,
    /// Log time it began.
    pub since_ms: i64,
    /// Since when the cause has been gone: it ends after [`CLEAR_AFTER_MS`].
    #[serde(default)]
    pub clear_since_ms: Option<i64>,
}

/// An impairment ends once its cause has been gone this long (log time), so
/// a vantage that flaps does not open an incident each time.
pub const CLEAR_AFTER_MS: i64 = 30_000;

/// Impaired regions.
pub type Impaired = BTreeMap<String, Impairment>;

/// The incident subject of a region's vantage.
pub fn subject(region: &str) -> String {
    format!("vantage/{region}")
}

fn failing(status: Status) -> bool {
    matches!(status, Status::Fail | Status::Error)
}

/// The region `check` fails from alone, if any: failing (or erroring)
/// there while every other assigned region passes or warns. (At most one
/// region can: any other sees the failing one.)
fn lonely_region<'a>(check: &'a CheckDecl, results: Option<&CheckResults>) -> Option<&'a str> {
    if check.regions.len() < 2 {
        return None;
    }
    let latest = &results?.latest;
    let mut failing_here = None;
    for region in &check.regions {
        match latest.get(region).map(|r| r.entry.status) {
            Some(s) if failing(s) => {
                if failing_here.is_some() {
                    return None;
                }
                failing_here = Some(region.as_str());
            }
            Some(Status::Pass | Status::Warn) => {}
            _ => return None,
        }
    }
    failing_here
}

/// Per region, the checks it shares with other regions and those failing
/// from there only: kept up to date result by result, so judging vantage
/// health costs the same at 50,000 checks as at 10. Derived from the
/// declaration and the latest results (not serialised; rebuilt on first
/// use after a load or a new declaration).
#[derive(Debug, Clone, Default)]
pub struct Burst {
    built: bool,
    /// Region → checks it shares with other regions.
    shared: BTreeMap<String, usize>,
    /// Check → the region it fails from alone.
    lonely: HashMap<String, String>,
    /// Region → checks failing from there alone.
    counts: BTreeMap<String, usize>,
}

impl PartialEq for Burst {
    fn eq(&self, _: &Self) -> bool {
        true // derived data
    }
}

impl Burst {
    /// Forgets everything (the declaration changed): rebuilt on next use.
    pub fn invalidate(&mut self) {
        *self = Burst::default();
    }

    fn build(&mut self, checks: &[CheckDecl], results: &NameMap<Arc<CheckResults>>) {
        *self = Burst {
            built: true,
            ..Burst::default()
        };
        for c in checks.iter().filter(|c| c.regions.len() > 1) {
            for region in &c.regions {
                *self.shared.entry(region.clone()).or_default() += 1;
            }
            self.update(c, results.get(&c.name).map(|r| &**r));
        }
    }

    /// `check`'s latest results changed.
    pub fn update(&mut self, check: &CheckDecl, results: Option<&CheckResults>) {
        if !self.built {
            return;
        }
        let now = lonely_region(check, results);
        let before = self.lonely.get(&check.name).map(String::as_str);
        if before == now {
            return;
        }
        if let Some(b) = self.lonely.remove(&check.name)
            && let Some(n) = self.counts.get_mut(&b)
        {
            *n = n.saturating_sub(1);
        }
        if let Some(region) = now {
            *self.counts.entry(region.to_owned()).or_default() += 1;
            self.lonely.insert(check.name.clone(), region.to_owned());
        }
    }
}

/// Regions impaired now, with the reason.
pub fn assess(
    agents: &BTreeMap<String, AgentRecord>,
    checks: &[CheckDecl],
    results: &NameMap<Arc<CheckResults>>,
    burst: &mut Burst,
) -> BTreeMap<String, String> {
    let mut impaired = BTreeMap::new();
    for (name, a) in agents.iter().filter(|(_, a)| a.connected) {
        let bad: Vec<String> = a
            .controls
            .iter()
            .filter(|(_, r)| failing(r.status))
            .map(|(control, r)| format!("{control} ({}: {})", r.status, r.message))
            .collect();
        if !bad.is_empty() && !impaired.contains_key(&a.region) {
            impaired.insert(
                a.region.clone(),
                format!("agent {name} fails its control checks: {}", bad.join("; ")),
            );
        }
    }
    if !burst.built {
        burst.build(checks, results);
    }
    for (region, lonely) in &burst.counts {
        let shared = burst.shared.get(region).copied().unwrap_or(0);
        if *lonely >= BURST_MIN && lonely * 2 > shared && !impaired.contains_key(region) {
            impaired.insert(
                region.clone(),
                format!("{lonely} of {shared} checks fail from {region} only"),
            );
        }
    }
    impaired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::results::StoredResult;

    fn result(region: &str, status: Status) -> StoredResult {
        StoredResult {
            region: region.into(),
            agent: format!("{region}-1"),
            started_at_ms: 1,
            status,
            class: None,
            message: "m".into(),
            duration_ms: 1,
            details_json: "{}".into(),
            cert_not_after: None,
            phases: Vec::new(),
        }
    }

    fn check(name: &str) -> CheckDecl {
        let text = format!(
            "[[check]]\nname = \"{name}\"\nkind = \"spf\"\ntarget = \"example.org\"\nregions = [\"ru\", \"eu\", \"us\"]\n"
        );
        match crate::declared::Declared::parse(std::path::Path::new("t.toml"), &text) {
            Ok(mut d) => d.checks.remove(0),
            Err(e) => panic!("{e}"),
        }
    }

    fn results(ru: Status) -> Arc<CheckResults> {
        let mut r = CheckResults::default();
        r.record(&result("ru", ru));
        r.record(&result("eu", Status::Pass));
        r.record(&result("us", Status::Pass));
        Arc::new(r)
    }

    #[test]
    fn a_burst_from_one_region_only_impairs_it() {
        let checks: Vec<CheckDecl> = ["a", "b", "c", "d"].into_iter().map(check).collect();
        let mut res = NameMap::default();
        res.insert("a".to_owned(), results(Status::Error));
        res.insert("b".to_owned(), results(Status::Fail));
        res.insert("c".to_owned(), results(Status::Pass));
        res.insert("d".to_owned(), results(Status::Pass));
        // One index kept up to date result by result, and a fresh one.
        let mut kept = Burst::default();
        let mut judge = |res: &NameMap<Arc<CheckResults>>, changed: &[&str]| {
            for name in changed {
                let c = checks.iter().find(|c| c.name == *name);
                if let Some(c) = c {
                    kept.update(c, res.get(*name).map(|r| &**r));
                }
            }
            let incremental = assess(&BTreeMap::new(), &checks, res, &mut kept);
            let fresh = assess(&BTreeMap::new(), &checks, res, &mut Burst::default());
            assert_eq!(incremental, fresh, "the kept index matches a recount");
            fresh
        };
        assert!(judge(&res, &[]).is_empty(), "2 of 4: no burst");
        res.insert("c".to_owned(), results(Status::Error));
        let impaired = judge(&res, &["c"]);
        assert_eq!(impaired["ru"], "3 of 4 checks fail from ru only");
        // The same failures seen from everywhere are about the targets.
        let mut everywhere = CheckResults::default();
        for region in ["ru", "eu", "us"] {
            everywhere.record(&result(region, Status::Fail));
        }
        let everywhere = Arc::new(everywhere);
        for name in ["a", "b", "c"] {
            res.insert(name.to_owned(), everywhere.clone());
        }
        assert!(judge(&res, &["a", "b", "c"]).is_empty());
        // Failing from ru again, one by one.
        for name in ["a", "b"] {
            res.insert(name.to_owned(), results(Status::Fail));
        }
        assert!(judge(&res, &["a", "b"]).is_empty(), "2 of 4 so far");
        res.insert("c".to_owned(), results(Status::Fail));
        assert_eq!(judge(&res, &["c"])["ru"], "3 of 4 checks fail from ru only");
    }

    #[test]
    fn failing_controls_of_a_connected_agent_impair_its_region() {
        let mut agent = AgentRecord {
            region: "eu".into(),
            connected: true,
            ..AgentRecord::default()
        };
        agent
            .controls
            .insert("resolver".into(), result("eu", Status::Error));
        let mut agents = BTreeMap::from([("eu-1".to_owned(), agent)]);
        let impaired = assess(&agents, &[], &NameMap::default(), &mut Burst::default());
        assert!(
            impaired["eu"].starts_with("agent eu-1 fails its control checks: resolver (error"),
            "{impaired:?}"
        );
        if let Some(a) = agents.get_mut("eu-1") {
            a.connected = false;
        }
        assert!(
            assess(&agents, &[], &NameMap::default(), &mut Burst::default()).is_empty(),
            "gone agents do not count"
        );
    }
}
