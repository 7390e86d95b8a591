//! The fault campaign (`vantage-bench chaos`, and a short run in the test
//! suite): three coordinators and agents in three regions stream results
//! while a seeded schedule kills leaders and followers with SIGKILL,
//! restarts them, cuts nodes off (as root, each node and region in its own
//! network namespace whose link is taken down; otherwise SIGSTOP: a frozen
//! node holds its sockets and answers nothing), fills an agent's disk
//! (root: its spool on a small tmpfs), and opens and resolves incidents on
//! a testkit target. At the end a checker proves, from the cluster's own
//! records and the receivers':
//!
//! - every result a spool held was applied exactly once (the cluster
//!   applied every seq up to the spool's last, none skipped) or is counted
//!   as dropped by the agent;
//! - every incident notification reached a deduplicating receiver once per
//!   key and a plain one at least once, and none was lost or abandoned;
//! - all nodes converged to the same state;
//! - no node's RSS exceeded the bound.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use vantage_proto::v1::{ListAgentsRequest, ListIncidentsRequest, StatusRequest};

use crate::TinyDisk;
use crate::cluster::{Cluster, REGIONS, Timers, wait_for};
use crate::netns::{HUB, Net, TARGET};
use crate::receiver::Receiver;
use crate::smtp::{SmtpScript, SmtpServer};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long faults are injected.
    pub duration: Duration,
    /// Seeds the schedule: the same seed, the same sequence of faults.
    pub seed: u64,
    /// Steady checks besides the one whose target fails on schedule.
    pub checks: usize,
    /// A node whose RSS exceeds this fails the campaign.
    pub max_rss_mb: u64,
    /// How long the target stays down, then up, in turn.
    pub flip_every: Duration,
    /// Partition with network namespaces; `Err` from [`run`] when they
    /// cannot be made (otherwise nodes are frozen with SIGSTOP instead).
    pub require_netns: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            duration: Duration::from_secs(60),
            seed: 1,
            checks: 20,
            max_rss_mb: 512,
            flip_every: Duration::from_secs(20),
            require_netns: false,
        }
    }
}

/// What happened and what the checker found.
#[derive(Debug, Default)]
pub struct Report {
    /// Leaders killed with SIGKILL (and restarted).
    pub leader_kills: u32,
    /// Followers killed with SIGKILL (and restarted).
    pub follower_kills: u32,
    /// How nodes were cut off: `netns` (link down) or `SIGSTOP`.
    pub partition_mode: &'static str,
    /// Nodes cut off, leaders among them.
    pub partitions: u32,
    /// Of which the leader.
    pub leader_partitions: u32,
    /// Times an agent's disk was filled (root only).
    pub disk_fills: u32,
    /// Times the target went down.
    pub outages: u32,
    /// Incidents the cluster opened.
    pub incidents: usize,
    /// Of which, by worst verdict and check (`outage flip`...).
    pub incidents_by_kind: BTreeMap<String, usize>,
    /// Notifications the cluster queued (all channels).
    pub notifications: usize,
    /// Results applied (all agents).
    pub results_applied: u64,
    /// Results the agents counted as dropped (not stored: full disk).
    pub results_dropped: u64,
    /// Results a spool held that the cluster never applied.
    pub results_lost: u64,
    /// Notifications queued but never received (either receiver).
    pub pages_lost: usize,
    /// Requests a receiver got for a key it already had (absorbed by the
    /// deduplicating receiver; a plain one sees them twice).
    pub pages_resent: usize,
    /// Requests for keys the cluster never queued.
    pub pages_phantom: usize,
    /// Highest RSS seen per node, MiB.
    pub max_rss_mb: BTreeMap<u64, u64>,
    /// Whether all nodes ended with the same state.
    pub converged: bool,
    /// Everything the checker found wrong.
    pub violations: Vec<String>,
}

