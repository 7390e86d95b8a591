//! Vantage health: a region whose vantage is impaired — an agent there
//! failing its control checks, or a burst of unrelated targets failing (or
//! erroring) from that region only — does not vote, and a mesh-degraded
//! incident (`vantage/<region>`, severity warning) says which and why.
//! Pure: computed from the replicated agents and latest results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vantage_common::Status;

use super::agents::AgentRecord;
use super::results::CheckResults;
use crate::declared::CheckDecl;

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

/// Regions impaired now, with the reason.
pub fn assess(
    agents: &BTreeMap<String, AgentRecord>,
    checks: &[CheckDecl],
    results: &BTreeMap<String, CheckResults>,
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
    // Per region: (checks shared with other regions, failing from here only).
    let mut burst: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in checks.iter().filter(|c| c.regions.len() > 1) {
        let latest = results.get(&c.name).map(|r| &r.latest);
        for region in &c.regions {
            let entry = burst.entry(region.as_str()).or_default();
            entry.0 += 1;
            let Some(latest) = latest else { continue };
            let here = latest.get(region).is_some_and(|r| failing(r.status));
            let others_fine = c.regions.iter().filter(|o| *o != region).all(|o| {
                latest
                    .get(o)
                    .is_some_and(|r| matches!(r.status, Status::Pass | Status::Warn))
            });
            if here && others_fine {
                entry.1 += 1;
            }
        }
    }
    for (region, (shared, lonely)) in burst {
        if lonely >= BURST_MIN && lonely * 2 > shared && !impaired.contains_key(region) {
            impaired.insert(
                region.to_owned(),
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

    fn results(ru: Status) -> CheckResults {
        let mut r = CheckResults::default();
        r.record(result("ru", ru));
        r.record(result("eu", Status::Pass));
        r.record(result("us", Status::Pass));
        r
    }

    #[test]
    fn a_burst_from_one_region_only_impairs_it() {
        let checks: Vec<CheckDecl> = ["a", "b", "c", "d"].into_iter().map(check).collect();
        let mut res = BTreeMap::new();
        res.insert("a".to_owned(), results(Status::Error));
        res.insert("b".to_owned(), results(Status::Fail));
        res.insert("c".to_owned(), results(Status::Pass));
        res.insert("d".to_owned(), results(Status::Pass));
        assert!(
            assess(&BTreeMap::new(), &checks, &res).is_empty(),
            "2 of 4: no burst"
        );
        res.insert("c".to_owned(), results(Status::Error));
        let impaired = assess(&BTreeMap::new(), &checks, &res);
        assert_eq!(impaired["ru"], "3 of 4 checks fail from ru only");
        // The same failures seen from everywhere are about the targets.
        let mut everywhere = CheckResults::default();
        for region in ["ru", "eu", "us"] {
            everywhere.record(result(region, Status::Fail));
        }
        for name in ["a", "b", "c"] {
            res.insert(name.to_owned(), everywhere.clone());
        }
        assert!(assess(&BTreeMap::new(), &checks, &res).is_empty());
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
        let impaired = assess(&agents, &[], &BTreeMap::new());
        assert!(
            impaired["eu"].starts_with("agent eu-1 fails its control checks: resolver (error"),
            "{impaired:?}"
        );
        if let Some(a) = agents.get_mut("eu-1") {
            a.connected = false;
        }
        assert!(
            assess(&agents, &[], &BTreeMap::new()).is_empty(),
            "gone agents do not count"
        );
    }
}
