//! `vantage-bench`: benchmark programs that print figures (never timed
//! assertions in tests).
//!
//! - `probe`: N SMTP+STARTTLS probes at concurrency C against a testkit
//!   server running in a child process on loopback, or against any server
//!   (`--target`); prints probes/s, CPU ms per probe (prober, and the
//!   testkit server separately) and peak RSS.
//! - `oneshot`: runs the release `vantage-agent probe smtp` binary against a
//!   testkit server and prints its peak RSS.
//! - `serve-smtp`: the server half of `probe` (prints its port, serves until
//!   stdin closes).
//! - `raft`: K clients write ~200-byte entries through gRPC to a 3-node
//!   loopback coordinator cluster; prints committed entries/s and p50/p99
//!   commit latency, flat out or at a fixed rate.
//! - `agent`: one `vantage-agent run` with N checks a minute against a
//!   testkit SMTP server; prints the agent's RSS and CPU %.
//! - `ingest`: simulated agent sessions stream result batches into a 3-node
//!   cluster; prints committed results/s and p50/p99 ack latency.
//! - `scale` (`scale.rs`): N checks x regions in a 3-node cluster with
//!   simulated agents; prints per-node CPU and RSS, results/s, Raft log and
//!   snapshot sizes, snapshot build/install and catch-up times, status
//!   latency.
//! - `detect` (`detect.rs`): repeated outages of a testkit target seen from
//!   three regions; prints onset-to-page latency p50/p99 and false pages
//!   under one-region faults.

mod detect;
mod scale;
mod state;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use vantage_agent::check::CheckSpec;
use vantage_agent::check::smtp::SmtpCheck;
use vantage_agent::context::ProbeContext;
use vantage_common::Status;
use vantage_tests::certs::server_tls;
use vantage_tests::measure::{self_usage, wait_with_rusage};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

