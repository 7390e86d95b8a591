//! One coordinator node: Raft over sled, the gRPC services on one mTLS
//! listener, and writes that reach a follower forwarded to the leader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::RwLock;
use tonic::transport::Channel;
use vantage_common::identity::Identity;
use vantage_common::tls::ReloadingTls;
use vantage_common::transport;
use vantage_proto::v1::agent_service_server::AgentServiceServer;
use vantage_proto::v1::operator_service_server::OperatorServiceServer;
use vantage_proto::v1::raft_service_client::RaftServiceClient;
use vantage_proto::v1::raft_service_server::RaftServiceServer;

use crate::config::CoordinatorConfig;
use crate::grpc::{AgentApi, OperatorApi, PeerApi};
use crate::raft::log_store::LogStore;
use crate::raft::network::{LastContact, Network, decode, encode};
use crate::raft::state_machine::{Applied, StateMachineStore};
use crate::raft::types::{Node, NodeId, Raft};
use crate::sessions::Sessions;
use crate::state::{Command, CommandResult};

/// How long a write may wait for a leader (elections take seconds on WAN
/// timers).
const WRITE_DEADLINE: Duration = Duration::from_secs(15);

/// A change proposed to the leader: a state command or a membership change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// Apply a command to the replicated state.
    Write(Command),
    /// Add a node as learner and, unless `learner_only`, promote it to voter.
    AddMember {
        /// Its id.
        id: NodeId,
        /// Its address.
        addr: String,
        /// Stop at learner.
        learner_only: bool,
    },
    /// Remove a node (voter or learner).
    RemoveMember {
        /// Its id.
        id: NodeId,
    },
}

/// What a proposal produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// Result of a state command.
    Written(CommandResult),
    /// Membership after a change: (voters, learners).
    Membership(Vec<NodeId>, Vec<NodeId>),
}

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// No leader could be reached before the deadline.
    #[error("no leader available: {0}")]
    NoLeader(String),
    /// The proposal was refused (bad membership change, ...).
    #[error("{0}")]
    Refused(String),
    /// The node is shutting down or broken.
    #[error("raft failure: {0}")]
    Fatal(String),
}

/// A running coordinator.
pub struct Coordinator {
    /// Node id.
    pub id: NodeId,
    /// Advertised address.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// Applied replicated state.
    pub applied: Arc<RwLock<Applied>>,
    /// Our mTLS material.
    pub tls: Arc<ReloadingTls>,
    /// Last contact per peer (leader's view).
    pub last_contact: LastContact,
    /// Agent sessions (on the leader).
    pub sessions: Sessions,
    /// Fast-confirmation rate limits (on the leader).
    pub confirmations: crate::confirm::Confirmations,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Agent heartbeat interval.
    pub heartbeat: Duration,
    leaders: Mutex<HashMap<String, RaftServiceClient<Channel>>>,
    _db: sled::Db,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the data directory and starts Raft.
    pub async fn start(config: &CoordinatorConfig) -> anyhow::Result<Arc<Self>> {
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
        let db = sled::open(config.data_dir.join("raft.sled"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.data_dir.display()))?;
        let log = LogStore::open(&db)?;
        let sm = StateMachineStore::open(&db)
            .await
            .map_err(|e| anyhow::anyhow!("state machine: {e}"))?;
        let applied = sm.applied();
        let network = Network::new(tls.clone());
        let last_contact = network.last_contact();
        let raft_config = Arc::new(config.raft.openraft()?);
        let raft = Raft::new(config.node_id, raft_config, network, log, sm).await?;
        Ok(Arc::new(Coordinator {
            id: config.node_id,
            addr: config.advertised(),
            raft,
            applied,
            tls,
            last_contact,
            sessions: Sessions::default(),
            confirmations: Default::default(),
            metrics: Default::default(),
            heartbeat: Duration::from_millis(config.agents.heartbeat_ms),
            leaders: Mutex::new(HashMap::new()),
            _db: db,
        }))
    }

