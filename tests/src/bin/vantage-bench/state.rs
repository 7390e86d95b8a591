//! `vantage-bench state`: what the replicated state costs per check once
//! its history is full — 30 days of daily roll-ups, 24 hours of hourly
//! ones, a full recent history — which a benchmark of a few minutes never
//! reaches. Builds the state in this process through the commands a
//! cluster applies (a declaration, agents, result batches, ticks), with a
//! result per check and region every `step` over the last `days`, then
//! prints the process's RSS growth per check, the snapshot stream's size
//! and build time, and the cost of one more result.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, anyhow};
use vantage_common::clock::now_ms;
use vantage_common::{FailureClass, Status};
use vantage_coordinator::declared::Declared;
use vantage_coordinator::state::results::StoredResult;
use vantage_coordinator::state::{Command, IncomingResult, State, stream};

use super::proc_usage;

/// What `vantage-bench state` builds.
#[derive(Debug, Clone)]
pub(crate) struct StateBench {
    /// Checks declared.
    pub(crate) checks: usize,
    /// Regions each check runs from.
    pub(crate) regions: usize,
    /// Days of history.
    pub(crate) days: u32,
}

const REGION_NAMES: [&str; 6] = ["ru", "eu", "us", "as", "sa", "af"];
const HOUR_MS: i64 = 3_600_000;

/// A result of check `i` from `region` at `at_ms`; one check in twenty
/// fails from every region during odd hours.
fn result(i: usize, region: &str, at_ms: i64) -> StoredResult {
    let failing = i.is_multiple_of(20) && (at_ms / HOUR_MS) % 2 == 1;
    let target = format!("c{i}.scale.test");
    let (status, class, message, details_json) = if failing {
        (
            Status::Fail,
            Some(FailureClass::Timeout),
            "no answer within 5s".to_owned(),
            "{}".to_owned(),
        )
    } else {
        (
            Status::Pass,
            None,
            format!("{target} A 192.0.2.10"),
            r#"{"records":["192.0.2.10"]}"#.to_owned(),
        )
    };
    StoredResult {
        region: region.to_owned(),
        agent: format!("sim-{region}"),
        started_at_ms: at_ms,
        status,
        class,
        message,
        duration_ms: 3,
        details_json,
        cert_not_after: None,
        phases: Vec::new(),
    }
}

fn rss_kib() -> Result<u64> {
    proc_usage(std::process::id())
        .map(|(_, rss, _)| rss)
        .ok_or_else(|| anyhow!("cannot read /proc/self"))
}