#[derive(Debug, Parser)]
#[command(name = "vantage-bench", about = "vantage benchmarks: print figures")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// SMTP+STARTTLS probe throughput against a loopback testkit server,
    /// or against any server (`--target`).
    Probe(ProbeArgs),
    /// Peak RSS, CPU and latency of one-shot `vantage-agent probe` runs
    /// (release binary).
    Oneshot {
        /// Runs to make.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The agent binary; default: `vantage-agent` next to this program.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// What to probe: `smtp` (STARTTLS, loopback), `spf` (a record
        /// with an include, from a testkit DNS server, asked afresh) or
        /// `delivery` (the round trip through a loopback Postfix and
        /// Dovecot: root and their Debian packages).
        #[arg(long, value_enum, default_value = "smtp")]
        kind: OneshotKind,
    },
    /// Serve scripted SMTP with STARTTLS on loopback until stdin closes.
    ServeSmtp,
    /// Footprint of one agent running many checks.
    Agent {
        /// Checks (each runs once a minute).
        #[arg(long, default_value_t = 1000)]
        checks: usize,
        /// How long to measure, seconds (after a 20 s warm-up).
        #[arg(long, default_value_t = 180)]
        seconds: u64,
        /// Export traces (agent and coordinator) to an in-process OTLP collector.
        #[arg(long)]
        traces: bool,
        /// What the checks are: `smtp` (SMTP+STARTTLS), or `mail`, a mix of
        /// smtp, dns, mx, spf and dmarc checks, their DNS asked of a testkit
        /// server.
        #[arg(long, value_enum, default_value = "smtp")]
        mix: Mix,
    },
    /// Result ingest into a 3-node cluster through agent sessions.
    Ingest {
        /// Simulated agents (one session each).
        #[arg(long, default_value_t = 30)]
        agents: usize,
        /// Results per batch.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Results to send in all.
        #[arg(long, default_value_t = 300_000)]
        results: usize,
        /// Total rate in results/s (0: as fast as acks allow).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Checks declared (each runs from every region); the results
        /// cycle through them.
        #[arg(long, default_value_t = 100)]
        checks: usize,
    },
    /// A cluster holding N checks: per-node CPU and RSS, results/s, Raft
    /// log and snapshot sizes, snapshot and catch-up times, status latency.
    Scale {
        /// Checks declared (each runs from every region).
        #[arg(long, default_value_t = 10_000)]
        checks: usize,
        /// Regions (one simulated agent each).
        #[arg(long, default_value_t = 3)]
        regions: usize,
        /// Check interval.
        #[arg(long, default_value = "60s")]
        interval: vantage_common::duration::Period,
        /// Share of checks failing (re-drawn every two intervals).
        #[arg(long, default_value_t = 0.05)]
        failing: f64,
        /// Minutes to measure, after one interval of warm-up.
        #[arg(long, default_value_t = 3.0)]
        minutes: f64,
        /// Raft entries between snapshots (the coordinator's default: 5000).
        #[arg(long, default_value_t = 5000)]
        snapshot_every: u64,
        /// Do not scrape the leader's per-check series every 15 s (as a
        /// Prometheus would).
        #[arg(long)]
        no_scrape: bool,
    },
    /// Memory per check of the replicated state with its history full
    /// (30 days of roll-ups, a full recent history), built in this process.
    State {
        /// Checks declared (each runs from every region).
        #[arg(long, default_value_t = 10_000)]
        checks: usize,
        /// Regions.
        #[arg(long, default_value_t = 3)]
        regions: usize,
        /// Days of history.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Onset-to-page latency of outages and false pages under one-region faults.
    Detect {
        /// Outages to time.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// One-region (RU only) faults to count false pages under.
        #[arg(long, default_value_t = 3)]
        false_rounds: usize,
        /// Check interval, seconds.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// How the target fails.
        #[arg(long, value_enum, default_value = "refused")]
        mode: detect::Mode,
    },
    /// Fault campaign: kill -9 leaders and followers, partitions, a full
    /// agent disk and target outages while agents stream; then checks that
    /// no result or notification was lost or doubled, that the nodes
    /// converged, and that memory stayed bounded. Exits non-zero on a finding.
    Chaos {
        /// Minutes of faults.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Seeds the fault schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Steady checks (plus one whose target goes down on schedule).
        #[arg(long, default_value_t = 20)]
        checks: usize,
        /// RSS bound per coordinator, MiB.
        #[arg(long, default_value_t = 512)]
        max_rss_mb: u64,
    },
    /// Raft write throughput and commit latency of a 3-node loopback cluster.
    Raft {
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Entries to write in all.
        #[arg(long, default_value_t = 50_000)]
        entries: usize,
        /// Total rate limit in entries/s (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Payload bytes per entry.
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Entries per request (one Raft log entry), as agents batch results.
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Bench::Probe(args) => probe(args),
        Bench::Oneshot { runs, agent, kind } => oneshot(runs, agent, kind),
        Bench::ServeSmtp => serve_smtp(),
        Bench::Agent {
            checks,
            seconds,
            traces,
            mix,
        } => agent(checks, seconds, traces, mix),
        Bench::Ingest {
            agents,
            batch,
            results,
            rate,
            checks,
        } => ingest(agents, batch, results, rate, checks.max(1)),
        Bench::Detect {
            rounds,
            false_rounds,
            interval,
            mode,
        } => detect::detect(rounds, false_rounds, interval, mode),
        Bench::State {
            checks,
            regions,
            days,
        } => state::run(state::StateBench {
            checks,
            regions,
            days,
        }),
        Bench::Scale {
            checks,
            regions,
            interval,
            failing,
            minutes,
            snapshot_every,
            no_scrape,
        } => scale::scale(scale::Scale {
            checks,
            regions,
            interval: interval.duration(),
            failing,
            minutes,
            snapshot_every,
            scrape: !no_scrape,
        }),
        Bench::Chaos {
            minutes,
            seed,
            checks,
            max_rss_mb,
        } => chaos(minutes, seed, checks, max_rss_mb),
        Bench::Raft {
            clients,
            entries,
            rate,
            size,
            batch,
        } => raft(clients, entries, rate, size, batch.max(1)),
    }
}

fn chaos(minutes: f64, seed: u64, checks: usize, max_rss_mb: u64) -> Result<()> {
    let config = vantage_tests::chaos::Config {
        duration: Duration::from_secs_f64(minutes.max(0.1) * 60.0),
        seed,
        checks,
        max_rss_mb,
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(vantage_tests::chaos::run(&config))?;
    print!("{}", report.render(&config));
    if !report.violations.is_empty() {
        bail!("{} findings", report.violations.len());
    }
    Ok(())
}

async fn starttls_server() -> Result<SmtpServer> {
    let tls = server_tls(&["mx.bench.test"])?;
    Ok(SmtpServer::start(SmtpScript::with_starttls(tls)).await?)
}

fn serve_smtp() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = starttls_server().await?;
        println!("{}", server.addr.port());
        std::io::stdout().flush()?;
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await?;
        drop(server);
        Ok(())
    })
}

