//! Coordinator cluster: failover, restart, membership changes, snapshot
//! catch-up, all on real processes over mTLS on loopback.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use vantage_proto::v1::{ListRevokedRequest, RevokeRequest};
use vantage_tests::cluster::{Cluster, Timers, wait_for};

/// Revokes `name` through node `via`.
async fn write(cluster: &Cluster, via: u64, name: &str) {
    let mut client = cluster.operator(via).unwrap();
    client
        .revoke(RevokeRequest { name: name.into() })
        .await
        .unwrap_or_else(|e| panic!("write {name} via {via}: {e}"));
}

/// The revoked names node `id` has applied.
async fn revoked(cluster: &Cluster, id: u64) -> Option<BTreeSet<String>> {
    let mut client = cluster.operator(id).ok()?;
    Some(
        client
            .list_revoked(ListRevokedRequest {})
            .await
            .ok()?
            .into_inner()
            .names
            .into_iter()
            .collect(),
    )
}

async fn wait_revoked(cluster: &Cluster, id: u64, expected: &BTreeSet<String>) {
    wait_for(
        &format!("node {id} to hold {} names", expected.len()),
        || async { (revoked(cluster, id).await? == *expected).then_some(()) },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn leader_killed_new_leader_then_old_node_catches_up() {
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let mut expected = BTreeSet::new();
    // Writes through every node: followers forward to the leader.
    for i in 0..15 {
        let name = format!("before-{i}");
        write(&cluster, 1 + i % 3, &name).await;
        expected.insert(name);
    }
    let old_leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    cluster.kill(old_leader).await.unwrap();

    let survivors: Vec<u64> = cluster.ids();
    let new_leader = cluster.wait_for_leader(&survivors).await.unwrap();
    assert_ne!(new_leader, old_leader);
    for (i, via) in survivors.iter().cycle().take(15).enumerate() {
        let name = format!("after-{i}");
        write(&cluster, *via, &name).await;
        expected.insert(name);
    }
    for id in &survivors {
        wait_revoked(&cluster, *id, &expected).await;
    }

    // The killed node restarts from its data directory and catches up.
    cluster.spawn(old_leader).await.unwrap();
    wait_revoked(&cluster, old_leader, &expected).await;
    let status = cluster.status(old_leader).await.unwrap();
    assert_eq!(status.leader_id, Some(new_leader));
}
