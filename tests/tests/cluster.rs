//! Coordinator cluster: failover, restart, membership changes, snapshot
//! catch-up, all on real processes over mTLS on loopback.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vantage_proto::v1::{
    AddMemberRequest, ApplyRequest, ClusterMember, ListRevokedRequest, RemoveMemberRequest,
    RevokeRequest, StatusRequest,
};
use vantage_tests::cluster::{Cluster, DEADLINE, Timers, wait_for};

/// Revokes `name` through node `via`.
async fn write(cluster: &Cluster, via: u64, name: &str) {
    cluster
        .revoke(via, name)
        .await
        .unwrap_or_else(|e| panic!("write {name} via {via}: {e:#}"));
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
        let name = format!("agent/t/before-{i}");
        write(&cluster, 1 + i % 3, &name).await;
        expected.insert(name);
    }
    let old_leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    cluster.kill(old_leader).await.unwrap();

    let survivors: Vec<u64> = cluster.ids();
    let new_leader = cluster.wait_for_leader(&survivors).await.unwrap();
    assert_ne!(new_leader, old_leader);
    for (i, via) in survivors.iter().cycle().take(15).enumerate() {
        let name = format!("agent/t/after-{i}");
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

#[tokio::test]
async fn membership_three_to_five_to_three_while_writing() {
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let writer_names = Arc::new(Mutex::new(BTreeSet::new()));

    // A writer keeps writing through node 1 during every change.
    let client = cluster.operator(1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let names = writer_names.clone();
        let stop = stop.clone();
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("agent/t/during-{i}");
                client
                    .revoke(RevokeRequest { name: name.clone() })
                    .await
                    .expect("write during membership change");
                names.lock().unwrap().insert(name);
                i += 1;
            }
        })
    };

    for id in [4, 5] {
        let addr = cluster.spawn(id).await.unwrap();
        let reply = cluster
            .operator(2)
            .unwrap()
            .add_member(AddMemberRequest {
                member: Some(ClusterMember {
                    id,
                    addr: addr.to_string(),
                }),
                learner_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reply.voters.contains(&id), "{reply:?}");
    }
    let status = cluster.status(3).await.unwrap();
    assert_eq!(
        status.nodes.iter().filter(|n| n.voter).count(),
        5,
        "{status:?}"
    );

    for id in [4, 5] {
        let reply = cluster
            .operator(3)
            .unwrap()
            .remove_member(RemoveMemberRequest { id })
            .await
            .unwrap()
            .into_inner();
        assert!(
            !reply.voters.contains(&id) && !reply.learners.contains(&id),
            "{reply:?}"
        );
        cluster.kill(id).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let expected = writer_names.lock().unwrap().clone();
    assert!(
        expected.len() >= 5,
        "the writer made too little progress: {}",
        expected.len()
    );
    for id in [1, 2, 3] {
        wait_revoked(&cluster, id, &expected).await;
    }
    let status = cluster.status(1).await.unwrap();
    let voters: BTreeSet<u64> = status
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.id)
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
}

#[tokio::test]
async fn node_down_during_compaction_catches_up_by_snapshot() {
    let timers = Timers {
        snapshot_every: 20,
        ..Timers::default()
    };
    let mut cluster = Cluster::start(3, timers).await.unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill(down).await.unwrap();

    let mut expected = BTreeSet::new();
    for i in 0..120 {
        let name = format!("agent/t/compacted-{i}");
        write(&cluster, leader, &name).await;
        expected.insert(name);
    }
    // The log the stopped node would need is gone from the leader.
    let status = wait_for("a snapshot past the stopped node's log", || async {
        let s = cluster.status(leader).await?;
        (s.snapshot_index? > 60).then_some(s)
    })
    .await
    .unwrap();
    assert!(status.snapshot_index.unwrap() > 60, "{status:?}");

    cluster.spawn(down).await.unwrap();
    wait_revoked(&cluster, down, &expected).await;
    let caught_up = cluster.status(down).await.unwrap();
    assert!(
        caught_up.snapshot_index.is_some(),
        "node {down} should hold the installed snapshot: {caught_up:?}"
    );
}