/// How TLS is used by `vantage-bench probe --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProbeTls {
    /// STARTTLS after EHLO (required).
    Starttls,
    /// TLS from the first byte (submissions, 465).
    Implicit,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Probes to run.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Probes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// A real server, HOST:PORT, instead of the testkit one (only the
    /// prober is measured then). Probe only servers you run.
    #[arg(long)]
    target: Option<String>,
    /// Name for SNI and certificate matching (default: the target's host).
    #[arg(long, requires = "target")]
    tls_name: Option<String>,
    /// Verify the chain against these trust anchors (PEM): the probe is
    /// then the `tls` check (TLS as `--tls` says, chain and name verified,
    /// expiry read), as a prober with a CA file does; without it, the `smtp`
    /// check (banner, EHLO, STARTTLS, the chain recorded).
    #[arg(long, requires = "target")]
    ca_file: Option<PathBuf>,
    /// How TLS is used on the target.
    #[arg(long, value_enum, default_value = "starttls", requires = "target")]
    tls: ProbeTls,
    /// Skip the TLS posture rules (the legacy-TLS rule costs a connection
    /// of its own per probe): one connection per probe, as other probers.
    #[arg(long)]
    no_posture: bool,
}

/// The testkit server in a child process: (process, port).
fn spawn_testkit_server() -> Result<(std::process::Child, u16)> {
    let exe = std::env::current_exe()?;
    let mut server = Command::new(&exe)
        .arg("serve-smtp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the SMTP server process")?;
    let mut port = String::new();
    if let Some(out) = server.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut port)?;
    }
    let port: u16 = port
        .trim()
        .parse()
        .context("server did not print its port")?;
    Ok((server, port))
}

/// Splits `HOST:PORT` (`[v6]:PORT` for an IPv6 address).
fn host_port(target: &str) -> Result<(String, u16)> {
    let (host, port) = target
        .rsplit_once(':')
        .with_context(|| format!("--target {target:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--target {target:?}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--target {target:?}: no host");
    }
    Ok((host.to_owned(), port))
}

fn probe(args: ProbeArgs) -> Result<()> {
    use vantage_common::spec::smtp::{Posture, TlsMode};
    use vantage_common::spec::tls::TlsCheck;

    let (mut server, host, port) = match &args.target {
        Some(target) => {
            let (host, port) = host_port(target)?;
            (None, host, port)
        }
        None => {
            let (child, port) = spawn_testkit_server()?;
            (Some(child), "127.0.0.1".to_owned(), port)
        }
    };
    let tls = match args.tls {
        ProbeTls::Starttls => TlsMode::Starttls,
        ProbeTls::Implicit => TlsMode::Implicit,
    };
    let posture = if args.no_posture {
        Posture {
            legacy_tls: false,
            min_rsa_bits: 0,
            sha1: false,
            auth_before_starttls: false,
        }
    } else {
        Posture::default()
    };
    let (spec, what) = match &args.ca_file {
        Some(ca) => {
            let mut check = TlsCheck::new(host.clone(), port);
            check.tls = tls;
            check.tls_name = args.tls_name.clone();
            check.ca_file = Some(ca.clone());
            check.posture = posture;
            (CheckSpec::Tls(check), "tls (chain verified)")
        }
        None => {
            let mut check = SmtpCheck::new(host.clone(), port);
            check.tls = tls;
            check.tls_name = args.tls_name.clone();
            check.posture = posture;
            (CheckSpec::Smtp(check), "smtp")
        }
    };
    let (count, concurrency) = (args.count, args.concurrency.max(1));
    let rt = tokio::runtime::Runtime::new()?;
    let before = self_usage();
    let started = Instant::now();
    let (answered, failed) = rt.block_on(async {
        let ctx = Arc::new(ProbeContext::new(Some(Duration::from_secs(15)), None, None));
        let spec = Arc::new(spec);
        let mut results = futures::stream::iter(0..count)
            .map(|_| {
                let (ctx, spec) = (ctx.clone(), spec.clone());
                tokio::spawn(async move { vantage_agent::check::run(&spec, &ctx).await })
            })
            .buffer_unordered(concurrency);
        let (mut answered, mut failed) = (0usize, Vec::new());
        while let Some(outcome) = results.next().await {
            match outcome {
                // A warning (a posture rule, a near expiry) is an answer.
                Ok(o)
                    if matches!(o.status, Status::Pass | Status::Warn)
                        && (o.details.contains_key("tls_version") || args.ca_file.is_some()) =>
                {
                    answered += 1
                }
                Ok(o) => failed.push(o.summary_line()),
                Err(e) => failed.push(format!("task failed: {e}")),
            }
        }
        (answered, failed)
    });
    let wall = started.elapsed();
    let after = self_usage();
    let server_usage = server.as_mut().map(|s| {
        drop(s.stdin.take());
        wait_with_rusage(s.id()).1
    });

    let prober_cpu = after.cpu.saturating_sub(before.cpu);
    let tls_word = match args.tls {
        ProbeTls::Starttls => "STARTTLS",
        ProbeTls::Implicit => "implicit TLS",
    };
    let place = match &args.target {
        Some(t) => format!("target {t}"),
        None => "testkit server, loopback".to_owned(),
    };
    let posture_word = if args.no_posture {
        "posture rules off"
    } else {
        "posture rules on"
    };
    println!(
        "vantage-bench probe: {count} {what} probes with {tls_word}, concurrency {concurrency}, {place}, {posture_word}"
    );
    println!("  answered          {answered}");
    println!("  failed            {}", failed.len());
    for f in failed.iter().take(5) {
        println!("    {f}");
    }
    println!("  wall              {:.2} s", wall.as_secs_f64());
    println!(
        "  throughput        {:.0} probes/s",
        count as f64 / wall.as_secs_f64()
    );
    println!(
        "  prober CPU        {:.3} ms/probe",
        prober_cpu.as_secs_f64() * 1000.0 / count as f64
    );
    if let Some(server_usage) = server_usage {
        println!(
            "  server CPU        {:.3} ms/probe",
            server_usage.cpu.as_secs_f64() * 1000.0 / count as f64
        );
    }
    println!(
        "  prober peak RSS   {:.1} MiB",
        after.max_rss_kib as f64 / 1024.0
    );
    if let Some(server_usage) = server_usage {
        println!(
            "  server peak RSS   {:.1} MiB",
            server_usage.max_rss_kib as f64 / 1024.0
        );
    }
    if !failed.is_empty() {
        bail!("{} probes did not answer", failed.len());
    }
    Ok(())
}

