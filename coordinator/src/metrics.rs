//! Prometheus metrics of a coordinator, served on its HTTP port (see
//! `vantage_common::metrics`): Raft (term, leader, log and applied
//! indexes), verdicts by state, impaired vantages, agents and sessions,
//! incidents, the outbox, alert deliveries by sink and outcome, results
//! ingested. Gauges of replicated state are read at scrape time.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::node::Coordinator;
use crate::state::alerts::DeliveryState;
use crate::verdict::SEVERITY;

use vantage_common::metrics::{Labels, labels};

/// The coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Alert deliveries by sink kind and outcome (`delivered`, `failed`).
    pub deliveries: Family<Labels, Counter>,
    /// Results applied from agent batches (on the leader).
    pub results: Counter,
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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vantage");
        let m = Metrics {
            deliveries: Family::default(),
            results: Counter::default(),
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

    /// Reads the live gauges from `node` and encodes everything.
    pub async fn render(&self, node: &Coordinator) -> String {
        let raft = node.raft.metrics().borrow().clone();
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.raft_term.set(i(raft.current_term));
        self.raft_leader.set(raft.current_leader.map_or(0, i));
        self.raft_is_leader
            .set(i64::from(raft.current_leader == Some(node.id)));
        self.raft_last_log.set(raft.last_log_index.map_or(0, i));
        self.raft_applied
            .set(raft.last_applied.map_or(0, |l| i(l.index)));
        self.sessions.set(i(node.sessions.names().len() as u64));
        {
            let applied = node.applied.read().await;
            let state = &applied.state;
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
            let pending = state
                .alerts
                .outbox
                .values()
                .filter(|d| d.state == DeliveryState::Pending)
                .count();
            self.outbox_pending.set(i(pending as u64));
        }
        vantage_common::metrics::encode(&self.registry)
    }
}

/// The HTTP routes of `node`: `/metrics`, `/healthz`, `/readyz` (ready when
/// a leader is known), and the status page and API (`web.rs`).
pub fn router(node: Arc<Coordinator>) -> axum::Router {
    let for_metrics = node.clone();
    let pages = crate::web::routes(node.clone());
    vantage_common::metrics::router(
        Arc::new(move || {
            let node = for_metrics.clone();
            Box::pin(async move { node.metrics.render(&node).await })
        }),
        Arc::new(move || {
            let node = node.clone();
            Box::pin(async move {
                let raft = node.raft.metrics().borrow().clone();
                match raft.current_leader {
                    None => Err("no leader known".to_owned()),
                    Some(_) => Ok(()),
                }
            })
        }),
    )
    .merge(pages)
}
