//! Which agent runs which check: in each region of a check, the connected
//! agent with the highest rendezvous score for (check, agent). Pure and
//! deterministic, so every node computes the same assignment from the same
//! state; when an agent leaves only its own checks move, and they move
//! back when it returns.

use std::collections::BTreeMap;

use crate::declared::Declared;
use crate::state::agents::AgentRecord;

/// FNV-1a with a final avalanche (spreads similar names): stable across builds and platforms.
fn score(check: &str, agent: &str) -> u64 {
    let mut h = vantage_common::hash::fnv1a_pair(check, 0xff, agent);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Check names per connected agent (agents with nothing to run included).
pub fn assign(
    declared: &Declared,
    agents: &BTreeMap<String, AgentRecord>,
) -> BTreeMap<String, Vec<String>> {
    let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, a) in agents.iter().filter(|(_, a)| a.connected) {
        by_region
            .entry(a.region.as_str())
            .or_default()
            .push(name.as_str());
        out.insert(name.clone(), Vec::new());
    }
    for check in &declared.checks {
        for region in &check.regions {
            let Some(candidates) = by_region.get(region.as_str()) else {
                continue;
            };
            if let Some(winner) = candidates
                .iter()
                .max_by_key(|a| (score(&check.name, a), **a))
            {
                out.entry((*winner).to_owned())
                    .or_default()
                    .push(check.name.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::CheckDecl;

    fn agent(region: &str, connected: bool) -> AgentRecord {
        AgentRecord {
            region: region.into(),
            version: "1".into(),
            address: String::new(),
            connected,
            first_seen_ms: 0,
            last_seen_ms: 0,
            spool_id: 1,
            applied_seq: 0,
            applied_results: 0,
            controls: Default::default(),
        }
    }

    fn declared(n: usize) -> Declared {
        let checks = (0..n)
            .map(|i| CheckDecl {
                name: format!("check-{i}"),
                kind: vantage_common::spec::Kind::Tcp,
                target: "127.0.0.1".into(),
                interval: vantage_common::duration::Period::from_secs(60),
                timeout: None,
                regions: vec!["ru".into(), "eu".into()],
                labels: Default::default(),
                fail_after: 2,
                recover_after: 2,
                quorum: Default::default(),
                severity: crate::notification::Severity::Critical,
                on_change: Default::default(),
                routes: vec![],
                params: Default::default(),
            })
            .collect();
        let mut declared = Declared::default();
        declared.checks = checks;
        declared
    }

    #[test]
    fn each_check_runs_once_per_region_balanced_and_moves_minimally() {
        let d = declared(300);
        let mut agents: BTreeMap<String, AgentRecord> = BTreeMap::new();
        for (name, region) in [
            ("ru-1", "ru"),
            ("ru-2", "ru"),
            ("ru-3", "ru"),
            ("eu-1", "eu"),
        ] {
            agents.insert(name.into(), agent(region, true));
        }
        let a = assign(&d, &agents);
        assert_eq!(a["eu-1"].len(), 300);
        let ru: Vec<usize> = ["ru-1", "ru-2", "ru-3"]
            .iter()
            .map(|n| a[*n].len())
            .collect();
        assert_eq!(ru.iter().sum::<usize>(), 300);
        assert!(
            ru.iter().all(|n| (60..=140).contains(n)),
            "unbalanced: {ru:?}"
        );
        assert_eq!(assign(&d, &agents), a, "deterministic");

        // ru-2 leaves: only its checks move, to the other ru agents.
        agents.get_mut("ru-2").unwrap().connected = false;
        let b = assign(&d, &agents);
        assert!(!b.contains_key("ru-2"));
        for n in ["ru-1", "ru-3"] {
            assert!(
                a[n].iter().all(|c| b[n].contains(c)),
                "{n} lost checks it kept running"
            );
        }
        assert_eq!(b["ru-1"].len() + b["ru-3"].len(), 300);
        // It returns: the same checks come back to it.
        agents.get_mut("ru-2").unwrap().connected = true;
        assert_eq!(assign(&d, &agents), a);
        // No agent in a region: nobody runs its checks there.
        agents.get_mut("eu-1").unwrap().connected = false;
        assert!(!assign(&d, &agents).contains_key("eu-1"));
    }
}
