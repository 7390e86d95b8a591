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
    let via = cluster.ids()[0];
    cluster.operator(via).unwrap().apply(request).await.unwrap();
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
    let port = server.addr.port();
    // A control check: the vantage must reach a reference host.
    let control = format!(
        "\n[[control]]\nname = \"reach-ref\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nparams = {{ port = {port} }}\n"
    );
    for (i, (name, region, source)) in REGIONS.into_iter().enumerate() {
        // Each agent knows only one coordinator (a different one each): it
        // finds the leader itself.
        let only = [1 + i as u64];
        cluster
            .spawn_agent_with(name, region, source, &only, &control)
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
    // Each agent's control check reports too.
    wait_for("control results from every agent", || async {
        let agents = agents(&cluster, 3).await?;
        let all = agents.len() == 3
            && agents
                .iter()
                .all(|a| a.controls.get("reach-ref").is_some_and(|c| c == "pass"));
        all.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nru-1 log:\n{}", cluster.agent_log("ru-1")));
    // The operator's view.
    let (code, out, err) = cluster.vantagectl(&[3], &["results", "mx-smtp"]).await;
    assert_eq!(code, 0, "{err}");
    for region in ["ru", "eu", "us"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(region) && l.contains("pass")),
            "{out}"
        );
    }
    let (code, out, err) = cluster.vantagectl(&[1], &["agents", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ru-1") && out.contains("connected"), "{out}");
    let agents = agents(&cluster, 2).await.unwrap();
    assert_eq!(agents.len(), 3);
    for a in &agents {
        assert!(a.connected, "{a:?}");
        assert_eq!(a.assigned_checks, 2, "{a:?}");
        assert!(a.applied_seq >= 2, "{a:?}");
    }
}

/// Many checks, so that an outage piles up hundreds of results.
fn many_checks(port: u16, n: usize, regions: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[check]]\nname = \"tcp-{i}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = {regions}\nparams = {{ port = {port} }}\n\n"
            )
        })
        .collect()
}

/// Stops all probing (an empty declaration) so the spools can drain.
async fn stop_probing(cluster: &Cluster) {
    apply(cluster, "").await;
}