/// What `vantage-bench oneshot` probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OneshotKind {
    /// SMTP with STARTTLS.
    Smtp,
    /// SPF, its DNS asked of a testkit server.
    Spf,
    /// The round trip through a real Postfix and Dovecot on loopback.
    Delivery,
}

fn oneshot(runs: usize, agent: Option<PathBuf>, kind: OneshotKind) -> Result<()> {
    let agent = match agent {
        Some(a) => a,
        None => std::env::current_exe()?.with_file_name("vantage-agent"),
    };
    if !agent.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p vantage-agent`",
            agent.display()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let smtp = rt.block_on(starttls_server())?;
    let dns = rt.block_on(vantage_tests::dns::DnsServer::start(&[BENCH_ZONE]))?;
    let mail = match kind {
        OneshotKind::Delivery => Some(mail_servers()?),
        _ => None,
    };
    let (what, args) = match (kind, &mail) {
        (OneshotKind::Delivery, Some(mail)) => (
            "delivery (Postfix submission with SCRAM login, Dovecot IMAPS with IDLE)",
            delivery_args(mail)?,
        ),
        (OneshotKind::Smtp | OneshotKind::Delivery, _) => (
            "smtp (STARTTLS)",
            vec![
                "smtp".to_owned(),
                "127.0.0.1".into(),
                "--port".into(),
                smtp.addr.port().to_string(),
            ],
        ),
        (OneshotKind::Spf, _) => (
            "spf (a record with an include, testkit DNS)",
            vec![
                "spf".to_owned(),
                "example.test".into(),
                "--resolver".into(),
                dns.addr.to_string(),
            ],
        ),
    };
    let args: Vec<String> = args
        .into_iter()
        .chain(["-o".into(), "json".into()])
        .collect();
    let (mut peaks, mut probe_ms, mut wall_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_ms, mut arrival_ms) = (Vec::new(), Vec::new());
    let mut outcome = String::new();
    for _ in 0..runs {
        let started = Instant::now();
        let (run, usage) = vantage_tests::agent::run_usage(&agent, &args);
        wall_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if run.code != 0 {
            bail!("probe did not pass: {run:?}");
        }
        peaks.push(usage.max_rss_kib as f64 / 1024.0);
        cpu_ms.push(usage.cpu.as_secs_f64() * 1000.0);
        let json = run.json();
        probe_ms.push(json["duration_ms"].as_f64().unwrap_or(f64::NAN));
        if let Some(ms) = json["details"]["arrival_ms"].as_f64() {
            arrival_ms.push(ms);
        }
        outcome = format!("{} {}", json["status"], json["message"]);
    }
    let spread = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let p99 = v[(v.len() * 99).div_ceil(100).saturating_sub(1)];
        format!(
            "min {:.1}, median {:.1}, p99 {p99:.1}, max {:.1}",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        )
    };
    println!("vantage-bench oneshot: {runs} x `vantage-agent probe {what}` on loopback");
    println!("  binary            {}", agent.display());
    println!("  outcome           {outcome}");
    println!("  peak RSS (MiB)    {}", spread(&mut peaks));
    println!(
        "  probe (ms)        {}  (the outcome's duration_ms)",
        spread(&mut probe_ms)
    );
    println!(
        "  process (ms)      {}  (start to exit)",
        spread(&mut wall_ms)
    );
    println!(
        "  CPU (ms)          {}  (user + system, per run)",
        spread(&mut cpu_ms)
    );
    if !arrival_ms.is_empty() {
        println!(
            "  arrival (ms)      {}  (submission accepted to seen in the mailbox)",
            spread(&mut arrival_ms)
        );
    }
    drop((smtp, dns, mail));
    Ok(())
}

fn raft(clients: usize, entries: usize, rate: u64, size: usize, batch: usize) -> Result<()> {
    use vantage_common::identity::Identity;
    use vantage_common::tls::ReloadingTls;
    use vantage_coordinator::node::{Outcome, Proposal, ProposeError};
    use vantage_coordinator::raft::network::{decode, encode};
    use vantage_coordinator::state::Command as RaftCommand;
    use vantage_proto::v1::raft_service_client::RaftServiceClient;
    use vantage_tests::cluster::{Cluster, Timers};

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let cluster = Cluster::start(3, Timers::default()).await?;
        let leader = cluster.wait_for_leader(&[1, 2, 3]).await?;
        // Writes enter where a follower would forward them: RaftService.Forward
        // on the leader, with a coordinator identity outside the membership.
        let tls = ReloadingTls::load(cluster.issue(&Identity::Coordinator { id: 99 })?)?;
        let addr = cluster.nodes[&leader].addr.to_string();
        let payload = "x".repeat(size);
        let per_client = entries.div_ceil(clients).div_ceil(batch);
        let interval = (rate > 0).then(|| Duration::from_secs_f64((clients * batch) as f64 / rate as f64));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let channel = vantage_common::transport::channel(&addr, tls.clone())?;
            let mut client = RaftServiceClient::new(channel);
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                let mut ticker = interval.map(|i| {
                    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i.mul_f64(c as f64 / clients as f64), i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                for _ in 0..per_client {
                    if let Some(t) = ticker.as_mut() {
                        t.tick().await;
                    }
                    let items = (0..batch).map(|_| RaftCommand::Noop { payload: payload.clone() }).collect();
                    let proposal = Proposal::Write(RaftCommand::Batch(items));
                    let t0 = Instant::now();
                    let reply = client.forward(encode(&proposal)?).await?;
                    let result: Result<Outcome, ProposeError> = decode(reply.get_ref())?;
                    result?;
                    latencies.push(t0.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let committed = latencies.len() * batch;
        let wall = started.elapsed();
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let status = cluster.status(leader).await;
        println!("vantage-bench raft: 3 coordinators on loopback (mTLS gRPC, sled, fsync per append batch)");
        println!("  clients           {clients}");
        println!("  entry payload     {size} bytes");
        println!("  target rate       {}", if rate == 0 { "unlimited".into() } else { format!("{rate} entries/s") });
        println!("  entries/request   {batch}");
        println!("  committed         {committed} entries in {} requests", latencies.len());
        println!("  wall              {:.2} s", wall.as_secs_f64());
        println!("  throughput        {:.0} entries/s", committed as f64 / wall.as_secs_f64());
        println!("  commit p50        {:.1} ms", pct(0.50).as_secs_f64() * 1000.0);
        println!("  commit p99        {:.1} ms", pct(0.99).as_secs_f64() * 1000.0);
        println!("  commit max        {:.1} ms", latencies[latencies.len() - 1].as_secs_f64() * 1000.0);
        if let Some(s) = status {
            println!("  leader log index  {}", s.last_log_index.unwrap_or(0));
        }
        Ok(())
    })
}

/// CPU seconds (user + system) and current/peak RSS (KiB) of a process.
fn proc_usage(pid: u32) -> Option<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, kib("VmRSS:")?, kib("VmHWM:")?))
}

/// A loopback Postfix and Dovecot, or why there cannot be one here.
fn mail_servers() -> Result<vantage_tests::mail::MailServers> {
    vantage_tests::mail::MailServers::start()?.ok_or_else(|| {
        anyhow::anyhow!(
            "the delivery benchmark needs root and the postfix, dovecot-core and dovecot-imapd packages"
        )
    })
}

/// `probe delivery` arguments for the mailbox of `mail`.
fn delivery_args(mail: &vantage_tests::mail::MailServers) -> Result<Vec<String>> {
    use vantage_tests::mail::{ADDRESS, HOSTNAME, USER};
    let password = mail.password_file()?.display().to_string();
    Ok([
        "delivery",
        ADDRESS,
        "--submit",
        &mail.submission.to_string(),
        "--tls-name",
        HOSTNAME,
        "--username",
        USER,
        "--password-file",
        &password,
        "--imap",
        &mail.imaps.to_string(),
        "--imap-tls",
        "implicit",
        "--imap-tls-name",
        HOSTNAME,
        "--imap-username",
        USER,
        "--imap-password-file",
        &password,
        "--ca-file",
        &mail.ca_file.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec())
}

/// The checks `vantage-bench agent` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mix {
    /// SMTP with STARTTLS only.
    Smtp,
    /// smtp, dns, mx, spf and dmarc in turn.
    Mail,
    /// The `mail` mix with one check in a hundred a `delivery` round trip
    /// through a loopback Postfix and Dovecot (root and their packages).
    MailFlow,
}

/// The zone the `mail` mix asks about.
const BENCH_ZONE: &str = r#"
$ORIGIN example.test.
@       3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300
@       3600 IN NS  ns
ns      3600 IN A   127.0.0.1
mx      3600 IN A   127.0.0.1
@       3600 IN MX  10 mx
@       3600 IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.test -all"
_spf    3600 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
_dmarc  3600 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"
"#;

/// Check `i` of the mix, as a `[[check]]`.
fn bench_check(
    mix: Mix,
    i: usize,
    smtp_port: u16,
    mail: Option<&vantage_tests::mail::MailServers>,
) -> String {
    let head = |kind: &str, target: &str| {
        format!(
            "[[check]]\nname = \"{kind}-{i}\"\nkind = \"{kind}\"\ntarget = \"{target}\"\ninterval = \"60s\"\nregions = [\"eu\"]\n"
        )
    };
    let smtp = || head("smtp", "127.0.0.1") + &format!("params = {{ port = {smtp_port} }}\n");
    if let (Mix::MailFlow, Some(mail), 0) = (mix, mail, i % 100) {
        use vantage_tests::mail::{ADDRESS, HOSTNAME, USER};
        let password = mail
            .password_file()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return format!(
            "[[check]]\nname = \"delivery-{i}\"\nkind = \"delivery\"\ntarget = \"{ADDRESS}\"\n\
             interval = \"60s\"\ntimeout = \"30s\"\nregions = [\"eu\"]\n\
             params = {{ submit = \"{}\", submit_tls_name = \"{HOSTNAME}\", username = \"{USER}\", \
             password_file = \"{password}\", imap = \"{}\", imap_tls = \"implicit\", \
             imap_tls_name = \"{HOSTNAME}\", imap_username = \"{USER}\", \
             imap_password_file = \"{password}\", ca_file = \"{}\" }}\n",
            mail.submission,
            mail.imaps,
            mail.ca_file.display()
        );
    }
    match (mix, i % 5) {
        (Mix::Smtp, _) | (Mix::Mail | Mix::MailFlow, 0) => smtp(),
        (Mix::Mail | Mix::MailFlow, 1) => head("dns", "mx.example.test"),
        (Mix::Mail | Mix::MailFlow, 2) => head("mx", "example.test"),
        (Mix::Mail | Mix::MailFlow, 3) => head("spf", "example.test"),
        (Mix::Mail | Mix::MailFlow, _) => head("dmarc", "example.test"),
    }
}

/// The value at quantile `p` (0–1) of `sorted`; NaN when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn agent(checks: usize, seconds: u64, traces: bool, mix: Mix) -> Result<()> {
    use vantage_proto::v1::ApplyRequest;
    use vantage_tests::cluster::{Cluster, Timers};

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = starttls_server().await?;
        let dns = vantage_tests::dns::DnsServer::start(&[BENCH_ZONE]).await?;
        let mail = match mix {
            Mix::MailFlow => Some(mail_servers()?),
            _ => None,
        };
        let collector = vantage_tests::otlp::Collector::start().await?;
        let mut cluster = Cluster::new(Timers::default())?;
        if traces {
            cluster = cluster.with_env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint());
        }
        let mut cluster = cluster.started(1).await?;
        let port = server.addr.port();
        let toml: String = (0..checks)
            .map(|i| bench_check(mix, i, port, mail.as_ref()))
            .collect();
        cluster
            .operator(1)?
            .apply(ApplyRequest {
                source_name: "bench.toml".into(),
                toml,
                dry_run: false,
            })
            .await?;
        let resolver = format!("resolver = \"{}\"\n", dns.addr);
        cluster
            .spawn_agent_with("bench-1", "eu", "127.0.0.1", &[], &resolver)
            .await?;
        let pid = cluster
            .agent_pid("bench-1")
            .ok_or_else(|| anyhow::anyhow!("agent not running"))?;
        // Warm-up: sessions, the first burst of probes.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let (cpu0, _, _) =
            proc_usage(pid).ok_or_else(|| anyhow::anyhow!("cannot read /proc for the agent"))?;
        let served = || server.seen.connections.load(std::sync::atomic::Ordering::Relaxed);
        let served0 = served();
        let dialogues = || server.seen.dialogues_us.lock().map(|d| d.len()).unwrap_or(0);
        let dialogues0 = dialogues();
        let t0 = Instant::now();
        let mut max_rss = 0;
        while t0.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some((_, rss, _)) = proc_usage(pid) {
                max_rss = max_rss.max(rss);
            }
        }
        let (cpu1, rss, hwm) = proc_usage(pid).ok_or_else(|| anyhow::anyhow!("agent died"))?;
        // How long the dialogues ended while measured took, as the server
        // saw them: what batching or contention in the agent adds shows here.
        let mut took_ms: Vec<f64> = server
            .seen
            .dialogues_us
            .lock()
            .map(|d| d.get(dialogues0..).unwrap_or_default().iter().map(|&us| us as f64 / 1000.0).collect())
            .unwrap_or_default();
        took_ms.sort_by(f64::total_cmp);
        let wall = t0.elapsed().as_secs_f64();
        let connections = served();
        let measured = connections - served0;
        let traced = if traces {
            "traces exported over OTLP"
        } else {
            "no traces"
        };
        let what = match mix {
            Mix::Smtp => "SMTP+STARTTLS checks",
            Mix::Mail => "checks (smtp, dns, mx, spf, dmarc in turn; DNS from a testkit server)",
            Mix::MailFlow => "checks (the mail mix, one in a hundred a delivery round trip through loopback Postfix and Dovecot)",
        };
        println!("vantage-bench agent: {checks} {what} a minute, one agent, loopback, {traced}");
        println!("  measured          {wall:.0} s after a 20 s warm-up");
        println!("  probes served     {connections} SMTP connections in all, {measured} while measured");
        println!(
            "  CPU               {:.2} % of one core",
            (cpu1 - cpu0) / wall * 100.0
        );
        if mix == Mix::Smtp && measured > 0 {
            println!(
                "  CPU per probe     {:.3} ms",
                (cpu1 - cpu0) * 1000.0 / measured as f64
            );
        }
        if !took_ms.is_empty() {
            let pct = |p| percentile(&took_ms, p);
            println!(
                "  SMTP dialogue     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (accept to close, at the server)",
                pct(0.50),
                pct(0.90),
                pct(0.99),
                pct(1.0)
            );
        }
        println!("  RSS now           {:.1} MiB", rss as f64 / 1024.0);
        println!("  RSS max (sampled) {:.1} MiB", max_rss as f64 / 1024.0);
        println!(
            "  RSS peak (VmHWM)  {:.1} MiB (includes start-up)",
            hwm as f64 / 1024.0
        );
        if let Some(mail) = &mail {
            let sent = mail.postfix_log().matches("status=sent").count();
            println!("  delivered         {sent} probe messages by Postfix; {} left in the mailbox", mail.delivered().len());
        }
        if traces {
            let probes = collector
                .spans()
                .iter()
                .filter(|s| s.name == "probe")
                .count();
            println!("  probe spans       {probes} received by the collector");
        }
        Ok(())
    })
}

fn ingest(agents: usize, batch: usize, results: usize, rate: u64, checks: usize) -> Result<()> {
    use vantage_common::identity::Identity;
    use vantage_common::tls::ReloadingTls;
    use vantage_proto::v1::agent_message::Msg as Out;
    use vantage_proto::v1::agent_service_client::AgentServiceClient;
    use vantage_proto::v1::coordinator_message::Msg as In;
    use vantage_proto::v1::{AgentMessage, ApplyRequest, Hello, ResultBatch, ResultRecord};
    use vantage_tests::cluster::{Cluster, Timers};

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let cluster = Cluster::start(3, Timers::production(5000)).await?;
        let leader = cluster.wait_for_leader(&[1, 2, 3]).await?;
        let toml: String = (0..checks)
            .map(|i| format!("[[check]]\nname = \"c-{i}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = 9 }}\n"))
            .collect();
        cluster.operator(leader)?.apply(ApplyRequest { source_name: "bench.toml".into(), toml, dry_run: false }).await?;
        // Results stream into a mesh whose nodes all hold the declaration
        // (the steady state measured here).
        let declared = cluster.status(leader).await.and_then(|s| s.applied_index).ok_or_else(|| anyhow::anyhow!("no status from the leader"))?;
        for id in [1, 2, 3] {
            cluster.wait_applied(id, declared).await?;
        }
        let outcome = vantage_common::Outcome::new("tcp", "127.0.0.1:9", vantage_common::Status::Pass, None, "127.0.0.1:9 accepts connections");
        let proto_outcome = vantage_proto::v1::Outcome::from(&outcome);
        let per_agent = results.div_ceil(agents).div_ceil(batch);
        let interval = (rate > 0).then(|| Duration::from_secs_f64((agents * batch) as f64 / rate as f64));
        let addr = cluster.nodes[&leader].addr.to_string();
        // Each session's first batch (sent once the session is open and
        // its checks assigned) is not measured: timing starts when every
        // agent has had one acknowledged.
        let warmed = Arc::new(tokio::sync::Barrier::new(agents + 1));
        let mut tasks = Vec::new();
        for a in 0..agents {
            let region = ["ru", "eu", "us"][a % 3];
            let tls = ReloadingTls::load(cluster.issue(&Identity::Agent { region: region.into(), name: format!("sim-{a}") })?)?;
            let channel = vantage_common::transport::channel(&addr, tls)?;
            let proto_outcome = proto_outcome.clone();
            let warmed = warmed.clone();
            tasks.push(tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                tx.send(AgentMessage { msg: Some(Out::Hello(Hello { version: "bench".into(), capabilities: vec![], spool_id: 1000 + a as u64 })) }).await?;
                let mut inbound = AgentServiceClient::new(channel).session(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
                let mut latencies = Vec::with_capacity(per_agent);
                let mut seq = 0u64;
                let mut ticker = interval.map(|i| {
                    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i.mul_f64(a as f64 / agents as f64), i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                for n in 0..=per_agent {
                    if n == 1 {
                        warmed.wait().await;
                    }
                    if let Some(t) = ticker.as_mut().filter(|_| n > 0) {
                        t.tick().await;
                    }
                    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
                    let records = (0..batch)
                        .map(|i| {
                            seq += 1;
                            ResultRecord { seq, check: format!("c-{}", (seq as usize + i) % checks), started_at_ms: now_ms, outcome: Some(proto_outcome.clone()), trace_parent: String::new() }
                        })
                        .collect();
                    let t0 = Instant::now();
                    tx.send(AgentMessage { msg: Some(Out::Batch(ResultBatch { results: records })) }).await?;
                    loop {
                        match inbound.message().await? {
                            Some(m) => match m.msg {
                                Some(In::Ack(ack)) if ack.seq >= seq => break,
                                Some(In::Redirect(r)) => anyhow::bail!("redirected to {}", r.leader_addr),
                                _ => {}
                            },
                            None => anyhow::bail!("session closed"),
                        }
                    }
                    if n > 0 {
                        latencies.push(t0.elapsed());
                    }
                }
                anyhow::Ok(latencies)
            }));
        }
        tokio::time::timeout(Duration::from_secs(120), warmed.wait())
            .await
            .map_err(|_| anyhow::anyhow!("sessions not all open after 120 s"))?;
        let started = Instant::now();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let wall = started.elapsed();
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let committed = latencies.len() * batch;
        println!("vantage-bench ingest: {agents} agent sessions -> 3 coordinators (mTLS gRPC, Raft, sled), loopback");
        println!("  checks declared   {checks} (x 3 regions)");
        println!("  results/batch     {batch}");
        println!("  target rate       {}", if rate == 0 { "unlimited".into() } else { format!("{rate} results/s") });
        println!("  committed         {committed} results in {} batches", latencies.len());
        println!("  wall              {:.2} s", wall.as_secs_f64());
        println!("  throughput        {:.0} results/s", committed as f64 / wall.as_secs_f64());
        println!("  ack p50           {:.1} ms", pct(0.50).as_secs_f64() * 1000.0);
        println!("  ack p99           {:.1} ms", pct(0.99).as_secs_f64() * 1000.0);
        println!("  ack max           {:.1} ms", latencies[latencies.len() - 1].as_secs_f64() * 1000.0);
        Ok(())
    })
}
