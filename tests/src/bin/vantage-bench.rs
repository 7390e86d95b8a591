//! `vantage-bench`: benchmark programs that print figures (never timed
//! assertions in tests).
//!
//! - `probe`: N SMTP+STARTTLS probes at concurrency C against a testkit
//!   server running in a child process on loopback; prints probes/s, CPU ms
//!   per probe (prober and server separately) and peak RSS.
//! - `oneshot`: runs the release `vantage-agent probe smtp` binary against a
//!   testkit server and prints its peak RSS.
//! - `serve-smtp`: the server half of `probe` (prints its port, serves until
//!   stdin closes).
//! - `raft`: K clients write ~200-byte entries through gRPC to a 3-node
//!   loopback coordinator cluster; prints committed entries/s and p50/p99
//!   commit latency, flat out or at a fixed rate.

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
    /// SMTP+STARTTLS probe throughput against a loopback testkit server.
    Probe {
        /// Probes to run.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Probes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// Peak RSS of one-shot `vantage-agent probe smtp` runs (release binary).
    Oneshot {
        /// Runs to make.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The agent binary; default: `vantage-agent` next to this program.
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// Serve scripted SMTP with STARTTLS on loopback until stdin closes.
    ServeSmtp,
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
        Bench::Probe { count, concurrency } => probe(count, concurrency),
        Bench::Oneshot { runs, agent } => oneshot(runs, agent),
        Bench::ServeSmtp => serve_smtp(),
        Bench::Raft {
            clients,
            entries,
            rate,
            size,
            batch,
        } => raft(clients, entries, rate, size, batch.max(1)),
    }
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

fn probe(count: usize, concurrency: usize) -> Result<()> {
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

    let rt = tokio::runtime::Runtime::new()?;
    let before = self_usage();
    let started = Instant::now();
    let (passed, failed) = rt.block_on(async {
        let ctx = Arc::new(ProbeContext::new(Some(Duration::from_secs(15)), None, None));
        let spec = Arc::new(CheckSpec::Smtp(SmtpCheck::new("127.0.0.1", port)));
        let mut results = futures::stream::iter(0..count)
            .map(|_| {
                let (ctx, spec) = (ctx.clone(), spec.clone());
                tokio::spawn(async move { spec.run(&ctx).await })
            })
            .buffer_unordered(concurrency);
        let (mut passed, mut failed) = (0usize, Vec::new());
        while let Some(outcome) = results.next().await {
            match outcome {
                Ok(o) if o.status == Status::Pass && o.details.contains_key("tls_version") => {
                    passed += 1
                }
                Ok(o) => failed.push(o.summary_line()),
                Err(e) => failed.push(format!("task failed: {e}")),
            }
        }
        (passed, failed)
    });
    let wall = started.elapsed();
    let after = self_usage();
    drop(server.stdin.take());
    let (_, server_usage) = wait_with_rusage(server.id());

    let prober_cpu = after.cpu.saturating_sub(before.cpu);
    println!(
        "vantage-bench probe: {count} SMTP+STARTTLS probes, concurrency {concurrency}, loopback"
    );
    println!("  passed            {passed}");
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
    println!(
        "  server CPU        {:.3} ms/probe",
        server_usage.cpu.as_secs_f64() * 1000.0 / count as f64
    );
    println!(
        "  prober peak RSS   {:.1} MiB",
        after.max_rss_kib as f64 / 1024.0
    );
    println!(
        "  server peak RSS   {:.1} MiB",
        server_usage.max_rss_kib as f64 / 1024.0
    );
    if !failed.is_empty() {
        bail!("{} probes did not pass", failed.len());
    }
    Ok(())
}

fn oneshot(runs: usize, agent: Option<PathBuf>) -> Result<()> {
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
    let server = rt.block_on(starttls_server())?;
    let args: Vec<String> = [
        "smtp",
        "127.0.0.1",
        "--port",
        &server.addr.port().to_string(),
        "-o",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut peaks = Vec::new();
    for _ in 0..runs {
        let (run, rss) = vantage_tests::agent::run_measured(&agent, &args);
        if run.code != 0 {
            bail!("probe did not pass: {run:?}");
        }
        peaks.push(rss);
    }
    peaks.sort_unstable();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "vantage-bench oneshot: {} x `vantage-agent probe smtp` (STARTTLS) on loopback",
        runs
    );
    println!("  binary            {}", agent.display());
    println!("  peak RSS min      {:.1} MiB", mib(peaks[0]));
    println!("  peak RSS median   {:.1} MiB", mib(peaks[peaks.len() / 2]));
    println!("  peak RSS max      {:.1} MiB", mib(peaks[peaks.len() - 1]));
    drop(server);
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
