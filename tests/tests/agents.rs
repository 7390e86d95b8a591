//! Agents in three regions against a three-node cluster: assignments,
//! results from every region, acknowledgements, failover, kill -9.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use vantage_proto::v1::{ApplyRequest, GetResultsRequest, ListAgentsRequest};
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const REGIONS: [(&str, &str, &str); 3] = [
    ("ru-1", "ru", "127.0.0.11"),
    ("eu-1", "eu", "127.0.0.12"),
    ("us-1", "us", "127.0.0.13"),
];

fn checks_toml(port: u16) -> String {
    format!(
        r#"
[[check]]
name = "mx-smtp"
kind = "smtp"
target = "127.0.0.1"
interval = "5s"
regions = ["ru", "eu", "us"]
params = {{ port = {port}, tls = "none" }}

[[check]]
name = "mx-tcp"
kind = "tcp"
target = "127.0.0.1"
interval = "5s"
regions = ["ru", "eu", "us"]
params = {{ port = {port} }}
"#
    )
}

async fn apply(cluster: &Cluster, text: &str) {
    let request = ApplyRequest {
        source_name: "checks.toml".into(),
        toml: text.into(),
        dry_run: false,
    };
    cluster.operator(1).unwrap().apply(request).await.unwrap();
}

/// Regions with a latest result for `check`, as node `via` sees them.
async fn regions_reporting(cluster: &Cluster, via: u64, check: &str) -> Option<BTreeSet<String>> {
    let mut client = cluster.operator(via).ok()?;
    let reply = client
        .get_results(GetResultsRequest {
            check: check.into(),
            region: String::new(),
            recent: 0,
        })
        .await
        .ok()?;
    Some(
        reply
            .into_inner()
            .latest
            .into_iter()
            .filter(|r| r.status == "pass")
            .map(|r| r.region)
            .collect(),
    )
}

#[tokio::test]
async fn every_region_reports_every_check() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(&cluster, &checks_toml(server.addr.port())).await;
    for (name, region, source) in REGIONS {
        // Each agent knows only one coordinator: it finds the leader itself.
        cluster
            .spawn_agent(name, region, source, &[1 + (name.len() as u64 % 3)])
            .await
            .unwrap();
    }
    let all: BTreeSet<String> = ["ru", "eu", "us"].iter().map(|s| s.to_string()).collect();
    for check in ["mx-smtp", "mx-tcp"] {
        for via in [1, 2, 3] {
            wait_for(
                &format!("{check} from every region on node {via}"),
                || async { (regions_reporting(&cluster, via, check).await? == all).then_some(()) },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\nru-1 log:\n{}", cluster.agent_log("ru-1")));
        }
    }
    // The probes really came from each region's source address.
    let sources: BTreeSet<String> = server.peers().iter().map(|p| p.ip().to_string()).collect();
    for (_, _, source) in REGIONS {
        assert!(sources.contains(source), "{sources:?}");
    }
    let agents = cluster
        .operator(2)
        .unwrap()
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    assert_eq!(agents.len(), 3);
    for a in &agents {
        assert!(a.connected, "{a:?}");
        assert_eq!(a.assigned_checks, 2, "{a:?}");
        assert!(a.applied_seq >= 2, "{a:?}");
    }
}
