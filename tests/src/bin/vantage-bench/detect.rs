//! `vantage-bench detect`: onset-to-page latency of real outages and false
//! pages under one-region faults, end to end (agents in three regions on
//! their own loopback sources, a 3-node cluster, a webhook receiver).

use std::time::{Duration, Instant};

use super::percentile;
use anyhow::{Result, bail};
use vantage_proto::v1::{ListIncidentsRequest, StatusRequest};
use vantage_tests::cluster::{Cluster, REGIONS, Timers};
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

/// How the target fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Connections are closed at once (like a refused port).
    Refused,
    /// Connections are accepted and never answered (the probe times out).
    Timeout,
}

fn fault(server: &SmtpServer, mode: Mode, sources: &[&str], on: bool) -> Result<()> {
    for s in sources {
        let ip = s.parse()?;
        match mode {
            Mode::Refused => server.block_from(ip, on),
            Mode::Timeout => server.silence_from(ip, on),
        }
    }
    Ok(())
}

/// Polls `f` every 20 ms for up to `limit`.
async fn until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// All green: verdict OK and no open incident.
async fn calm(cluster: &Cluster) -> bool {
    let Ok(mut op) = cluster.operator(1) else {
        return false;
    };
    let ok = match op.status(StatusRequest::default()).await {
        Ok(r) => r.into_inner().checks.iter().all(|c| c.verdict == "ok"),
        Err(_) => false,
    };
    let open = match op.list_incidents(ListIncidentsRequest { all: false }).await {
        Ok(r) => r.into_inner().incidents.len(),
        Err(_) => 1,
    };
    ok && open == 0
}

fn pages_since(receiver: &Receiver, since: Instant) -> Vec<Instant> {
    receiver
        .received("/hook")
        .into_iter()
        .filter(|r| r.at >= since && r.key.as_deref().is_some_and(|k| k.contains("/critical/")))
        .map(|r| r.at)
        .collect()
}

/// Runs the benchmark.
pub(crate) fn detect(
    rounds: usize,
    false_rounds: usize,
    interval_s: u64,
    mode: Mode,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = SmtpServer::start(SmtpScript::default()).await?;
        let receiver = Receiver::start().await?;
        let mut cluster = Cluster::start(3, Timers::default()).await?;
        let port = server.addr.port();
        let toml = format!(
            "[[check]]\nname = \"mx\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"{interval_s}s\"\ntimeout = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nfail_after = 2\nrecover_after = 2\nparams = {{ port = {port}, tls = \"none\" }}\n\n[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nsettings = {{ url = \"{}\" }}\n\n[[route]]\nname = \"all\"\nseverities = [\"critical\", \"info\"]\nchannels = [\"hook\"]\n",
            receiver.url("hook")
        );
        cluster.apply(&toml).await?;
        cluster.spawn_regions().await?;
        let settle = Duration::from_secs(20 * interval_s);
        until("all green", settle, || calm(&cluster)).await?;
        let all: Vec<&str> = REGIONS.iter().map(|r| r.2).collect();
        let mut latencies = Vec::new();
        for round in 0..rounds {
            until("all green", settle, || calm(&cluster)).await?;
            // Onsets spread over the probe schedule.
            let offset = Duration::from_millis((round as u64 * 3_733) % (interval_s * 1000));
            tokio::time::sleep(offset).await;
            let onset = Instant::now();
            fault(&server, mode, &all, true)?;
            until("the page", settle, || async { !pages_since(&receiver, onset).is_empty() }).await?;
            let page = pages_since(&receiver, onset)[0];
            let latency = page.duration_since(onset).as_secs_f64();
            println!("  outage {:>2}: page after {latency:5.2} s", round + 1);
            latencies.push(latency);
            fault(&server, mode, &all, false)?;
        }
        let mut false_pages = 0;
        for round in 0..false_rounds {
            until("all green", settle, || calm(&cluster)).await?;
            let start = Instant::now();
            fault(&server, mode, &all[..1], true)?;
            tokio::time::sleep(Duration::from_secs(6 * interval_s)).await;
            fault(&server, mode, &all[..1], false)?;
            until("all green", settle, || calm(&cluster)).await?;
            let pages = pages_since(&receiver, start).len();
            println!("  one-region fault {:>2} (ru, {} s): {pages} pages", round + 1, 6 * interval_s);
            false_pages += pages;
        }
        latencies.sort_by(f64::total_cmp);
        println!("vantage-bench detect: {mode:?} outages, interval {interval_s} s, fail_after 2, 3 regions, quorum majority");
        println!("  outages           {}", latencies.len());
        println!("  onset-to-page p50 {:.2} s", percentile(&latencies, 0.50));
        println!("  onset-to-page p99 {:.2} s", percentile(&latencies, 0.99));
        println!("  onset-to-page max {:.2} s", latencies.last().copied().unwrap_or(f64::NAN));
        println!("  false pages       {false_pages} in {false_rounds} one-region faults");
        Ok(())
    })
}
