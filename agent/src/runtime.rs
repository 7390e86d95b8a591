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
    let ctx = Arc::new(ProbeContext::new(
        None,
        config.source_address,
        config.resolver,
    ));
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

/// Appends every finished probe to the spool (durably) before anything is
/// sent.
async fn write_results(
    mut done: mpsc::Receiver<Finished>,
    spool: Arc<Mutex<Spool>>,
    spooled: Arc<Notify>,
    metrics: Arc<metrics::AgentMetrics>,
) {
    while let Some(f) = done.recv().await {
        metrics.probe(&f.outcome);
        let record = ResultRecord {
            seq: 0,
            check: f.check.clone(),
            started_at_ms: f.started_at_ms,
            outcome: Some(v1::Outcome::from(&f.outcome)),
            trace_parent: f.trace.clone().unwrap_or_default(),
        };
        let payload = record.encode_to_vec();
        let spool = spool.clone();
        let written = tokio::task::spawn_blocking(move || {
            spool
                .lock()
                .map_err(|e| e.to_string())?
                .append(&payload)
                .map_err(|e| e.to_string())
        })
        .await;
        match written {
            Ok(Ok(_)) => spooled.notify_one(),
            // Counted as dropped by the spool; on a full disk this is every
            // result, so the log gets one line in a while.
            Ok(Err(e)) => {
                if let Some(held) = UNSPOOLED.allow() {
                    tracing::error!(check = %f.check, error = %e, held_back = held, "could not spool a result: it is dropped")
                }
            }
            Err(e) => tracing::error!(error = %e, "spool writer failed"),
        }
    }
}
