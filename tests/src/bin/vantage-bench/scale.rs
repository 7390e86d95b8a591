//! `vantage-bench scale`: a 3-node cluster on loopback holding N checks,
//! each run every interval from every region by simulated agents (real
//! mTLS sessions, real batches, real assignments), a share of them failing
//! so that the vote, incidents and vantage health have work to do. Prints
//! the steady state: CPU and RSS per node, results applied per second,
//! Raft log and snapshot sizes, snapshot build and install times, a wiped
//! node's catch-up, status latency (`vantagectl status`, `/api/status`,
//! the status page `/`)
//! and the leader's `/metrics` scrape (every 15 s, as Prometheus would).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use vantage_common::identity::Identity;
use vantage_common::tls::ReloadingTls;
use vantage_common::{FailureClass, Outcome, Status};
use vantage_proto::v1::agent_message::Msg as Out;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::coordinator_message::Msg as In;
use vantage_proto::v1::{AgentMessage, ApplyRequest, Heartbeat, Hello, ResultBatch, ResultRecord};
use vantage_tests::cluster::{Cluster, Timers, wait_for};

use super::proc_usage;

/// What `vantage-bench scale` runs.
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    /// Checks declared.
    pub(crate) checks: usize,
    /// Regions each check runs from (one simulated agent per region).
    pub(crate) regions: usize,
    /// Check interval.
    pub(crate) interval: Duration,
    /// Share of checks failing at any time (re-drawn every two intervals;
    /// two thirds fail from every region, one third from one region only).
    pub(crate) failing: f64,
    /// Measurement window.
    pub(crate) minutes: f64,
    /// Raft entries between snapshots (the coordinator's `snapshot_every`).
    pub(crate) snapshot_every: u64,
    /// Scrape the leader's per-check series every 15 s.
    pub(crate) scrape: bool,
}

const REGION_NAMES: [&str; 6] = ["ru", "eu", "us", "as", "sa", "af"];

/// A stable 64-bit hash (FNV-1a) for spreading checks over time.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Counters shared by the simulated agents.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    sessions: AtomicU64,
    assigned: AtomicU64,
}

/// How check `name` fares from `region` in epoch `epoch`.
fn fares(scale: &Scale, name: &str, region_index: usize, epoch: u64) -> Status {
    let h = hash(&[name.as_bytes(), &epoch.to_le_bytes()]);
    let draw = (h % 1_000_000) as f64 / 1_000_000.0;
    if draw >= scale.failing {
        return Status::Pass;
    }
    // Two thirds fail everywhere (outages), one third from one region only.
    let lonely = (h >> 32).is_multiple_of(3);
    if !lonely || region_index == ((h >> 40) as usize % scale.regions) {
        Status::Fail
    } else {
        Status::Pass
    }
}

fn outcome(name: &str, status: Status) -> vantage_proto::v1::Outcome {
    let target = format!("{name}.scale.test");
    let mut o = match status {
        Status::Pass => Outcome::new(
            "dns",
            &target,
            Status::Pass,
            None,
            format!("{target} A 192.0.2.10"),
        ),
        _ => Outcome::new(
            "dns",
            &target,
            Status::Fail,
            Some(FailureClass::Timeout),
            "no answer within 5s",
        ),
    };
    o.duration_ms = 3;
    if status == Status::Pass {
        o.details
            .insert("records".into(), serde_json::json!(["192.0.2.10"]));
    }
    vantage_proto::v1::Outcome::from(&o)
}

