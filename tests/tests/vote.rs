//! The cross-region vote end to end: agents in three regions, a target
//! that fails from some regions only, verdicts read back from the cluster.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vantage_proto::v1::{ApplyRequest, StatusRequest};
use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

const REGIONS: [(&str, &str, &str); 3] = [
    ("ru-1", "ru", "127.0.0.11"),
    ("eu-1", "eu", "127.0.0.12"),
    ("us-1", "us", "127.0.0.13"),
];

/// (verdict, down regions) of `check` as node `via` sees it.
async fn verdict(cluster: &Cluster, via: u64, check: &str) -> Option<(String, Vec<String>)> {
    let reply = cluster
        .operator(via)
        .ok()?
        .status(StatusRequest {})
        .await
        .ok()?
        .into_inner();
    reply
        .checks
        .into_iter()
        .find(|c| c.name == check)
        .map(|c| (c.verdict, c.down))
}

async fn wait_verdict(cluster: &Cluster, check: &str, expected: &str, down: &[&str]) {
    let down: Vec<String> = down.iter().map(|s| s.to_string()).collect();
    for via in cluster.ids() {
        wait_for(
            &format!("{check} {expected} {down:?} on node {via}"),
            || async {
                let (v, d) = verdict(cluster, via, check).await?;
                (v == expected && d == down).then_some(())
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn regional_fault_then_outage_then_recovery() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let port = server.addr.port();
    let toml = format!(
        "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nfail_after = 2\nrecover_after = 2\nparams = {{ port = {port}, tls = \"none\" }}\n"
    );
    cluster
        .operator(1)
        .unwrap()
        .apply(ApplyRequest {
            source_name: "checks.toml".into(),
            toml,
            dry_run: false,
        })
        .await
        .unwrap();
    for (name, region, source) in REGIONS {
        cluster
            .spawn_agent(name, region, source, &[])
            .await
            .unwrap();
    }
    wait_verdict(&cluster, "mx", "ok", &[]).await;

    // Port 25 "blocked" from RU only: a regional fault, not an outage.
    server.block_from("127.0.0.11".parse().unwrap(), true);
    wait_verdict(&cluster, "mx", "regional", &["ru"]).await;

    // Down from a second region: a majority, an outage.
    server.block_from("127.0.0.12".parse().unwrap(), true);
    wait_verdict(&cluster, "mx", "outage", &["eu", "ru"]).await;

    // Back for everyone: recover_after passes later, OK again.
    server.block_from("127.0.0.11".parse().unwrap(), false);
    server.block_from("127.0.0.12".parse().unwrap(), false);
    wait_verdict(&cluster, "mx", "ok", &[]).await;

    let (code, out, err) = cluster.vantagectl(&[2], &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("mx") && out.contains("OK") && out.contains("ru=up"),
        "{out}"
    );
}