pub(crate) fn run(b: StateBench) -> Result<()> {
    let regions = &REGION_NAMES[..b.regions.clamp(1, REGION_NAMES.len())];
    let region_list = regions
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let toml: String = (0..b.checks)
        .map(|i| {
            format!(
                "[[check]]\nname = \"c{i}\"\nkind = \"dns\"\ntarget = \"c{i}.scale.test\"\ninterval = \"60s\"\nregions = [{region_list}]\n"
            )
        })
        .collect();
    let declared =
        Declared::parse(std::path::Path::new("state.toml"), &toml).map_err(|e| anyhow!("{e}"))?;
    drop(toml);
    let rss0 = rss_kib()?;
    let now = now_ms();
    let start = now - i64::from(b.days) * 24 * HOUR_MS;
    let mut state = State::default();
    state.apply(&Command::ApplyConfig {
        declared: Box::new(declared),
        at_ms: start,
    });
    for (k, region) in regions.iter().enumerate() {
        state.apply(&Command::AgentHello {
            name: format!("sim-{region}"),
            region: (*region).to_owned(),
            version: "bench".into(),
            address: format!("127.0.0.{}:1", k + 1),
            spool_id: 1,
            at_ms: start,
        });
    }
    let rss_declared = rss_kib()?;
    // A round of results every 6 hours up to the last day, then every 20
    // minutes: every daily and hourly bucket, and the recent history, full.
    // Each agent's spool numbers its results.
    let mut seqs = vec![0u64; regions.len()];
    let mut rounds = 0u64;
    let mut results = 0u64;
    let t0 = Instant::now();
    let mut at = start;
    while at < now {
        for (region, seq) in regions.iter().zip(seqs.iter_mut()) {
            for batch in round(b.checks, region, seq, at) {
                state.apply(&batch);
            }
            results += b.checks as u64;
        }
        state.apply(&Command::AgentsSeen {
            names: regions.iter().map(|r| format!("sim-{r}")).collect(),
            at_ms: at,
        });
        state.apply(&Command::Tick { at_ms: at });
        rounds += 1;
        at += if now - at > 24 * HOUR_MS {
            6 * HOUR_MS
        } else {
            HOUR_MS / 3
        };
    }
    let build = t0.elapsed();
    let rss = rss_kib()?;
    // One more round, its batches made beforehand and applying them
    // timed: the steady cost of a result.
    let batches: Vec<Command> = regions
        .iter()
        .zip(seqs.iter_mut())
        .flat_map(|(region, seq)| round(b.checks, region, seq, now))
        .collect();
    let t1 = Instant::now();
    for batch in &batches {
        state.apply(batch);
    }
    let per_result = t1.elapsed().as_secs_f64() * 1e6 / (b.checks * regions.len()) as f64;
    let t2 = Instant::now();
    let mut counter = Counter(0);
    stream::write(&state, &mut counter)?;
    let snapshot = t2.elapsed();
    // The leader's per-check series, as a scrape writes them.
    let t3 = Instant::now();
    let mut text = String::new();
    for family in vantage_coordinator::metrics::checks::Family::ALL {
        family.header(&mut text);
        family.render(&state, None, usize::MAX, &mut text);
    }
    let scrape = t3.elapsed();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per_check = |kib: u64| kib as f64 * 1024.0 / b.checks as f64;
    println!(
        "vantage-bench state: {} checks x {} regions, {} days of history ({rounds} rounds, {results} results applied in {:.1} s)",
        b.checks,
        regions.len(),
        b.days,
        build.as_secs_f64()
    );
    println!(
        "  RSS               {:.1} MiB before, {:.1} MiB declared, {:.1} MiB with history",
        mib(rss0),
        mib(rss_declared),
        mib(rss)
    );
    println!(
        "  per check         {:.0} B declared, {:.0} B of history and vote, {:.0} B in all",
        per_check(rss_declared.saturating_sub(rss0)),
        per_check(rss.saturating_sub(rss_declared)),
        per_check(rss.saturating_sub(rss0))
    );
    println!(
        "  snapshot stream   {:.1} MiB ({:.0} B per check), written in {:.2} s",
        counter.0 as f64 / 1048576.0,
        counter.0 as f64 / b.checks as f64,
        snapshot.as_secs_f64()
    );
    println!("  one more result   {per_result:.2} µs to apply (batches of 500)");
    println!(
        "  per-check series  {:.1} MiB, {} lines, written in {:.0} ms",
        text.len() as f64 / 1048576.0,
        text.lines().count(),
        scrape.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// A result of every check from `region`'s agent at `at_ms`, in batches
/// of 500 as agents send them.
fn round(checks: usize, region: &str, seq: &mut u64, at_ms: i64) -> Vec<Command> {
    let agent = format!("sim-{region}");
    let mut batches = Vec::with_capacity(checks.div_ceil(500));
    let mut i = 0;
    while i < checks {
        let results = (i..checks.min(i + 500))
            .map(|i| {
                *seq += 1;
                IncomingResult {
                    seq: *seq,
                    check: format!("c{i}"),
                    result: result(i, region, at_ms),
                    trace: None,
                }
            })
            .collect::<Vec<_>>();
        i += results.len();
        batches.push(Command::Results {
            agent: agent.clone(),
            spool_id: 1,
            at_ms,
            results,
        });
    }
    batches
}

/// Counts what is written.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
