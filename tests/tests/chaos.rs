//! A short run of the fault campaign (`vantage-bench chaos` runs it for
//! longer): leaders and followers killed with SIGKILL, nodes cut off
//! (network namespaces as root, SIGSTOP otherwise), an
//! agent's disk filled (root), outages opened and resolved — and no result
//! or notification lost, the nodes converged, memory bounded.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vantage_tests::chaos::{Config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_fault_campaign_loses_nothing() {
    let config = Config {
        duration: Duration::from_secs(75),
        seed: 20261130,
        checks: 10,
        flip_every: Duration::from_secs(15),
        // As root (CI), nodes are cut off by taking their namespace's link
        // down; elsewhere they are frozen.
        require_netns: std::env::var_os("VANTAGE_REQUIRE_NETNS").is_some(),
        ..Config::default()
    };
    let report = run(&config).await.unwrap();
    let text = report.render(&config);
    println!("{text}");
    assert!(report.violations.is_empty(), "{text}");
    assert!(report.leader_kills >= 1, "{text}");
    assert!(report.incidents >= 1 && report.notifications >= 2, "{text}");
    assert!(report.results_applied > 0, "{text}");
    assert!(report.converged, "{text}");
}
