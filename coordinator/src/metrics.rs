//! Prometheus metrics of a coordinator, served on its HTTP port (see
//! `vantage_common::metrics`): Raft (term, leader, log and applied
//! indexes), verdicts by state, impaired vantages, agents and sessions,
//! incidents, the outbox, alert deliveries by sink and outcome, results
//! ingested. Gauges of replicated state are read at scrape time. The
//! leader adds the per-check series (`metrics/checks.rs`).

pub mod checks;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::raft::state_machine::Replica;
use crate::raft::types::Raft;
use crate::sessions::Sessions;
use crate::verdict::SEVERITY;

use vantage_common::metrics::{Labels, labels};

/// Checks per chunk of a per-check family (up to about 0.5 MiB of text; the
/// state is read once per chunk).
const CHUNK: usize = 1000;

/// The coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Alert deliveries by sink kind and outcome (`delivered`, `failed`).
    pub deliveries: Family<Labels, Counter>,
    /// Results applied from agent batches (on the leader).
    pub results: Counter,
    /// Remote-write samples by outcome (`sent`, `dropped`).
    remote_write_by_outcome: Family<Labels, Counter>,
    /// Remote-write requests that failed and were retried.
    pub remote_write_failures: Counter,
    /// Log entries compacted before their samples were sent.
    pub remote_write_skipped: Counter,
    /// The log index up to which samples were sent (on the leader).
    pub remote_write_index: Gauge,
    raft_term: Gauge,
    raft_leader: Gauge,
    raft_is_leader: Gauge,
    raft_last_log: Gauge,
    raft_applied: Gauge,
    verdicts: Family<Labels, Gauge>,
    impaired: Gauge,
    agents: Family<Labels, Gauge>,
    sessions: Gauge,
    incidents_open: Gauge,
    outbox_pending: Gauge,
    snapshot_bytes: Gauge,
    snapshot_index: Gauge,
    snapshot_build: Gauge<f64, std::sync::atomic::AtomicU64>,
    snapshot_install: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vantage");
        let m = Metrics {
            deliveries: Family::default(),
            results: Counter::default(),
            remote_write_by_outcome: Family::default(),
            remote_write_failures: Counter::default(),
            remote_write_skipped: Counter::default(),
            remote_write_index: Gauge::default(),
            raft_term: Gauge::default(),
            raft_leader: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_last_log: Gauge::default(),
            raft_applied: Gauge::default(),
            verdicts: Family::default(),
            impaired: Gauge::default(),
            agents: Family::default(),
            sessions: Gauge::default(),
            incidents_open: Gauge::default(),
            outbox_pending: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_index: Gauge::default(),
            snapshot_build: Gauge::default(),
            snapshot_install: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "alert_deliveries",
            "Alert delivery attempts by sink kind and outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "results_ingested",
            "Results applied from agent batches",
            m.results.clone(),
        );
        registry.register(
            "remote_write_samples",
            "Samples sent to the remote-write receiver (sent) or refused by it (dropped)",
            m.remote_write_by_outcome.clone(),
        );
        registry.register(
            "remote_write_failures",
            "Remote-write requests that failed and were retried",
            m.remote_write_failures.clone(),
        );
        registry.register(
            "remote_write_skipped_entries",
            "Log entries compacted before their samples were sent",
            m.remote_write_skipped.clone(),
        );
        registry.register(
            "remote_write_sent_index",
            "Log index up to which samples were sent (on the leader)",
            m.remote_write_index.clone(),
        );
        registry.register("raft_term", "Current Raft term", m.raft_term.clone());
        registry.register(
            "raft_leader_id",
            "Node id of the current leader (0: none known)",
            m.raft_leader.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 while this node leads",
            m.raft_is_leader.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            m.raft_last_log.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Index of the last entry applied to this node's state",
            m.raft_applied.clone(),
        );
        registry.register(
            "verdicts",
            "Checks by current verdict (ok, warning, divergent, blind, regional, outage)",
            m.verdicts.clone(),
        );
        registry.register(
            "impaired_regions",
            "Regions whose vantage is impaired (their results do not vote)",
            m.impaired.clone(),
        );
        registry.register(
            "agents",
            "Known agents by connection state",
            m.agents.clone(),
        );
        registry.register(
            "agent_sessions",
            "Agent sessions held by this node",
            m.sessions.clone(),
        );
        registry.register("incidents_open", "Open incidents", m.incidents_open.clone());
        registry.register(
            "alert_outbox_pending",
            "Notifications not yet delivered",
            m.outbox_pending.clone(),
        );
        registry.register(
            "raft_snapshot_bytes",
            "Size of the latest snapshot built or installed here",
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "Log index the latest snapshot covers",
            m.snapshot_index.clone(),
        );
        registry.register(
            "raft_snapshot_build_seconds",
            "Time the latest snapshot built here took (0: installed)",
            m.snapshot_build.clone(),
        );
        registry.register(
            "raft_snapshot_install_seconds",
            "Time the latest snapshot installed here took (0: built here)",
            m.snapshot_install.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts one delivery attempt.
    pub fn delivery(&self, sink: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.deliveries
            .get_or_create(&labels(&[("sink", sink), ("outcome", outcome)]))
            .inc();
    }

    /// Counts `n` remote-write samples sent or dropped.
    pub fn remote_write_samples(&self, sent: bool, n: u64) {
        let outcome = if sent { "sent" } else { "dropped" };
        self.remote_write_by_outcome
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc_by(n);
    }

    /// Reads the live gauges and encodes everything; on the leader, the
    /// per-check series follow, streamed, unless `per_check` is false.
    pub async fn render(
        &self,
        raft: &Raft,
        sessions: &Sessions,
        applied: &Replica,
        per_check: bool,
    ) -> Body {
        let raft = raft.metrics().borrow().clone();
        let leads = raft.current_leader == Some(raft.id);
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.raft_term.set(i(raft.current_term));
        self.raft_leader.set(raft.current_leader.map_or(0, i));
        self.raft_is_leader.set(i64::from(leads));
        self.raft_last_log.set(raft.last_log_index.map_or(0, i));
        self.raft_applied
            .set(raft.last_applied.map_or(0, |l| i(l.index)));
        self.sessions.set(i(sessions.names().len() as u64));
        {
            let applied = applied.read().await;
            let state = &applied.state;
            let snap = applied.snapshot;
            self.snapshot_bytes.set(i(snap.bytes));
            self.snapshot_index.set(i(snap.index));
            self.snapshot_build.set(snap.build_ms as f64 / 1000.0);
            self.snapshot_install.set(snap.install_ms as f64 / 1000.0);
            for name in SEVERITY {
                self.verdicts
                    .get_or_create(&labels(&[("verdict", name)]))
                    .set(0);
            }
            for v in state.verdicts.values() {
                self.verdicts
                    .get_or_create(&labels(&[("verdict", v.verdict.name())]))
                    .inc();
            }
            self.impaired.set(i(state.impaired.len() as u64));
            let connected = state.agents.values().filter(|a| a.connected).count();
            self.agents
                .get_or_create(&labels(&[("state", "connected")]))
                .set(i(connected as u64));
            self.agents
                .get_or_create(&labels(&[("state", "disconnected")]))
                .set(i((state.agents.len() - connected) as u64));
            self.incidents_open
                .set(i(state.incidents.open.len() as u64));
            let pending = state.outbox.pending().count();
            self.outbox_pending.set(i(pending as u64));
        }
        let mut text = vantage_common::metrics::encode(&self.registry);
        if !leads || !per_check {
            return Body::from(text);
        }
        // The registry's text ends with `# EOF`; the per-check families go
        // before it.
        let eof = text.split_off(text.rfind("# EOF\n").unwrap_or(text.len()));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, Infallible>>(2);
        let applied = applied.clone();
        tokio::spawn(async move {
            if tx.send(Ok(text)).await.is_err() {
                return;
            }
            for family in checks::Family::ALL {
                let mut chunk = String::new();
                family.header(&mut chunk);
                let mut after: Option<String> = None;
                loop {
                    after = {
                        let applied = applied.read().await;
                        family.render(&applied.state, after.as_deref(), CHUNK, &mut chunk)
                    };
                    if tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                        return; // the scraper went away
                    }
                    if after.is_none() {
                        break;
                    }
                }
            }
            let _ = tx.send(Ok(eof)).await;
        });
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// `/metrics` (these metrics, gauges read at scrape time from `raft`,
/// `sessions` and `applied`; `/metrics?checks=false` without the leader's
/// per-check series), `/healthz`, and `/readyz` (ready when a leader is
/// known).
pub fn routes(
    metrics: Arc<Metrics>,
    raft: Raft,
    sessions: Arc<Sessions>,
    applied: Replica,
) -> axum::Router {
    let ready_raft = raft.clone();
    vantage_common::metrics::router(
        Arc::new(move |query: Option<String>| {
            let (metrics, raft, sessions, applied) = (
                metrics.clone(),
                raft.clone(),
                sessions.clone(),
                applied.clone(),
            );
            let per_check = !query
                .unwrap_or_default()
                .split('&')
                .any(|pair| pair == "checks=false");
            Box::pin(async move { metrics.render(&raft, &sessions, &applied, per_check).await })
        }),
        Arc::new(move || {
            let raft = ready_raft.clone();
            Box::pin(async move {
                match raft.metrics().borrow().current_leader {
                    None => Err("no leader known".to_owned()),
                    Some(_) => Ok(()),
                }
            })
        }),
    )
}