    /// The leader's housekeeping, run on every node (it acts only while the
    /// node leads): expire silent sessions, mark absent agents gone, refresh
    /// last-seen times, push changed assignments.
    pub async fn housekeeping(self: Arc<Self>) {
        let tick = (self.heartbeat / 2).max(Duration::from_millis(50));
        let timeout = self.heartbeat * 3;
        // Log time for the vote (staleness) advances every ~5 s.
        let clock_every = (5000 / tick.as_millis().max(1)).max(1) as u64;
        let refresh_every =
            (Duration::from_secs(30).as_millis() / tick.as_millis().max(1)).max(1) as u64;
        let mut leading_since: Option<tokio::time::Instant> = None;
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(tick).await;
            ticks += 1;
            if self.raft.current_leader().await != Some(self.id) {
                if leading_since.take().is_some() {
                    tracing::info!("no longer leading: closing agent sessions");
                }
                self.sessions.close_all();
                continue;
            }
            let since = *leading_since.get_or_insert_with(tokio::time::Instant::now);
            let now_ms = vantage_common::clock::now_ms();
            let mut gone = self.sessions.expire(timeout);
            for name in &gone {
                tracing::warn!(agent = %name, "agent missed 3 heartbeats: its checks move");
            }
            let live = self.sessions.names();
            let mut repair = Vec::new();
            {
                let applied = self.applied.read().await;
                let timeout_ms = timeout.as_millis() as i64;
                for (name, a) in &applied.state.agents {
                    let has_session = live.contains(name);
                    if a.connected
                        && !has_session
                        && since.elapsed() > timeout
                        && now_ms - a.last_seen_ms > timeout_ms
                    {
                        // Connected to a previous leader, never came here.
                        gone.push(name.clone());
                    }
                    if !a.connected && has_session {
                        // A stale close raced with a reconnect.
                        repair.push(name.clone());
                    }
                }
            }
            gone.sort();
            gone.dedup();
            let mut commands: Vec<Command> = gone
                .into_iter()
                .map(|name| Command::AgentGone {
                    name,
                    at_ms: now_ms,
                })
                .collect();
            if ticks.is_multiple_of(clock_every) {
                commands.push(Command::Tick { at_ms: now_ms });
            }
            if ticks.is_multiple_of(refresh_every) && !live.is_empty() {
                commands.push(Command::AgentsSeen {
                    names: live,
                    at_ms: now_ms,
                });
            } else if !repair.is_empty() {
                commands.push(Command::AgentsSeen {
                    names: repair,
                    at_ms: now_ms,
                });
            }
            if !commands.is_empty()
                && let Err(e) = self.write(Command::Batch(commands)).await
            {
                tracing::warn!(error = %e, "could not record agent liveness");
            }
            self.sessions
                .push_assignments(&self.applied.read().await.state);
        }
    }

    /// Serves the gRPC services on `listener` until the process ends.
    pub async fn serve(self: &Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        let incoming = transport::incoming(listener, self.tls.clone());
        tokio::spawn(self.clone().housekeeping());
        tokio::spawn(crate::alert::dispatch::run(self.clone()));
        tonic::transport::Server::builder()
            .add_service(
                RaftServiceServer::new(PeerApi::new(self.clone()))
                    .max_decoding_message_size(64 << 20),
            )
            .add_service(OperatorServiceServer::new(OperatorApi::new(self.clone())))
            .add_service(
                AgentServiceServer::new(AgentApi::new(self.clone()))
                    .max_decoding_message_size(crate::grpc::agent_service::MAX_FRAME),
            )
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    }

    /// Applies `command` through Raft, from any node.
    pub async fn write(&self, command: Command) -> Result<CommandResult, ProposeError> {
        match self.propose(Proposal::Write(command)).await? {
            Outcome::Written(result) => Ok(result),
            Outcome::Membership(..) => Err(ProposeError::Fatal("unexpected reply".into())),
        }
    }

    /// Runs `proposal` on the leader: here when this node leads, else
    /// forwarded; retried until a leader answers or the deadline passes.
    pub async fn propose(&self, proposal: Proposal) -> Result<Outcome, ProposeError> {
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        loop {
            let err = match self.propose_here(&proposal).await {
                Ok(outcome) => return Ok(outcome),
                Err(Redirect::Leader(node)) => match self.forward(&node, &proposal).await {
                    Ok(Ok(outcome)) => return Ok(outcome),
                    // The leader moved or is unreachable: find it again.
                    Ok(Err(ProposeError::NoLeader(e))) | Err(ProposeError::NoLeader(e)) => {
                        ProposeError::NoLeader(format!("leader at {}: {e}", node.addr))
                    }
                    Ok(Err(other)) | Err(other) => return Err(other),
                },
                Err(Redirect::Unknown) => ProposeError::NoLeader("no leader elected yet".into()),
                Err(Redirect::Failed(e)) => return Err(e),
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(err);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Tries the proposal on this node's Raft.
    pub async fn propose_here(&self, proposal: &Proposal) -> Result<Outcome, Redirect> {
        match proposal {
            Proposal::Write(command) => {
                let reply = self
                    .raft
                    .client_write(command.clone())
                    .await
                    .map_err(redirect)?;
                Ok(Outcome::Written(reply.data))
            }
            Proposal::AddMember {
                id,
                addr,
                learner_only,
            } => {
                self.raft
                    .add_learner(*id, Node { addr: addr.clone() }, true)
                    .await
                    .map_err(redirect)?;
                if !learner_only {
                    let voters = BTreeSet::from([*id]);
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(voters), false)
                        .await
                        .map_err(redirect)?;
                }
                Ok(self.membership().await)
            }
            Proposal::RemoveMember { id } => {
                let is_voter = self
                    .applied
                    .read()
                    .await
                    .membership
                    .voter_ids()
                    .any(|v| v == *id);
                let ids = BTreeSet::from([*id]);
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(ids)
                } else {
                    ChangeMembers::RemoveNodes(ids)
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(redirect)?;
                Ok(self.membership().await)
            }
        }
    }

    async fn membership(&self) -> Outcome {
        let metrics = self.raft.metrics().borrow().clone();
        let m = metrics.membership_config.membership();
        Outcome::Membership(m.voter_ids().collect(), m.learner_ids().collect())
    }

    async fn forward(
        &self,
        leader: &Node,
        proposal: &Proposal,
    ) -> Result<Result<Outcome, ProposeError>, ProposeError> {
        let mut client = {
            let mut clients = self
                .leaders
                .lock()
                .map_err(|_| ProposeError::Fatal("lock poisoned".into()))?;
            match clients.get(&leader.addr) {
                Some(c) => c.clone(),
                None => {
                    let channel = transport::channel(&leader.addr, self.tls.clone())
                        .map_err(|e| ProposeError::NoLeader(e.to_string()))?;
                    let c = RaftServiceClient::new(channel);
                    clients.insert(leader.addr.clone(), c.clone());
                    c
                }
            }
        };
        let payload = encode(proposal).map_err(|e| ProposeError::Fatal(e.to_string()))?;
        let reply = client
            .forward(payload)
            .await
            .map_err(|s| ProposeError::NoLeader(s.message().to_owned()))?;
        decode(reply.get_ref()).map_err(|e| ProposeError::Fatal(e.to_string()))
    }

    /// Initialises a new cluster with `members` (this node alone when empty).
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<(), ProposeError> {
        let members = if members.is_empty() {
            BTreeMap::from([(
                self.id,
                Node {
                    addr: self.addr.clone(),
                },
            )])
        } else {
            members
        };
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ProposeError::Refused(e.to_string()))
    }
}

/// Why a proposal could not run here.
#[derive(Debug)]
pub enum Redirect {
    /// Another node leads.
    Leader(Node),
    /// No leader is known right now.
    Unknown,
    /// The proposal failed for good.
    Failed(ProposeError),
}

fn redirect(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Redirect {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_node {
            Some(node) => Redirect::Leader(node),
            None => Redirect::Unknown,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Redirect::Failed(ProposeError::Refused(c.to_string()))
        }
        RaftError::Fatal(f) => Redirect::Failed(ProposeError::Fatal(f.to_string())),
    }
}
