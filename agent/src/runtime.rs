//! `vantage-agent run`: the long-running agent. Probing, spooling and the
//! coordinator session run side by side; probing continues while no
//! coordinator is reachable, and results wait in the spool.
//!
//! - `runtime/config.rs` — `agent.toml`.
//! - `runtime/scheduler.rs` — assigned checks on their schedules.
//! - `runtime/uplink.rs` — the session with the coordinator cluster.
//! - `runtime/metrics.rs` — Prometheus metrics on `metrics_listen`.

pub mod config;
pub mod metrics;
pub mod scheduler;
pub mod uplink;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use vantage_common::identity::Identity;
use vantage_common::tls::ReloadingTls;
use vantage_proto::v1::{self, ResultRecord};

use self::config::AgentConfig;
use self::scheduler::Finished;
use self::uplink::Uplink;
use crate::context::ProbeContext;
use crate::spool::Spool;

/// Runs the agent until the process ends.
pub async fn run(config: AgentConfig) -> Result<()> {
    vantage_common::limits::raise_nofile();
    let tls = ReloadingTls::load(config.tls.clone())?;
    let Identity::Agent { region, name } = tls.identity() else {
        bail!(
            "{}: not an agent certificate ({})",
            config.tls.cert.display(),
            tls.identity()
        );
    };
    let spool_dir = config.spool_dir.clone();
    let max_bytes = config.spool_max_mb * 1024 * 1024;
    let spool = tokio::task::spawn_blocking(move || Spool::open(&spool_dir, max_bytes))
        .await?
        .with_context(|| format!("opening the spool in {}", config.spool_dir.display()))?;
    tracing::info!(agent = %name, %region, pending = spool.pending(), spool = %config.spool_dir.display(), "agent starting");
    let spool = Arc::new(Mutex::new(spool));
    let metrics = Arc::new(metrics::AgentMetrics::default());
    if let Some(addr) = config.metrics_listen {
        let router = metrics::router(metrics.clone(), spool.clone());
        let bound = vantage_common::metrics::serve(addr, router)
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
        tracing::info!(%bound, "HTTP port: /metrics, /healthz, /readyz");
    }
    let spooled = Arc::new(Notify::new());
    let ctx =
        Arc::new(ProbeContext::new(None, config.source_address, config.resolver).named(&name));
    let (assign_tx, assign_rx) = watch::channel(Vec::new());
    let (done_tx, done_rx) = mpsc::channel::<Finished>(1024);
    let (run_now_tx, run_now_rx) = mpsc::channel(256);

    let controls = config
        .control
        .iter()
        .filter_map(|c| c.assigned().ok())
        .collect();
    let setup = scheduler::Setup {
        agent: name.clone(),
        ctx,
        concurrency: config.concurrency,
        controls,
    };
    tokio::spawn(scheduler::run(
        setup,
        assign_rx,
        run_now_rx,
        done_tx,
        metrics.clone(),
    ));
    tokio::spawn(write_results(
        done_rx,
        spool.clone(),
        spooled.clone(),
        metrics.clone(),
    ));
    Uplink {
        endpoints: config.coordinators.clone(),
        tls,
        spool,
        spooled,
        assignments: assign_tx,
        run_now: run_now_tx,
        metrics,
        batch_size: config.batch_size,
    }
    .run()
    .await;
    Ok(())
}

/// Failures to spool, logged at most every 10 s.
static UNSPOOLED: vantage_common::logging::Throttle =
    vantage_common::logging::Throttle::new(10_000);

/// Finished probes spooled with one sync at most (a group commit).
const GROUP: usize = 256;
/// How long a finished probe waits for others to share its sync: results
/// reach the cluster that much later, and a busy agent syncs ten times a
/// second instead of once per probe.
const GROUP_LINGER: Duration = Duration::from_millis(100);

/// Appends every finished probe to the spool (durably) before anything is
/// sent.
async fn write_results(
    mut done: mpsc::Receiver<Finished>,
    spool: Arc<Mutex<Spool>>,
    spooled: Arc<Notify>,
    metrics: Arc<metrics::AgentMetrics>,
) {
    let mut finished = Vec::with_capacity(GROUP);
    while done.recv_many(&mut finished, GROUP).await > 0 {
        if finished.len() < GROUP {
            tokio::time::sleep(GROUP_LINGER).await;
            while finished.len() < GROUP {
                match done.try_recv() {
                    Ok(f) => finished.push(f),
                    Err(_) => break,
                }
            }
        }
        let mut checks = Vec::with_capacity(finished.len());
        let mut payloads = Vec::with_capacity(finished.len());
        for f in finished.drain(..) {
            metrics.probe(&f.outcome);
            let record = ResultRecord {
                seq: 0,
                check: f.check.clone(),
                started_at_ms: f.started_at_ms,
                outcome: Some(v1::Outcome::from(&f.outcome)),
                trace_parent: f.trace.unwrap_or_default(),
            };
            payloads.push(record.encode_to_vec());
            checks.push(f.check);
        }
        let spool = spool.clone();
        let written = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            spool
                .lock()
                .map(|mut s| s.append_all(&refs))
                .map_err(|e| e.to_string())
        })
        .await;
        match written {
            Ok(Ok(appended)) => {
                if appended.iter().any(Result::is_ok) {
                    spooled.notify_one();
                }
                // Counted as dropped by the spool; on a full disk this is
                // every result, so the log gets one line in a while.
                for (check, e) in checks
                    .iter()
                    .zip(appended)
                    .filter_map(|(c, r)| r.err().map(|e| (c, e)))
                {
                    if let Some(held) = UNSPOOLED.allow() {
                        tracing::error!(%check, error = %e, held_back = held, "could not spool a result: it is dropped")
                    }
                }
            }
            Ok(Err(e)) => {
                if let Some(held) = UNSPOOLED.allow() {
                    tracing::error!(error = %e, held_back = held, "spool lock poisoned: results dropped")
                }
            }
            Err(e) => tracing::error!(error = %e, "spool writer failed"),
        }
    }
}