impl Report {
    /// The report as text.
    pub fn render(&self, config: &Config) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vantage-bench chaos: {} s of faults, seed {}, {} checks × 3 regions",
            config.duration.as_secs(),
            config.seed,
            config.checks + 1
        );
        let _ = writeln!(s, "  leader kills (-9)   {}", self.leader_kills);
        let _ = writeln!(s, "  follower kills (-9) {}", self.follower_kills);
        let _ = writeln!(
            s,
            "  partitions          {} ({} of the leader; {})",
            self.partitions, self.leader_partitions, self.partition_mode
        );
        let _ = writeln!(s, "  agent disk fills    {}", self.disk_fills);
        let _ = writeln!(s, "  target outages      {}", self.outages);
        let _ = writeln!(s, "  incidents           {}", self.incidents);
        for (kind, n) in &self.incidents_by_kind {
            let _ = writeln!(s, "    {kind:<17} {n}");
        }
        let _ = writeln!(s, "  notifications       {}", self.notifications);
        let _ = writeln!(s, "  results applied     {}", self.results_applied);
        let _ = writeln!(
            s,
            "  results dropped     {} (counted by the agents)",
            self.results_dropped
        );
        let _ = writeln!(s, "  results lost        {}", self.results_lost);
        let _ = writeln!(s, "  pages lost          {}", self.pages_lost);
        let _ = writeln!(s, "  pages phantom       {}", self.pages_phantom);
        let _ = writeln!(
            s,
            "  pages resent        {} (same key again: absorbed by the deduplicating receiver)",
            self.pages_resent
        );
        for (id, mb) in &self.max_rss_mb {
            let _ = writeln!(
                s,
                "  node {id} max RSS      {mb} MiB (bound {})",
                config.max_rss_mb
            );
        }
        let _ = writeln!(s, "  converged           {}", self.converged);
        if self.violations.is_empty() {
            let _ = writeln!(s, "  verdict             PASS");
        } else {
            let _ = writeln!(s, "  verdict             FAIL");
            for v in &self.violations {
                let _ = writeln!(s, "    - {v}");
            }
        }
        s
    }
}

/// SplitMix64: a small, seedable, good-enough generator for a schedule.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[(self.next() % items.len() as u64) as usize])
    }
}

/// Resident set size of `pid`, MiB.
fn rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// The campaign's moving parts.
struct Campaign {
    cluster: Cluster,
    net: Option<Net>,
    /// Every notification key seen queued, by channel: the outbox keeps
    /// only the latest finished ones, so the ledger is kept as it goes.
    queued: BTreeMap<String, BTreeSet<String>>,
    last_look: Instant,
    rng: Rng,
    report: Report,
    ids: Vec<u64>,
}

impl Campaign {
    /// Notes the notifications queued, as the first node that answers
    /// sees them.
    async fn look(&mut self) {
        self.last_look = Instant::now();
        for id in &self.ids {
            let ask = self.cluster.incidents(*id, true);
            if let Ok(Some(incidents)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
                for d in incidents.iter().flat_map(|i| &i.deliveries) {
                    self.queued
                        .entry(d.channel.clone())
                        .or_default()
                        .insert(d.key.clone());
                }
                return;
            }
        }
    }