/// One simulated agent: a session with the leader (following redirects),
/// its assignment, and every assigned check's result once an interval at a
/// fixed phase, in batches of at most 500.
async fn sim_agent(
    cluster_addrs: Vec<String>,
    tls: Arc<ReloadingTls>,
    scale: Arc<Scale>,
    region_index: usize,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut addr_at = 0usize;
    let mut seq = 0u64;
    let spool_id = 7000 + region_index as u64;
    while !stop.load(Ordering::Relaxed) {
        let addr = cluster_addrs[addr_at % cluster_addrs.len()].clone();
        match session(
            &addr,
            &tls,
            &scale,
            region_index,
            spool_id,
            &mut seq,
            &counters,
            &stop,
        )
        .await
        {
            Ok(Some(redirect)) => {
                if let Some(i) = cluster_addrs.iter().position(|a| *a == redirect) {
                    addr_at = i;
                }
            }
            Ok(None) => {}
            Err(e) => {
                if !stop.load(Ordering::Relaxed) {
                    eprintln!("  (agent {region_index}: session ended: {e:#})");
                }
                addr_at += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One session; `Some(addr)` when redirected to the leader.
#[allow(clippy::too_many_arguments)]
async fn session(
    addr: &str,
    tls: &Arc<ReloadingTls>,
    scale: &Scale,
    region_index: usize,
    spool_id: u64,
    seq: &mut u64,
    counters: &Counters,
    stop: &AtomicBool,
) -> Result<Option<String>> {
    let channel = vantage_common::transport::channel(addr, tls.clone())?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tx.send(AgentMessage {
        msg: Some(Out::Hello(Hello {
            version: "scale-bench".into(),
            capabilities: vec![],
            spool_id,
        })),
    })
    .await?;
    let mut inbound = AgentServiceClient::new(channel)
        .max_decoding_message_size(8 << 20)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    counters.sessions.fetch_add(1, Ordering::Relaxed);
    let interval_s = scale.interval.as_secs().max(1);
    // Assigned checks by the second of the interval they run in.
    let mut slots: Vec<Vec<String>> = vec![Vec::new(); interval_s as usize];
    let mut parts: Vec<String> = Vec::new();
    // Batches in flight: (last seq, results).
    let mut in_flight: VecDeque<(u64, u64)> = VecDeque::new();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(300));
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut welcomed = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        tokio::select! {
            m = inbound.message() => {
                let Some(m) = m? else { return Err(anyhow!("session closed")) };
                match m.msg {
                    Some(In::Welcome(w)) => {
                        *seq = (*seq).max(w.acked_seq);
                        welcomed = true;
                    }
                    Some(In::Redirect(r)) => return Ok(Some(r.leader_addr)),
                    Some(In::Assignment(a)) => {
                        if a.part <= 1 {
                            parts.clear();
                        }
                        parts.extend(a.checks.into_iter().map(|c| c.name));
                        if a.part >= a.parts {
                            let mut fresh: Vec<Vec<String>> = vec![Vec::new(); interval_s as usize];
                            for name in parts.drain(..) {
                                let slot = hash(&[name.as_bytes()]) % interval_s;
                                fresh[slot as usize].push(name);
                            }
                            let total: usize = fresh.iter().map(Vec::len).sum();
                            counters.assigned.fetch_add(total as u64, Ordering::Relaxed);
                            slots = fresh;
                        }
                    }
                    Some(In::Ack(ack)) => {
                        while let Some((last, n)) = in_flight.front().copied() {
                            if last > ack.seq {
                                break;
                            }
                            in_flight.pop_front();
                            counters.acked.fetch_add(n, Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
            }
            _ = heartbeat.tick(), if welcomed => {
                tx.send(AgentMessage { msg: Some(Out::Heartbeat(Heartbeat { sent_at_ms: vantage_common::clock::now_ms(), pending: 0 })) }).await?;
            }
            _ = second.tick(), if welcomed => {
                let now_ms = vantage_common::clock::now_ms();
                let now_s = (now_ms / 1000) as u64;
                let epoch = now_s / (2 * interval_s);
                let due = &slots[(now_s % interval_s) as usize];
                for chunk in due.chunks(500) {
                    let records: Vec<ResultRecord> = chunk
                        .iter()
                        .map(|name| {
                            *seq += 1;
                            let status = fares(scale, name, region_index, epoch);
                            if status != Status::Pass {
                                counters.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            ResultRecord {
                                seq: *seq,
                                check: name.clone(),
                                started_at_ms: now_ms,
                                outcome: Some(outcome(name, status)),
                                trace_parent: String::new(),
                            }
                        })
                        .collect();
                    let n = records.len() as u64;
                    in_flight.push_back((*seq, n));
                    counters.sent.fetch_add(n, Ordering::Relaxed);
                    tx.send(AgentMessage { msg: Some(Out::Batch(ResultBatch { results: records })) }).await?;
                }
            }
        }
    }
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// p50 and max of latencies, ms.
fn spread(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_unstable();
    format!(
        "p50 {:.0} ms, max {:.0} ms ({} calls)",
        v[v.len() / 2].as_secs_f64() * 1000.0,
        v[v.len() - 1].as_secs_f64() * 1000.0,
        v.len()
    )
}

/// Node `id`'s `/metrics` text, with the leader's per-check series when
/// `per_check`.
async fn node_metrics(
    cluster: &Cluster,
    http: &reqwest::Client,
    id: u64,
    per_check: bool,
) -> Option<String> {
    let addr = cluster.nodes.get(&id)?.http?;
    let query = if per_check { "" } else { "?checks=false" };
    let r = http
        .get(format!("http://{addr}/metrics{query}"))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// The value of the unlabelled sample `name` in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// Runs the benchmark and prints its figures.
pub(crate) fn scale(s: Scale) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(Arc::new(s)))
}

async fn run(s: Arc<Scale>) -> Result<()> {
    let regions: Vec<&str> = REGION_NAMES
        .iter()
        .take(s.regions.clamp(1, 6))
        .copied()
        .collect();
    let mut cluster = Cluster::start(3, Timers::production(s.snapshot_every)).await?;
    let leader = cluster.wait_for_leader(&[1, 2, 3]).await?;
    let region_list = regions
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let interval_s = s.interval.as_secs().max(1);
    let toml: String = (0..s.checks)
        .map(|i| {
            format!(
                "[[check]]\nname = \"c{i}\"\nkind = \"dns\"\ntarget = \"c{i}.scale.test\"\ninterval = \"{interval_s}s\"\nregions = [{region_list}]\n"
            )
        })
        .collect();
    let t0 = Instant::now();
    cluster
        .operator(leader)?
        .max_encoding_message_size(256 << 20)
        .apply(ApplyRequest {
            source_name: "scale.toml".into(),
            toml: toml.clone(),
            dry_run: false,
        })
        .await
        .context("applying the checks")?;
    let apply_time = t0.elapsed();
    eprintln!(
        "applied {} checks ({:.1} MiB of TOML) in {:.1} s",
        s.checks,
        mib(toml.len() as u64),
        apply_time.as_secs_f64()
    );
    drop(toml);

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.to_string()).collect();
    let mut agents = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        let tls = ReloadingTls::load(cluster.issue(&Identity::Agent {
            region: (*region).into(),
            name: format!("{region}-sim"),
        })?)?;
        let mut order = addrs.clone();
        order.rotate_left((leader as usize - 1) % addrs.len());
        agents.push(tokio::spawn(sim_agent(
            order,
            tls,
            s.clone(),
            i,
            counters.clone(),
            stop.clone(),
        )));
    }
    // Warm-up: every agent assigned, then one whole interval of results.
    let expected = (s.checks * regions.len()) as u64;
    wait_for("every check assigned to an agent", || async {
        (counters.assigned.load(Ordering::Relaxed) >= expected).then_some(())
    })
    .await?;
    eprintln!(
        "assigned; warming up for {} s (one interval and 10 s)",
        interval_s + 10
    );
    tokio::time::sleep(Duration::from_secs(interval_s + 10)).await;

    let pids: BTreeMap<u64, u32> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| Some((id, cluster.node_pid(id)?)))
        .collect();
    let cpu0: BTreeMap<u64, f64> = pids
        .iter()
        .filter_map(|(id, pid)| Some((*id, proc_usage(*pid)?.0)))
        .collect();
    let acked0 = counters.acked.load(Ordering::Relaxed);
    let failed0 = counters.failed.load(Ordering::Relaxed);
    let window = Duration::from_secs_f64(s.minutes.max(0.1) * 60.0);
    let started = Instant::now();
    let mut max_rss: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut ctl, mut api, mut page) = (Vec::new(), Vec::new(), Vec::new());
    let mut page_bytes = 0usize;
    let http = vantage_coordinator::alert::http_client()?;
    let mut builds: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut build_ms: Vec<f64> = Vec::new();
    let mut status_bytes = 0usize;
    let (mut scrapes, mut scrape_bytes) = (Vec::new(), 0usize);
    let mut last_poll = Instant::now() - Duration::from_secs(60);
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (id, pid) in &pids {
            if let Some((_, rss, _)) = proc_usage(*pid) {
                let m = max_rss.entry(*id).or_default();
                *m = (*m).max(rss);
            }
        }
        // Status latency and snapshot builds every 15 s (off the CPU figures
        // only by the calls themselves).
        if last_poll.elapsed() >= Duration::from_secs(15) {
            last_poll = Instant::now();
            let t = Instant::now();
            let (code, _, err) = cluster.vantagectl(&[leader], &["status"]).await;
            if code == 0 {
                ctl.push(t.elapsed());
            } else {
                eprintln!("  vantagectl status failed: {err}");
            }
            if let Some(h) = cluster.nodes[&leader].http {
                let t = Instant::now();
                if let Ok(r) = http.get(format!("http://{h}/api/status")).send().await
                    && let Ok(body) = r.bytes().await
                {
                    api.push(t.elapsed());
                    status_bytes = body.len();
                }
                let t = Instant::now();
                if let Ok(r) = http.get(format!("http://{h}/")).send().await
                    && let Ok(body) = r.bytes().await
                {
                    page.push(t.elapsed());
                    page_bytes = body.len();
                }
            }
            for id in pids.keys() {
                // What a Prometheus scraping every 15 s costs, measured on
                // the leader (unless --no-scrape).
                let per_check = *id == leader && s.scrape;
                let t = Instant::now();
                let text = node_metrics(&cluster, &http, *id, per_check)
                    .await
                    .unwrap_or_default();
                if per_check && !text.is_empty() {
                    scrapes.push(t.elapsed());
                    scrape_bytes = text.len();
                }
                let index = value(&text, "vantage_raft_snapshot_index");
                let took = value(&text, "vantage_raft_snapshot_build_seconds");
                if let (Some(index), Some(took)) = (index, took)
                    && took > 0.0
                    && builds.insert((*id, index as u64))
                {
                    build_ms.push(took * 1000.0);
                }
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed) - acked0;
    let failed = counters.failed.load(Ordering::Relaxed) - failed0;
    let mut rows = Vec::new();
    for (id, pid) in &pids {
        let (cpu1, rss, _) = proc_usage(*pid).ok_or_else(|| anyhow!("node {id} died"))?;
        let cpu = (cpu1 - cpu0.get(id).copied().unwrap_or(cpu1)) / wall * 100.0;
        let data = dir_bytes(&cluster.node_data(*id));
        let text = node_metrics(&cluster, &http, *id, false)
            .await
            .unwrap_or_default();
        let snap = value(&text, "vantage_raft_snapshot_bytes").unwrap_or(0.0);
        let log = value(&text, "vantage_raft_last_log_index").unwrap_or(0.0)
            - value(&text, "vantage_raft_snapshot_index").unwrap_or(0.0);
        rows.push(format!(
            "  node {id}{}  CPU {cpu:5.1} %  RSS {:6.1} MiB (max {:6.1})  data dir {:7.1} MiB  snapshot {:6.1} MiB  log since snapshot {:.0} entries",
            if *id == leader { " (leader)" } else { "         " },
            rss as f64 / 1024.0,
            max_rss.get(id).copied().unwrap_or(rss) as f64 / 1024.0,
            mib(data),
            mib(snap as u64),
            log.max(0.0),
        ));
    }
    let (incidents, verdicts) = {
        let open = cluster
            .incidents(leader, false)
            .await
            .map_or(0, |v| v.len());
        let status = cluster.checks_status(leader).await;
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for c in status.map(|s| s.checks).unwrap_or_default() {
            *by.entry(c.verdict).or_default() += 1;
        }
        (open, by)
    };

    // A wiped follower catches up (snapshot install, then the log).
    let follower = pids.keys().copied().find(|id| *id != leader).unwrap_or(2);
    cluster.kill(follower).await?;
    let data = cluster.node_data(follower);
    std::fs::remove_dir_all(&data).with_context(|| format!("wiping {}", data.display()))?;
    let target = cluster
        .status(leader)
        .await
        .and_then(|st| st.applied_index)
        .unwrap_or(0);
    let t = Instant::now();
    cluster.spawn(follower).await?;
    cluster.wait_applied(follower, target).await?;
    let catch_up = t.elapsed();
    let install = node_metrics(&cluster, &http, follower, false)
        .await
        .and_then(|text| value(&text, "vantage_raft_snapshot_install_seconds"))
        .unwrap_or(0.0);
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.abort();
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "vantage-bench scale: {} checks x {} regions every {interval_s} s, {:.0} % failing, 3 coordinators + {} simulated agents on one {cores}-core machine",
        s.checks,
        regions.len(),
        s.failing * 100.0,
        regions.len()
    );
    println!(
        "  apply             {:.1} s for the whole declaration",
        apply_time.as_secs_f64()
    );
    println!("  measured          {wall:.0} s after one interval of warm-up");
    println!(
        "  results applied   {:.0} /s (expected {:.0} /s), {:.1} % failing",
        acked as f64 / wall,
        expected as f64 / interval_s as f64,
        failed as f64 * 100.0 / acked.max(1) as f64
    );
    println!(
        "  verdicts          {}; {incidents} incidents open",
        verdicts
            .iter()
            .map(|(v, n)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in rows {
        println!("{r}");
    }
    build_ms.sort_by(f64::total_cmp);
    println!(
        "  snapshot builds   {} in the window{}",
        build_ms.len(),
        if build_ms.is_empty() {
            String::new()
        } else {
            format!(
                ", median {:.0} ms, max {:.0} ms",
                build_ms[build_ms.len() / 2],
                build_ms[build_ms.len() - 1]
            )
        }
    );
    println!(
        "  wiped node        node {follower} caught up with index {target} in {:.1} s (snapshot install {:.1} s)",
        catch_up.as_secs_f64(),
        install
    );
    println!("  vantagectl status {}", spread(&mut ctl));
    println!(
        "  /api/status       {} ({:.1} MiB)",
        spread(&mut api),
        mib(status_bytes as u64)
    );
    println!(
        "  status page /     {} ({:.0} KiB)",
        spread(&mut page),
        page_bytes as f64 / 1024.0
    );
    println!(
        "  /metrics (leader) {} ({:.1} MiB)",
        spread(&mut scrapes),
        mib(scrape_bytes as u64)
    );
    println!(
        "  agent sessions    {} opened",
        counters.sessions.load(Ordering::Relaxed)
    );
    Ok(())
}