#[tokio::test]
async fn a_wiped_node_catches_up_by_snapshot() {
    // A node whose disk was replaced comes back empty with the same id while
    // the leader's log before its snapshot is gone: it gets the snapshot,
    // then the log after it.
    let timers = Timers {
        snapshot_every: 20,
        ..Timers::default()
    };
    let mut cluster = Cluster::start(3, timers).await.unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    let wiped = if leader == 3 { 2 } else { 3 };
    let mut expected = BTreeSet::new();
    for i in 0..60 {
        let name = format!("agent/t/before-{i}");
        write(&cluster, leader, &name).await;
        expected.insert(name);
    }
    wait_revoked(&cluster, wiped, &expected).await;
    wait_for("a snapshot on the leader", || async {
        (cluster.status(leader).await?.snapshot_index? > 20).then_some(())
    })
    .await
    .unwrap();
    cluster.kill(wiped).await.unwrap();
    std::fs::remove_dir_all(cluster.node_data(wiped)).unwrap();
    for i in 0..5 {
        let name = format!("agent/t/while-down-{i}");
        write(&cluster, leader, &name).await;
        expected.insert(name);
    }
    cluster.spawn(wiped).await.unwrap();
    wait_revoked(&cluster, wiped, &expected).await;
    let name = "agent/t/after".to_owned();
    // Before openraft's `loosen-follower-log-revert`, the leader's Raft
    // core panicked here ("follower log reversion is not allowed").
    write(&cluster, leader, &name).await;
    expected.insert(name);
    wait_revoked(&cluster, wiped, &expected).await;
    for id in [1, 2, 3] {
        let log = cluster.log(id);
        assert!(!log.contains("panicked"), "node {id} panicked: {log}");
    }
}

/// A declaration of `n` checks named `PREFIX-i`, each with a long label:
/// about 1.3 KB of encoding per check.
fn fat_declaration(prefix: &str, n: usize) -> String {
    let note = "x".repeat(1200);
    (0..n)
        .map(|i| {
            format!(
                "[[check]]\nname = \"{prefix}-{i}\"\nkind = \"dns\"\ntarget = \"{prefix}{i}.test\"\nregions = [\"ru\", \"eu\"]\n\
                 labels = {{ note = \"{note}\" }}\n"
            )
        })
        .collect()
}

/// How many checks named `PREFIX-*` node `id` has applied.
async fn declared(cluster: &Cluster, id: u64, prefix: &str) -> Option<u32> {
    let reply = cluster
        .operator(id)
        .ok()?
        .status(StatusRequest {
            check: format!("{prefix}-*"),
            limit: 1,
            ..StatusRequest::default()
        })
        .await
        .ok()?;
    Some(reply.into_inner().matched)
}

#[tokio::test]
async fn declarations_larger_than_an_append_request_reach_every_node_whole() {
    // openraft gives a follower one heartbeat (100 ms here) to take an
    // AppendEntries request, and a request holds at least one whole entry.
    // A declaration of several MiB as one entry never reached a follower;
    // it now goes in parts. Two are applied at once through two nodes:
    // every node ends with the whole of one of them, never a mix.
    let cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    let n = 2000;
    let (a, b) = (fat_declaration("a", n), fat_declaration("b", n));
    assert!(a.len() > 2 << 20, "{} bytes", a.len());
    let apply = |via: u64, toml: String| {
        let client = cluster.operator(via);
        async move {
            client
                .unwrap()
                .apply(ApplyRequest {
                    source_name: "checks.toml".into(),
                    toml,
                    dry_run: false,
                })
                .await
        }
    };
    // Before, neither write ever committed: no follower took the entry.
    let both = async { tokio::join!(apply(1, a), apply(2, b)) };
    let (applied_a, applied_b) = tokio::time::timeout(DEADLINE, both)
        .await
        .expect("both applies answer");
    for r in [&applied_a, &applied_b] {
        if let Err(status) = r {
            assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
            assert!(status.message().contains("apply it again"), "{status:?}");
        }
    }
    assert!(
        applied_a.is_ok() || applied_b.is_ok(),
        "neither applied: {applied_a:?} {applied_b:?}"
    );
    // Both writes returned: the leader has applied what it will hold.
    let winner = wait_for("the declaration on the leader", || async {
        let on = |prefix| declared(&cluster, leader, prefix);
        match (on("a").await?, on("b").await?) {
            (x, 0) if x == n as u32 => Some("a"),
            (0, x) if x == n as u32 => Some("b"),
            _ => None,
        }
    })
    .await
    .unwrap();
    let won = if winner == "a" {
        &applied_a
    } else {
        &applied_b
    };
    assert!(won.is_ok(), "{winner} is in place but its apply failed");
    let loser = if winner == "a" { "b" } else { "a" };
    for id in [1, 2, 3] {
        wait_for(&format!("node {id} to hold all of {winner}"), || async {
            let whole = declared(&cluster, id, winner).await? == n as u32;
            let none = declared(&cluster, id, loser).await? == 0;
            (whole && none).then_some(())
        })
        .await
        .unwrap();
    }
}
