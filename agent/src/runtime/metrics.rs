//! Prometheus metrics of an agent, on its HTTP port (`metrics_listen`):
//! probe durations by kind and phase, results by kind, status and class,
//! spool depth and drops, the coordinator session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vantage_common::Outcome;

use crate::spool::Spool;

use vantage_common::metrics::{Labels, labels};

fn probe_buckets() -> Histogram {
    // 5 ms .. ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    results: Family<Labels, Counter>,
    spool_pending: Gauge,
    spool_dropped: Counter,
    dropped_seen: AtomicU64,
    spool_renewals: Counter,
    renewals_seen: AtomicU64,
    /// 1 while a session with the leader is open.
    pub connected: Gauge,
    /// Sessions opened.
    pub sessions: Counter,
    /// Checks assigned (controls included).
    pub checks: Gauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vantage");
        let m = AgentMetrics {
            registry: Registry::default(),
            durations: Family::new_with_constructor(probe_buckets),
            results: Family::default(),
            spool_pending: Gauge::default(),
            spool_dropped: Counter::default(),
            dropped_seen: AtomicU64::new(0),
            spool_renewals: Counter::default(),
            renewals_seen: AtomicU64::new(0),
            connected: Gauge::default(),
            sessions: Counter::default(),
            checks: Gauge::default(),
        };
        registry.register(
            "probe_duration_seconds",
            "Probe wall time by kind and phase (phase=\"total\" for the whole probe)",
            m.durations.clone(),
        );
        registry.register(
            "probe_results",
            "Probe results by kind, status and failure class",
            m.results.clone(),
        );
        registry.register(
            "spool_pending",
            "Results spooled and not yet acknowledged",
            m.spool_pending.clone(),
        );
        registry.register(
            "spool_dropped",
            "Results dropped: the spool was full (the oldest), or a result could not be written (a full disk)",
            m.spool_dropped.clone(),
        );
        registry.register(
            "spool_renewals",
            "Times the spool took a new identity because its state was lost or older than the cluster's",
            m.spool_renewals.clone(),
        );
        registry.register(
            "session_connected",
            "1 while a session with the coordinator leader is open",
            m.connected.clone(),
        );
        registry.register(
            "sessions_opened",
            "Sessions opened with a coordinator",
            m.sessions.clone(),
        );
        registry.register(
            "checks_running",
            "Checks this agent runs (control checks included)",
            m.checks.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// Counts one finished probe.
    pub fn probe(&self, outcome: &Outcome) {
        let kind = outcome.kind.as_str();
        let class = outcome.class.map(|c| c.to_string()).unwrap_or_default();
        self.results
            .get_or_create(&labels(&[
                ("kind", kind),
                ("status", &outcome.status.to_string()),
                ("class", &class),
            ]))
            .inc();
        self.durations
            .get_or_create(&labels(&[("kind", kind), ("phase", "total")]))
            .observe(outcome.duration_ms as f64 / 1000.0);
        for (phase, took) in outcome.phases.iter() {
            self.durations
                .get_or_create(&labels(&[("kind", kind), ("phase", phase)]))
                .observe(took.as_secs_f64());
        }
    }

    /// Reads the spool gauges and encodes everything.
    pub fn render(&self, spool: &Mutex<Spool>) -> String {
        if let Ok(s) = spool.lock() {
            self.spool_pending
                .set(i64::try_from(s.pending()).unwrap_or(i64::MAX));
            for (now, seen, counter) in [
                (s.dropped(), &self.dropped_seen, &self.spool_dropped),
                (s.renewals(), &self.renewals_seen, &self.spool_renewals),
            ] {
                counter.inc_by(now.saturating_sub(seen.swap(now, Ordering::Relaxed)));
            }
        }
        vantage_common::metrics::encode(&self.registry)
    }
}

/// The HTTP routes of an agent: `/metrics`, `/healthz`, `/readyz` (ready
/// while a session with the leader is open).
pub fn router(
    metrics: Arc<AgentMetrics>,
    spool: Arc<Mutex<Spool>>,
) -> vantage_common::metrics::Router {
    let for_ready = metrics.clone();
    vantage_common::metrics::router(
        Arc::new(move |_query| {
            let (metrics, spool) = (metrics.clone(), spool.clone());
            Box::pin(async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&spool))
                    .await
                    .unwrap_or_default();
                vantage_common::metrics::Body::from(text)
            })
        }),
        Arc::new(move || {
            let connected = for_ready.connected.get() == 1;
            Box::pin(async move {
                if connected {
                    Ok(())
                } else {
                    Err("no session with the coordinator leader".to_owned())
                }
            })
        }),
    )
}