/// Waits until `agent` delivered all it spooled, each result applied once:
/// its spool is acknowledged up to its last result, the cluster applied
/// that seq, and the count of applied results equals it. Returns the count.
async fn wait_drained(cluster: &Cluster, agent: &str, via: u64) -> u64 {
    let spool = cluster.agent_spool(agent);
    wait_for(&format!("{agent} drained through node {via}"), || async {
        let s = vantage_agent::spool::inspect(&spool).ok()?;
        let agents = agents(cluster, via).await?;
        let a = agents.into_iter().find(|a| a.name == agent)?;
        let drained = s.last_seq > 0 && s.acked == s.last_seq && a.applied_seq == s.last_seq;
        (drained && a.applied_results == a.applied_seq).then_some(a.applied_results)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{agent} log:\n{}", cluster.agent_log(agent)))
}

fn unacked(cluster: &Cluster, agent: &str) -> u64 {
    vantage_agent::spool::inspect(&cluster.agent_spool(agent))
        .map(|s| s.last_seq - s.acked)
        .unwrap_or(0)
}

#[tokio::test]
async fn coordinators_down_for_a_while_then_every_result_arrives_once() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(
        &cluster,
        &many_checks(server.addr.port(), 20, r#"["ru", "eu", "us"]"#),
    )
    .await;
    for (name, region, source) in REGIONS {
        cluster
            .spawn_agent(name, region, source, &[])
            .await
            .unwrap();
    }
    wait_for("results from every agent", || async {
        let agents = agents(&cluster, 1).await?;
        (agents.len() == 3 && agents.iter().all(|a| a.applied_seq > 0)).then_some(())
    })
    .await
    .unwrap();

    for id in [1, 2, 3] {
        cluster.kill(id).await.unwrap();
    }
    // The outage: every agent keeps probing into its spool, until
    // hundreds of results wait.
    wait_for("60 results piled up in each spool", || async {
        REGIONS
            .iter()
            .all(|(name, _, _)| unacked(&cluster, name) >= 60)
            .then_some(())
    })
    .await
    .unwrap();
    // Every result spooled so far must arrive, once.
    let spooled: Vec<u64> = REGIONS
        .iter()
        .map(|(name, _, _)| {
            vantage_agent::spool::inspect(&cluster.agent_spool(name)).map_or(0, |s| s.last_seq)
        })
        .collect();

    for id in [1, 2, 3] {
        cluster.spawn(id).await.unwrap();
    }
    cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    stop_probing(&cluster).await;
    for ((name, _, _), spooled) in REGIONS.iter().zip(spooled) {
        let delivered = wait_drained(&cluster, name, 2).await;
        assert!(delivered >= spooled, "{name}: {delivered} of {spooled}");
    }
}

#[tokio::test]
async fn agent_killed_with_unacked_results_delivers_them_once_after_restart() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(&cluster, &many_checks(server.addr.port(), 10, r#"["ru"]"#)).await;
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    wait_for("first results", || async {
        (regions_reporting(&cluster, 1, "tcp-0").await?.len() == 1).then_some(())
    })
    .await
    .unwrap();
    for id in [1, 2, 3] {
        cluster.kill(id).await.unwrap();
    }
    wait_for("unacknowledged results in the spool", || async {
        (unacked(&cluster, "ru-1") >= 20).then_some(())
    })
    .await
    .unwrap();
    cluster.kill_agent("ru-1").await.unwrap();
    let spooled = vantage_agent::spool::inspect(&cluster.agent_spool("ru-1")).unwrap();

    for id in [1, 2, 3] {
        cluster.spawn(id).await.unwrap();
    }
    cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    stop_probing(&cluster).await;
    let delivered = wait_drained(&cluster, "ru-1", 3).await;
    assert!(
        delivered >= spooled.last_seq,
        "{delivered} < {}",
        spooled.last_seq
    );
}

/// Agent ru-1 as node 1 sees it.
async fn ru_1(cluster: &Cluster) -> Option<vantage_proto::v1::AgentInfo> {
    let agents = agents(cluster, 1).await?;
    agents.into_iter().find(|a| a.name == "ru-1")
}

/// Copies the files of `from` (a spool: no subdirectories) into `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn agent_restored_from_an_older_disk_snapshot_loses_nothing() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(1, Timers::default()).await.unwrap();
    apply(&cluster, &many_checks(server.addr.port(), 10, r#"["ru"]"#)).await;
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    wait_for("first results applied", || async {
        (ru_1(&cluster).await?.applied_seq >= 5).then_some(())
    })
    .await
    .unwrap();
    // The VM's disk is snapshotted...
    cluster.kill_agent("ru-1").await.unwrap();
    let spool = cluster.agent_spool("ru-1");
    let snapshot_dir = tempfile::tempdir().unwrap();
    copy_files(&spool, snapshot_dir.path());
    let snapshot = vantage_agent::spool::inspect(snapshot_dir.path()).unwrap();
    // ...the agent runs on, well past it...
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    wait_for("results applied past the snapshot", || async {
        (ru_1(&cluster).await?.applied_seq >= snapshot.last_seq + 20).then_some(())
    })
    .await
    .unwrap();
    cluster.kill_agent("ru-1").await.unwrap();
    // ...and the VM is restored from the snapshot.
    std::fs::remove_dir_all(&spool).unwrap();
    copy_files(snapshot_dir.path(), &spool);
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    // Its new results are not taken for ones already applied: the spool
    // took a new identity, and everything it held or wrote since arrives.
    wait_for("results of a new spool identity applied", || async {
        let local = vantage_agent::spool::inspect(&spool).ok()?;
        let a = ru_1(&cluster).await?;
        (local.id != snapshot.id && a.spool_id == local.id && a.applied_seq > snapshot.last_seq + 5)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nru-1 log:\n{}", cluster.agent_log("ru-1")));
    stop_probing(&cluster).await;
    let (local, a) = wait_for("the restored spool drained", || async {
        let local = vantage_agent::spool::inspect(&spool).ok()?;
        let a = ru_1(&cluster).await?;
        (a.spool_id == local.id && local.acked == local.last_seq && a.applied_seq == local.last_seq)
            .then_some((local, a))
    })
    .await
    .unwrap();
    assert_eq!(
        a.applied_results,
        local.last_seq - snapshot.acked,
        "each result held since the snapshot's watermark applied once"
    );
    let log = cluster.agent_log("ru-1");
    assert!(log.contains("started a new spool identity"), "{log}");
}

#[tokio::test]
async fn an_assignment_larger_than_a_frame_arrives_in_parts() {
    let mut cluster = Cluster::start(1, Timers::default()).await.unwrap();
    // A port nothing listens on: the probes are cheap refusals.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // 400 checks whose specs are near the 16 KiB bound once JSON-escaped:
    // about 6 MB of assignment for one agent, over the 4 MiB frame limit.
    let quotes = "\"".repeat(7_800);
    let n = 400;
    let toml: String = (0..n)
        .map(|i| {
            format!(
                "[[check]]\nname = \"big-{i}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\ninterval = \"60s\"\nregions = [\"ru\"]\nparams = {{ port = {port}, expect = ['{quotes}'] }}\n\n"
            )
        })
        .collect();
    apply(&cluster, &toml).await;
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    wait_for("every check assigned and received", || async {
        cluster
            .agent_log("ru-1")
            .lines()
            .any(|l| l.contains("assignment in force") && l.ends_with(&format!("{n}")))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("ru-1")));
    // ...and the session holds: results of the big checks arrive.
    wait_for("results of the big checks", || async {
        (ru_1(&cluster).await?.applied_seq >= 10).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("ru-1")));
    let log = cluster.agent_log("ru-1");
    assert!(!log.contains("too large"), "{log}");
}

#[tokio::test]
async fn agent_on_a_full_disk_counts_drops_and_drains_when_coordinators_return() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(1, Timers::default()).await.unwrap();
    let spool = cluster.agent_spool("ru-1");
    std::fs::create_dir_all(&spool).unwrap();
    let Some(disk) = vantage_tests::TinyDisk::mount_or_skip(&spool, 512) else {
        return;
    };
    apply(&cluster, &many_checks(server.addr.port(), 10, r#"["ru"]"#)).await;
    let metrics = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    cluster
        .spawn_agent_with(
            "ru-1",
            "ru",
            "127.0.0.11",
            &[],
            &format!("metrics_listen = \"{metrics}\""),
        )
        .await
        .unwrap();
    wait_for("first results applied", || async {
        (ru_1(&cluster).await?.applied_seq >= 5).then_some(())
    })
    .await
    .unwrap();
    // The coordinators go away and the disk fills up.
    cluster.kill(1).await.unwrap();
    let filler = disk.fill();
    wait_for("results counted as dropped", || async {
        (vantage_tests::agent::metric(&metrics, "vantage_spool_dropped_total").await? >= 3.0)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("ru-1")));
    // They return, the disk still full: what was spooled is delivered
    // (acknowledging needs no space).
    let held = vantage_agent::spool::inspect(&spool).unwrap();
    assert!(held.last_seq > held.acked, "{held:?}");
    cluster.spawn(1).await.unwrap();
    wait_for("the spool drained on a full disk", || async {
        let local = vantage_agent::spool::inspect(&spool).ok()?;
        let a = ru_1(&cluster).await?;
        (local.acked >= held.last_seq && a.applied_seq >= held.last_seq).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("ru-1")));
    // Space returns: results are spooled and delivered again.
    std::fs::remove_file(filler).unwrap();
    wait_for("new results after the disk freed up", || async {
        let a = ru_1(&cluster).await?;
        (a.applied_seq >= held.last_seq + 5 && a.applied_results == a.applied_seq).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.agent_log("ru-1")));
}

#[tokio::test]
async fn leader_killed_while_agents_stream() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(
        &cluster,
        &many_checks(server.addr.port(), 10, r#"["ru", "eu", "us"]"#),
    )
    .await;
    for (name, region, source) in REGIONS {
        cluster
            .spawn_agent(name, region, source, &[])
            .await
            .unwrap();
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    wait_for("results flowing", || async {
        let agents = agents(&cluster, leader).await?;
        (agents.len() == 3 && agents.iter().all(|a| a.applied_seq >= 10)).then_some(())
    })
    .await
    .unwrap();
    cluster.kill(leader).await.unwrap();
    let survivors = cluster.ids();
    let new_leader = cluster.wait_for_leader(&survivors).await.unwrap();
    // Results keep arriving through the new leader.
    let before: u64 = {
        let agents = agents(&cluster, new_leader).await.unwrap();
        agents.iter().map(|a| a.applied_seq).sum()
    };
    wait_for("results through the new leader", || async {
        let agents = agents(&cluster, new_leader).await?;
        (agents.iter().map(|a| a.applied_seq).sum::<u64>() > before + 30).then_some(())
    })
    .await
    .unwrap();
    stop_probing(&cluster).await;
    for (name, _, _) in REGIONS {
        wait_drained(&cluster, name, new_leader).await;
    }
}

/// Agents as node `via` sees them.
async fn agents(cluster: &Cluster, via: u64) -> Option<Vec<vantage_proto::v1::AgentInfo>> {
    let mut client = cluster.operator(via).ok()?;
    Some(
        client
            .list_agents(ListAgentsRequest {})
            .await
            .ok()?
            .into_inner()
            .agents,
    )
}

/// Checks assigned to connected agent `name`.
async fn assigned(cluster: &Cluster, name: &str) -> Option<u32> {
    let agents = agents(cluster, 1).await?;
    agents
        .into_iter()
        .find(|a| a.name == name && a.connected)
        .map(|a| a.assigned_checks)
}

#[tokio::test]
async fn checks_move_when_an_agent_disappears_and_come_back() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(&cluster, &many_checks(server.addr.port(), 12, r#"["ru"]"#)).await;
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    cluster
        .spawn_agent("ru-2", "ru", "127.0.0.21", &[])
        .await
        .unwrap();
    wait_for("both ru agents sharing the checks", || async {
        let (a, b) = (
            assigned(&cluster, "ru-1").await?,
            assigned(&cluster, "ru-2").await?,
        );
        (a > 0 && b > 0 && a + b == 12).then_some(())
    })
    .await
    .unwrap();

    cluster.kill_agent("ru-2").await.unwrap();
    let t0 = std::time::Instant::now();
    wait_for("ru-1 running all checks", || async {
        (assigned(&cluster, "ru-1").await? == 12).then_some(())
    })
    .await
    .unwrap();
    eprintln!(
        "checks moved {} ms after ru-2 died (heartbeat 300 ms)",
        t0.elapsed().as_millis()
    );
    // And ru-1 really probes them: every check gets a fresh result from ru-1.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..12 {
        let check = format!("tcp-{i}");
        wait_for(&format!("{check} from ru-1"), || async {
            let mut client = cluster.operator(1).ok()?;
            let r = client
                .get_results(GetResultsRequest {
                    check: check.clone(),
                    region: "ru".into(),
                    recent: 0,
                })
                .await
                .ok()?;
            r.into_inner()
                .latest
                .into_iter()
                .find(|r| r.agent == "ru-1" && r.started_at_ms >= since)
                .map(|_| ())
        })
        .await
        .unwrap();
    }

    // ru-2 returns: the checks spread again.
    cluster
        .spawn_agent("ru-2", "ru", "127.0.0.21", &[])
        .await
        .unwrap();
    wait_for("ru-2 back with its checks", || async {
        let (a, b) = (
            assigned(&cluster, "ru-1").await?,
            assigned(&cluster, "ru-2").await?,
        );
        (a > 0 && b > 0 && a + b == 12).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_silent_agent_loses_its_checks_after_three_missed_heartbeats() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(&cluster, &many_checks(server.addr.port(), 12, r#"["eu"]"#)).await;
    cluster
        .spawn_agent("eu-1", "eu", "127.0.0.12", &[])
        .await
        .unwrap();
    cluster
        .spawn_agent("eu-2", "eu", "127.0.0.22", &[])
        .await
        .unwrap();
    wait_for("both eu agents sharing the checks", || async {
        let (a, b) = (
            assigned(&cluster, "eu-1").await?,
            assigned(&cluster, "eu-2").await?,
        );
        (a > 0 && b > 0 && a + b == 12).then_some(())
    })
    .await
    .unwrap();

    // Its connection stays up, but nothing comes through it any more.
    cluster.freeze_agent("eu-2", true).unwrap();
    let t0 = std::time::Instant::now();
    wait_for("eu-1 running all checks", || async {
        (assigned(&cluster, "eu-1").await? == 12).then_some(())
    })
    .await
    .unwrap();
    eprintln!(
        "checks moved {} ms after eu-2 went silent (heartbeat 300 ms)",
        t0.elapsed().as_millis()
    );
    assert!(
        cluster.log(1).contains("missed 3 heartbeats")
            || cluster.log(2).contains("missed 3 heartbeats")
            || cluster.log(3).contains("missed 3 heartbeats")
    );

    // Thawed, it reconnects and takes its share back.
    cluster.freeze_agent("eu-2", false).unwrap();
    wait_for("eu-2 back with its checks", || async {
        let (a, b) = (
            assigned(&cluster, "eu-1").await?,
            assigned(&cluster, "eu-2").await?,
        );
        (a > 0 && b > 0 && a + b == 12).then_some(())
    })
    .await
    .unwrap();
}

/// A hand-driven agent session with `identity`'s certificate.
struct RawSession {
    tx: tokio::sync::mpsc::Sender<vantage_proto::v1::AgentMessage>,
    inbound: tonic::Streaming<vantage_proto::v1::CoordinatorMessage>,
}

async fn raw_session(cluster: &Cluster, via: u64, region: &str, name: &str) -> RawSession {
    use vantage_common::identity::Identity;
    use vantage_proto::v1::agent_message::Msg;
    use vantage_proto::v1::agent_service_client::AgentServiceClient;
    let files = cluster
        .issue(&Identity::Agent {
            region: region.into(),
            name: name.into(),
        })
        .unwrap();
    let tls = vantage_common::tls::ReloadingTls::load(files).unwrap();
    let channel =
        vantage_common::transport::channel(&cluster.nodes[&via].addr.to_string(), tls).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let hello = vantage_proto::v1::Hello {
        version: "test".into(),
        capabilities: vec![],
        spool_id: 7,
    };
    tx.send(vantage_proto::v1::AgentMessage {
        msg: Some(Msg::Hello(hello)),
    })
    .await
    .unwrap();
    let inbound = AgentServiceClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    RawSession { tx, inbound }
}

fn result_record(seq: u64, check: &str) -> vantage_proto::v1::ResultRecord {
    let outcome = vantage_common::Outcome::new(
        "tcp",
        "127.0.0.1:1",
        vantage_common::Status::Pass,
        None,
        "ok",
    );
    vantage_proto::v1::ResultRecord {
        seq,
        check: check.into(),
        started_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        outcome: Some((&outcome).into()),
        trace_parent: String::new(),
    }
}

impl RawSession {
    async fn send_batch(&self, results: Vec<vantage_proto::v1::ResultRecord>) {
        use vantage_proto::v1::agent_message::Msg;
        let batch = vantage_proto::v1::ResultBatch { results };
        self.tx
            .send(vantage_proto::v1::AgentMessage {
                msg: Some(Msg::Batch(batch)),
            })
            .await
            .unwrap();
    }

    /// The next ack, skipping other messages; the status if the session fails.
    async fn next_ack(&mut self) -> Result<u64, tonic::Status> {
        use vantage_proto::v1::coordinator_message::Msg;
        loop {
            match self.inbound.message().await? {
                Some(m) => {
                    if let Some(Msg::Ack(a)) = m.msg {
                        return Ok(a.seq);
                    }
                }
                None => return Err(tonic::Status::cancelled("stream ended")),
            }
        }
    }
}

#[tokio::test]
async fn region_and_name_come_from_the_certificate_and_bad_batches_are_refused() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    // "eu-only" runs in eu alone; a ru agent may still send results for it.
    let text = format!(
        "{}{}",
        checks_toml(server.addr.port()),
        many_checks(server.addr.port(), 1, r#"["eu"]"#).replace("tcp-0", "eu-only")
    );
    apply(&cluster, &text).await;
    cluster
        .spawn_agent("eu-1", "eu", "127.0.0.12", &[])
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();

    let mut msk = raw_session(&cluster, leader, "ru", "msk-1").await;
    msk.send_batch(vec![
        result_record(1, "mx-tcp"),
        result_record(2, "eu-only"),
    ])
    .await;
    assert_eq!(msk.next_ack().await.unwrap(), 2);
    let latest = |check: &'static str| {
        let cluster = &cluster;
        async move {
            cluster
                .operator(leader)
                .unwrap()
                .get_results(GetResultsRequest {
                    check: check.into(),
                    region: "ru".into(),
                    recent: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .latest
        }
    };
    let mx = latest("mx-tcp").await;
    assert_eq!(mx.len(), 1);
    assert_eq!(
        (mx[0].region.as_str(), mx[0].agent.as_str()),
        ("ru", "msk-1"),
        "stored under the certificate's identity"
    );
    // A result for a check not assigned to its region is acknowledged, not kept.
    assert!(latest("eu-only").await.is_empty());

    // Sequence numbers must increase within a batch.
    msk.send_batch(vec![result_record(5, "mx-tcp"), result_record(4, "mx-tcp")])
        .await;
    let err = msk.next_ack().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("does not increase"), "{err}");

    // Too many results in one batch.
    let mut big = raw_session(&cluster, leader, "ru", "msk-2").await;
    big.send_batch((1..=1001).map(|i| result_record(i, "mx-tcp")).collect())
        .await;
    let err = big.next_ack().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("exceeds 1000"), "{err}");

    // An outcome with too many timed steps (they go into the log).
    let mut steps = raw_session(&cluster, leader, "ru", "msk-4").await;
    let mut long = result_record(1, "mx-tcp");
    long.outcome.as_mut().unwrap().phases = (0..33)
        .map(|i| vantage_proto::v1::Phase {
            name: format!("step-{i}"),
            duration_us: 1,
        })
        .collect();
    steps.send_batch(vec![long]).await;
    let err = steps.next_ack().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("phases"), "{err}");

    // An outcome with an unknown status.
    let mut odd = raw_session(&cluster, leader, "ru", "msk-3").await;
    let mut bad = result_record(1, "mx-tcp");
    bad.outcome.as_mut().unwrap().status = 42;
    odd.send_batch(vec![bad]).await;
    let err = odd.next_ack().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // The real agent was not disturbed.
    let before = applied_seq(&cluster, leader, "eu-1").await.unwrap_or(0);
    wait_for("eu-1 still delivering", || async {
        (applied_seq(&cluster, leader, "eu-1").await? > before + 2).then_some(())
    })
    .await
    .unwrap();
}

async fn applied_seq(cluster: &Cluster, via: u64, name: &str) -> Option<u64> {
    let agents = agents(cluster, via).await?;
    agents
        .into_iter()
        .find(|a| a.name == name)
        .map(|a| a.applied_seq)
}

#[tokio::test]
async fn revocation_ends_live_sessions_and_refuses_their_batches() {
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    apply(&cluster, &checks_toml(server.addr.port())).await;
    cluster
        .spawn_agent("ru-1", "ru", "127.0.0.11", &[])
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await.unwrap();
    let mut thief = raw_session(&cluster, leader, "ru", "msk-9").await;
    thief.send_batch(vec![result_record(1, "mx-tcp")]).await;
    assert_eq!(thief.next_ack().await.unwrap(), 1);
    wait_for("ru-1 connected", || async {
        agents(&cluster, leader)
            .await?
            .iter()
            .any(|a| a.name == "ru-1" && a.connected)
            .then_some(())
    })
    .await
    .unwrap();

    // Revoked through another node: both sessions end, cluster-wide.
    let other = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    for name in ["agent/ru/msk-9", "agent/ru/ru-1"] {
        cluster.revoke(other, name).await.unwrap();
    }
    let before = applied_seq(&cluster, leader, "msk-9").await;
    // The revocation is applied on the leader once the call returns.
    thief.send_batch(vec![result_record(2, "mx-tcp")]).await;
    let refused = thief.next_ack().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("revoked"), "{refused}");
    assert_eq!(applied_seq(&cluster, leader, "msk-9").await, before);
    // The real agent is cut off at its next heartbeat and cannot come back.
    wait_for("ru-1 disconnected", || async {
        agents(&cluster, leader)
            .await?
            .iter()
            .any(|a| a.name == "ru-1" && !a.connected)
            .then_some(())
    })
    .await
    .unwrap();
}

/// Fast confirmation: a check that fails is run again out of schedule
/// (the failing region retries, the others give a second opinion), long
/// before its next slot.
#[tokio::test]
async fn a_failing_check_runs_again_out_of_schedule_within_seconds() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cluster = Cluster::start(1, Timers::default()).await.unwrap();
    apply(
        &cluster,
        &format!(
            "[[check]]\nname = \"mx-down\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\ninterval = \"10m\"\nregions = [\"ru\", \"eu\"]\nparams = {{ port = {closed} }}\n"
        ),
    )
    .await;
    for (name, region, source) in &REGIONS[..2] {
        cluster
            .spawn_agent_with(name, region, source, &[], "")
            .await
            .unwrap();
    }
    // The first run of each region comes within ten seconds of the
    // assignment; a second one, 10 minutes later on schedule.
    wait_for("two results from each region", || async {
        let mut client = cluster.operator(1).ok()?;
        let reply = client
            .get_results(GetResultsRequest {
                check: "mx-down".into(),
                region: String::new(),
                recent: 30,
            })
            .await
            .ok()?
            .into_inner();
        let twice = ["ru", "eu"].iter().all(|region| {
            reply
                .recent
                .iter()
                .filter(|r| r.region == *region && r.status == "fail")
                .count()
                >= 2
        });
        twice.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nru-1 log:\n{}", cluster.agent_log("ru-1")));
}