    /// Waits `d`, sampling every node's RSS and, every few seconds, the
    /// notifications queued.
    async fn pause(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            if self.last_look.elapsed() > Duration::from_secs(3) {
                self.look().await;
            }
            for id in &self.ids {
                if let Some(mb) = self.cluster.node_pid(*id).and_then(rss_mb) {
                    let max = self.report.max_rss_mb.entry(*id).or_default();
                    *max = (*max).max(mb);
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }

    async fn leader(&self) -> Result<u64> {
        self.cluster.wait_for_leader(&self.ids).await
    }

    async fn kill_and_restart(&mut self, id: u64) -> Result<()> {
        self.cluster.kill(id).await?;
        let down = self.rng.millis(300, 3_000);
        self.pause(down).await;
        self.cluster.spawn(id).await?;
        Ok(())
    }

    async fn partition(&mut self, id: u64) -> Result<()> {
        let cut = self.rng.millis(1_000, 6_000);
        if let Some(net) = &self.net {
            let host = format!("c{id}");
            net.cut(&host, true)?;
            self.pause(cut).await;
            self.net
                .as_ref()
                .map_or(Ok(()), |net| net.cut(&host, false))
        } else {
            self.cluster.freeze(id, true)?;
            self.pause(cut).await;
            self.cluster.freeze(id, false)
        }
    }

    /// One fault from the schedule; returns when the cluster has a leader
    /// again.
    async fn fault(&mut self) -> Result<()> {
        let leader = self.leader().await?;
        let followers: Vec<u64> = self.ids.iter().copied().filter(|i| *i != leader).collect();
        match self.next_choice() {
            0..=49 => {
                self.report.leader_kills += 1;
                self.kill_and_restart(leader).await?;
            }
            50..=69 => {
                let id = self.rng.pick(&followers).unwrap_or(leader);
                self.report.follower_kills += 1;
                self.kill_and_restart(id).await?;
            }
            _ => {
                let id = if self.rng.next().is_multiple_of(2) {
                    self.report.leader_partitions += 1;
                    leader
                } else {
                    self.rng.pick(&followers).unwrap_or(leader)
                };
                self.report.partitions += 1;
                self.partition(id).await?;
            }
        }
        self.leader().await?;
        let calm = self.rng.millis(200, 2_000);
        self.pause(calm).await;
        Ok(())
    }

    fn next_choice(&mut self) -> u64 {
        self.rng.next() % 100
    }
}

fn declaration(
    target: IpAddr,
    stable: u16,
    flip: u16,
    checks: usize,
    receiver: &Receiver,
) -> String {
    let mut toml = String::new();
    for i in 0..checks {
        let _ = write!(
            toml,
            "[[check]]\nname = \"steady-{i}\"\nkind = \"tcp\"\ntarget = \"{target}\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {stable} }}\n\n"
        );
    }
    let _ = write!(
        toml,
        "[[check]]\nname = \"flip\"\nkind = \"smtp\"\ntarget = \"{target}\"\ninterval = \"5s\"\ntimeout = \"3s\"\nregions = [\"ru\", \"eu\", \"us\"]\nfail_after = 1\nrecover_after = 1\nparams = {{ port = {flip}, tls = \"none\" }}\n\n\
         [[channel]]\nname = \"dedup\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n\
         [[channel]]\nname = \"plain\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n\
         [[route]]\nname = \"all\"\nseverities = [\"critical\", \"warning\", \"info\"]\nchannels = [\"dedup\", \"plain\"]\n",
        receiver.url("dedup"),
        receiver.url("plain"),
    );
    toml
}

/// The hosts of the namespaced campaign: three coordinators, three regions.
fn hosts() -> [(&'static str, Ipv4Addr, Option<crate::netns::Shape>); 6] {
    [
        ("c1", Ipv4Addr::new(10, 77, 0, 11), None),
        ("c2", Ipv4Addr::new(10, 77, 0, 12), None),
        ("c3", Ipv4Addr::new(10, 77, 0, 13), None),
        ("ru", Ipv4Addr::new(10, 77, 0, 21), None),
        ("eu", Ipv4Addr::new(10, 77, 0, 22), None),
        ("us", Ipv4Addr::new(10, 77, 0, 23), None),
    ]
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The reply to a call that comes within 5 s.
async fn within<T>(
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let reply = tokio::time::timeout(Duration::from_secs(5), call).await;
    Some(reply.ok()?.ok()?.into_inner())
}

/// A node's state in a form to compare across nodes (nothing derived from
/// its own clock).
async fn fingerprint(cluster: &Cluster, id: u64) -> Option<String> {
    let mut op = cluster.operator(id).ok()?;
    let incidents = within(op.list_incidents(ListIncidentsRequest { all: true }))
        .await?
        .incidents;
    let agents = within(op.list_agents(ListAgentsRequest {})).await?.agents;
    let checks = within(op.status(StatusRequest::default())).await?.checks;
    let mut out = String::new();
    for i in incidents {
        let deliveries: Vec<String> = i
            .deliveries
            .iter()
            .map(|d| format!("{}={}", d.key, d.state))
            .collect();
        let _ = writeln!(
            out,
            "incident {} {} {} {} {} {:?} {} {:?}",
            i.id,
            i.check,
            i.verdict,
            i.worst,
            i.opened_ms,
            i.resolved_ms,
            i.timeline.len(),
            deliveries
        );
    }
    for a in agents {
        let _ = writeln!(
            out,
            "agent {} {} {} {} {} {}",
            a.name, a.region, a.spool_id, a.applied_seq, a.applied_results, a.connected
        );
    }
    for c in checks {
        let _ = writeln!(out, "check {} {} {:?}", c.name, c.verdict, c.down);
    }
    Some(out)
}

/// Runs the campaign; `Err` only when it could not be run at all (the
/// checker's findings are in the report).
pub async fn run(config: &Config) -> Result<Report> {
    // Each node and region on a host of its own where that can be made.
    let net = match Net::create(&hosts()) {
        Ok(net) => Some(net),
        Err(why) if config.require_netns => return Err(anyhow!("network namespaces: {why}")),
        Err(_) => None,
    };
    let (core, target): (IpAddr, IpAddr) = match net {
        Some(_) => (HUB.into(), TARGET.into()),
        None => (Ipv4Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()),
    };
    let on = |ip: IpAddr| SocketAddr::new(ip, 0);
    let stable = SmtpServer::start_on(on(target), SmtpScript::default()).await?;
    let flip = SmtpServer::start_on(on(target), SmtpScript::default()).await?;
    let receiver = Receiver::start_on(on(core)).await?;
    let mut cluster = Cluster::new(Timers::default())?;
    // Each region's agent: name, region, source address, metrics address.
    let mut agents = Vec::new();
    if let Some(net) = &net {
        for id in 1..=3u64 {
            let host = net.host(&format!("c{id}"))?;
            cluster = cluster.place_node(id, &host.netns, host.ip.into());
        }
        for (name, region, _) in REGIONS {
            let host = net.host(region)?;
            cluster = cluster.place_agent(name, &host.netns);
            agents.push((
                name,
                region,
                host.ip.to_string(),
                format!("{}:9100", host.ip),
            ));
        }
    } else {
        for (name, region, source) in REGIONS {
            let metrics = format!("127.0.0.1:{}", free_port()?);
            agents.push((name, region, source.to_owned(), metrics));
        }
    }
    let cluster = cluster.started(3).await?;
    let ids = cluster.ids();
    let partition_mode = if net.is_some() { "netns" } else { "SIGSTOP" };
    let mut c = Campaign {
        cluster,
        net,
        queued: BTreeMap::new(),
        last_look: Instant::now(),
        rng: Rng(config.seed),
        report: Report {
            partition_mode,
            ..Report::default()
        },
        ids,
    };
    // One agent's spool on a small disk of its own, where that is allowed.
    let disk = {
        let spool = c.cluster.agent_spool(REGIONS[0].0);
        std::fs::create_dir_all(&spool)?;
        TinyDisk::mount(&spool, 4096)
    };
    c.cluster
        .apply(&declaration(
            target,
            stable.addr.port(),
            flip.addr.port(),
            config.checks,
            &receiver,
        ))
        .await?;
    let mut metrics = BTreeMap::new();
    for (name, region, source, addr) in agents {
        c.cluster
            .spawn_agent_with(
                name,
                region,
                &source,
                &[],
                &format!("metrics_listen = \"{addr}\""),
            )
            .await?;
        metrics.insert(name, (source, addr));
    }
    wait_for("results from every agent", || async {
        let mut op = c.cluster.operator(c.ids[0]).ok()?;
        let agents = op
            .list_agents(ListAgentsRequest {})
            .await
            .ok()?
            .into_inner()
            .agents;
        (agents.len() == REGIONS.len() && agents.iter().all(|a| a.applied_seq > 0)).then_some(())
    })
    .await?;

    // Faults, with the target flipping on its own clock.
    let started = Instant::now();
    let mut target_down = false;
    let mut next_flip = started + config.flip_every;
    let mut filled: Option<(std::path::PathBuf, Instant)> = None;
    while started.elapsed() < config.duration {
        if Instant::now() >= next_flip {
            target_down = !target_down;
            for (source, _) in metrics.values() {
                flip.block_from(source.parse()?, target_down);
            }
            c.report.outages += u32::from(target_down);
            next_flip = Instant::now() + config.flip_every;
        }
        match (&disk, filled.take()) {
            (Some(_), Some((filler, until))) if Instant::now() >= until => {
                let _ = std::fs::remove_file(filler);
            }
            (_, Some(still)) => filled = Some(still),
            (Some(disk), None) if c.rng.next().is_multiple_of(8) => {
                c.report.disk_fills += 1;
                filled = Some((disk.fill(), Instant::now() + c.rng.millis(8_000, 20_000)));
            }
            _ => {}
        }
        c.fault().await?;
    }

    // Quiet: every node up and thawed, the disk and the target restored.
    for id in c.ids.clone() {
        if c.cluster.node_pid(id).is_none() {
            c.cluster.spawn(id).await?;
        }
        let _ = c.cluster.freeze(id, false);
    }
    if let Some((filler, _)) = filled {
        let _ = std::fs::remove_file(filler);
    }
    if let Some(net) = &c.net {
        for id in &c.ids {
            net.cut(&format!("c{id}"), false)?;
        }
    }
    for (source, _) in metrics.values() {
        flip.block_from(source.parse()?, false);
    }
    let leader = c.leader().await?;
    check(&mut c, leader, &receiver, &metrics, config).await?;
    drop(disk);
    Ok(c.report)
}

/// The checker.
async fn check(
    c: &mut Campaign,
    leader: u64,
    receiver: &Receiver,
    metrics: &BTreeMap<&str, (String, String)>,
    config: &Config,
) -> Result<()> {
    let settle = |what: &str| format!("settling: {what}");
    // Incidents resolve and every notification is delivered.
    let incidents = wait_for(
        &settle("incidents resolved, notifications delivered"),
        || async {
            let incidents = c.cluster.incidents(leader, true).await?;
            let quiet = incidents.iter().all(|i| {
                i.resolved_ms.is_some() && i.deliveries.iter().all(|d| d.state != "pending")
            });
            quiet.then_some(incidents)
        },
    )
    .await;
    let incidents = match incidents {
        Ok(i) => i,
        Err(e) => {
            let incidents = c.cluster.incidents(leader, true).await.unwrap_or_default();
            let open: Vec<String> = incidents
                .iter()
                .filter(|i| i.resolved_ms.is_none())
                .map(|i| {
                    let last = i
                        .timeline
                        .last()
                        .map(|e| format!("{e:?}"))
                        .unwrap_or_default();
                    format!("#{} {} {} (last: {last})", i.id, i.check, i.verdict)
                })
                .collect();
            let mut latest = Vec::new();
            if let Ok(mut op) = c.cluster.operator(leader)
                && let Some(check) = incidents.iter().find(|i| i.resolved_ms.is_none())
                && let Ok(r) = op
                    .get_results(vantage_proto::v1::GetResultsRequest {
                        check: check.check.clone(),
                        region: String::new(),
                        recent: 0,
                    })
                    .await
            {
                latest = r
                    .into_inner()
                    .latest
                    .into_iter()
                    .map(|r| format!("{} {} {}", r.region, r.status, r.message))
                    .collect();
            }
            c.report
                .violations
                .push(format!("{e}; open: {open:?}; latest results: {latest:?}"));
            incidents
        }
    };
    c.report.incidents = incidents.len();
    for i in &incidents {
        let check = if i.check.starts_with("steady-") {
            "steady-*"
        } else {
            i.check.as_str()
        };
        *c.report
            .incidents_by_kind
            .entry(format!("{} {check}", i.worst))
            .or_default() += 1;
    }
    for d in incidents.iter().flat_map(|i| &i.deliveries) {
        if d.state != "delivered" {
            c.report
                .violations
                .push(format!("notification {} is {}", d.key, d.state));
        }
        c.queued
            .entry(d.channel.clone())
            .or_default()
            .insert(d.key.clone());
    }
    let mut expected = std::mem::take(&mut c.queued);
    c.report.notifications = expected.values().map(BTreeSet::len).sum();
    for channel in ["dedup", "plain"] {
        let want = expected.remove(channel).unwrap_or_default();
        let path = format!("/{channel}");
        let got = receiver.keys(&path);
        let accepted = receiver.accepted_keys(&path);
        let lost: Vec<&String> = want.iter().filter(|k| !accepted.contains(*k)).collect();
        let phantom: Vec<&String> = got.keys().filter(|k| !want.contains(*k)).collect();
        c.report.pages_lost += lost.len();
        c.report.pages_phantom += phantom.len();
        c.report.pages_resent += got.values().map(|n| n.saturating_sub(1)).sum::<usize>();
        if !lost.is_empty() {
            c.report.violations.push(format!(
                "{channel}: {} never received, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        if !phantom.is_empty() {
            c.report.violations.push(format!(
                "{channel}: {} received that were never queued, e.g. {:?}",
                phantom.len(),
                &phantom[..phantom.len().min(10)]
            ));
        }
    }
    if c.report.outages > 0 && c.report.incidents == 0 {
        c.report
            .violations
            .push("the target went down but no incident was opened".into());
    }

    // Results: every spooled seq applied, none skipped.
    let mut last = BTreeMap::new();
    for (name, _, _) in REGIONS {
        let s = vantage_agent::spool::inspect(&c.cluster.agent_spool(name))
            .with_context(|| format!("reading {name}'s spool"))?;
        last.insert(name, s);
    }
    let caught_up = wait_for(&settle("every spooled result applied"), || async {
        let mut op = c.cluster.operator(leader).ok()?;
        let agents = op
            .list_agents(ListAgentsRequest {})
            .await
            .ok()?
            .into_inner()
            .agents;
        let all = REGIONS.iter().all(|(name, _, _)| {
            agents.iter().any(|a| {
                a.name == *name
                    && last
                        .get(name)
                        .is_some_and(|s| a.spool_id == s.id && a.applied_seq >= s.last_seq)
            })
        });
        all.then_some(agents)
    })
    .await;
    let agents = match caught_up {
        Ok(a) => a,
        Err(e) => {
            c.report.violations.push(format!("{e}"));
            let mut op = c.cluster.operator(leader)?;
            op.list_agents(ListAgentsRequest {})
                .await?
                .into_inner()
                .agents
        }
    };
    for a in &agents {
        c.report.results_applied += a.applied_results;
        let held = last.get(a.name.as_str()).map_or(0, |s| s.last_seq);
        let lost =
            a.applied_seq.saturating_sub(a.applied_results) + held.saturating_sub(a.applied_seq);
        if lost > 0 {
            c.report.results_lost += lost;
            c.report.violations.push(format!(
                "{}: spool wrote up to {held}, cluster applied up to {} with {} results",
                a.name, a.applied_seq, a.applied_results
            ));
        }
    }
    for (_, addr) in metrics.values() {
        c.report.results_dropped += crate::agent::metric(addr, "vantage_spool_dropped_total")
            .await
            .map_or(0, |v| v as u64);
    }

    // Convergence: with the agents frozen, every node at the same applied
    // index holds the same state.
    for (name, _, _) in REGIONS {
        c.cluster.freeze_agent(name, true)?;
    }
    let ids = c.ids.clone();
    let converged = wait_for(&settle("all nodes holding the same state"), || async {
        let mut indexes = BTreeSet::new();
        for id in &ids {
            indexes.insert(c.cluster.status(*id).await?.applied_index?);
        }
        if indexes.len() != 1 {
            return None;
        }
        let mut prints = BTreeSet::new();
        for id in &ids {
            prints.insert(fingerprint(&c.cluster, *id).await?);
        }
        let mut after = BTreeSet::new();
        for id in &ids {
            after.insert(c.cluster.status(*id).await?.applied_index?);
        }
        // Only a comparison at one index counts.
        (after == indexes).then_some(prints.len() == 1)
    })
    .await;
    for (name, _, _) in REGIONS {
        c.cluster.freeze_agent(name, false)?;
    }
    c.report.converged = converged.unwrap_or(false);
    if !c.report.converged {
        c.report
            .violations
            .push("the nodes did not converge to the same state".into());
    }
    for (id, mb) in &c.report.max_rss_mb {
        if *mb > config.max_rss_mb {
            c.report.violations.push(format!(
                "node {id} reached {mb} MiB (bound {})",
                config.max_rss_mb
            ));
        }
    }
    if c.report.max_rss_mb.is_empty() {
        return Err(anyhow!("no node's memory could be read"));
    }
    Ok(())
}
