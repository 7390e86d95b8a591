//! One coordinator node: Raft over sled, and the narrow handles the rest of
//! the process is given — the applied state to read ([`Replica`]), the
//! [`Proposer`] to write through Raft from any node, the agent sessions —
//! plus the leader-side loops that use them.
//!
//! - `node/propose.rs` — proposals run here when leading, else forwarded
//!   to the leader; membership changes; cluster initialisation.
//! - `node/housekeeping.rs` — the leader's session expiry, liveness, log
//!   time and assignment pushes.
//! - `node/delivery.rs` — the leader's sender of the replicated outbox.
//! - `node/remote_write.rs` — the leader's sender of results as samples.
//!
//! Serving the gRPC services is the composition root's (`daemon.rs`).

pub mod delivery;
pub mod housekeeping;
pub mod propose;
pub mod remote_write;

use std::sync::Arc;
use std::time::Duration;

use vantage_common::identity::Identity;
use vantage_common::tls::ReloadingTls;

pub use self::propose::{Outcome, Proposal, ProposeError, Proposer, Redirect};
use crate::config::CoordinatorConfig;
use crate::confirm::Confirmations;
use crate::metrics::Metrics;
use crate::raft::log_store::LogStore;
use crate::raft::network::{LastContact, Network};
pub use crate::raft::state_machine::Replica;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::{NodeId, Raft};
use crate::sessions::Sessions;

/// sled's page cache for the Raft log (its default is 1 GiB).
const SLED_CACHE_BYTES: u64 = 32 << 20;

/// A running coordinator: its parts, each handed out on its own.
pub struct Coordinator {
    /// Node id.
    pub id: NodeId,
    /// The Raft handle (cluster status, peer RPCs).
    pub raft: Raft,
    /// Applied replicated state.
    pub applied: Replica,
    /// Writes through Raft from this node.
    pub proposer: Proposer,
    /// Our mTLS material.
    pub tls: Arc<ReloadingTls>,
    /// Last contact per peer (leader's view).
    pub last_contact: LastContact,
    /// Agent sessions (on the leader).
    pub sessions: Arc<Sessions>,
    /// Fast-confirmation rate limits (on the leader).
    pub confirmations: Arc<Confirmations>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Agent heartbeat interval.
    pub heartbeat: Duration,
    /// A reader of the Raft log (remote-write reads applied entries).
    pub log: LogStore,
    _db: sled::Db,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the data directory and starts Raft.
    pub async fn start(config: &CoordinatorConfig) -> anyhow::Result<Self> {
        let tls = ReloadingTls::load(config.tls.clone())?;
        match tls.identity() {
            Identity::Coordinator { id } if id == config.node_id => {}
            other => anyhow::bail!(
                "{}: certificate is for {other}, but node_id is {}",
                config.tls.cert.display(),
                config.node_id
            ),
        }
        std::fs::create_dir_all(&config.data_dir)?;
        // sled's page cache defaults to 1 GiB; the log is written once and
        // read back only to replicate or apply it.
        let db = sled::Config::new()
            .path(config.data_dir.join("raft.sled"))
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.data_dir.display()))?;
        let log = LogStore::open(&db, &config.data_dir)
            .map_err(|e| anyhow::anyhow!("Raft log in {}: {e}", config.data_dir.display()))?;
        let sm = StateMachineStore::open(&db, &config.data_dir)
            .await
            .map_err(|e| anyhow::anyhow!("state machine: {e}"))?;
        let applied = sm.applied();
        let network = Network::new(tls.clone());
        let last_contact = network.last_contact();
        let raft_config = Arc::new(config.raft.openraft()?);
        let raft = Raft::new(config.node_id, raft_config, network, log.clone(), sm).await?;
        let proposer = Proposer::new(
            config.node_id,
            config.advertised(),
            raft.clone(),
            tls.clone(),
        );
        Ok(Coordinator {
            id: config.node_id,
            raft,
            applied,
            proposer,
            tls,
            last_contact,
            sessions: Arc::default(),
            confirmations: Arc::default(),
            metrics: Arc::default(),
            heartbeat: Duration::from_millis(config.agents.heartbeat_ms),
            log,
            _db: db,
        })
    }
}
