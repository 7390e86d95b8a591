//! Proposals to the replicated state from any node: run on this node's
//! Raft when it leads, else forwarded to the leader over the mTLS
//! `RaftService` (as in openraft's grpc example), retried until a leader
//! answers or the deadline passes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use vantage_common::tls::ReloadingTls;
use vantage_common::transport;
use vantage_proto::v1::raft_service_client::RaftServiceClient;

use crate::raft::network::{decode, encode};
use crate::raft::types::{Node, NodeId, Raft};
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

/// The handle that writes: proposes commands and membership changes from
/// this node, and says whether it leads.
#[derive(Clone)]
pub struct Proposer {
    id: NodeId,
    addr: String,
    raft: Raft,
    tls: Arc<ReloadingTls>,
    leaders: Arc<Mutex<HashMap<String, RaftServiceClient<Channel>>>>,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Proposer {
    /// Proposes through `raft` as node `id` at `addr`.
    pub fn new(id: NodeId, addr: String, raft: Raft, tls: Arc<ReloadingTls>) -> Self {
        Proposer {
            id,
            addr,
            raft,
            tls,
            leaders: Arc::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle (leadership, terms, linearizable reads).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Does this node lead now?
    pub async fn leads(&self) -> bool {
        self.raft.current_leader().await == Some(self.id)
    }

    /// Does this node lead, with its state holding everything committed
    /// before its term? A leader's loop acts on the replicated state only
    /// then: until it is, the state may still lack what the previous leader
    /// did (deliveries acknowledged, a cursor moved). `caught_up` is the
    /// loop's own memory of the term it last confirmed.
    pub async fn leads_caught_up(&self, caught_up: &mut Option<u64>) -> bool {
        if !self.leads().await {
            *caught_up = None;
            return false;
        }
        let term = self.raft.metrics().borrow().current_term;
        if *caught_up != Some(term) {
            if self.raft.ensure_linearizable().await.is_err() {
                return false;
            }
            *caught_up = Some(term);
        }
        true
    }

    /// The voters of the membership this node knows.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// The leader as this node knows it: its id and address.
    pub async fn leader(&self) -> Option<(NodeId, Option<String>)> {
        let id = self.raft.current_leader().await?;
        let addr = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        Some((id, addr))
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
                let is_voter = self.voters().contains(id);
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
