//! The cluster and its agents: initialisation, membership, status, the
//! agent registry, revocation.

use std::collections::BTreeMap;

use tonic::{Response, Status};
use vantage_common::clock::now_ms;
use vantage_common::identity::Identity;
use vantage_proto::v1::{
    AddMemberRequest, AgentInfo, ClusterStatusReply, InitClusterReply, InitClusterRequest,
    ListAgentsReply, ListRevokedReply, MembershipReply, NodeStatus, RevokeReply, UnrevokeReply,
};

use super::Reply;
use crate::node::{Outcome, Proposal, Proposer, Replica};
use crate::raft::network::LastContact;
use crate::raft::types::Node;
use crate::state::results::StoredResult;
use crate::state::{Command, CommandResult};

fn membership(outcome: Outcome) -> Reply<MembershipReply> {
    match outcome {
        Outcome::Membership(voters, learners) => {
            Ok(Response::new(MembershipReply { voters, learners }))
        }
        Outcome::Written(_) => Err(Status::internal("unexpected reply to a membership change")),
    }
}

/// Initialises a new cluster with the given members.
pub(super) async fn init(proposer: &Proposer, req: InitClusterRequest) -> Reply<InitClusterReply> {
    let members: BTreeMap<u64, Node> = req
        .members
        .into_iter()
        .map(|m| (m.id, Node { addr: m.addr }))
        .collect();
    proposer.initialize(members).await?;
    Ok(Response::new(InitClusterReply {}))
}

/// Adds a node as learner and, unless `learner_only`, voter.
pub(super) async fn add_member(
    proposer: &Proposer,
    req: AddMemberRequest,
) -> Reply<MembershipReply> {
    let member = req
        .member
        .ok_or_else(|| Status::invalid_argument("member is required"))?;
    if member.id == 0 || member.addr.is_empty() {
        return Err(Status::invalid_argument(
            "member needs an id > 0 and an address",
        ));
    }
    let proposal = Proposal::AddMember {
        id: member.id,
        addr: member.addr,
        learner_only: req.learner_only,
    };
    membership(proposer.propose(proposal).await?)
}

/// Removes a node.
pub(super) async fn remove_member(proposer: &Proposer, id: u64) -> Reply<MembershipReply> {
    membership(proposer.propose(Proposal::RemoveMember { id }).await?)
}

/// This node's view of the cluster: term, leader, indexes, every member's
/// replication lag and last contact.
pub(super) fn status(proposer: &Proposer, last_contact: &LastContact) -> Reply<ClusterStatusReply> {
    let m = proposer.raft().metrics().borrow().clone();
    let contacts = last_contact.lock().map(|c| c.clone()).unwrap_or_default();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let nodes = membership
        .nodes()
        .map(|(id, node)| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index);
            let is_self = *id == m.id;
            NodeStatus {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: if is_self { m.last_log_index } else { matched },
                lag: match (
                    m.last_log_index,
                    if is_self { m.last_log_index } else { matched },
                ) {
                    (Some(last), Some(at)) => Some(last.saturating_sub(at)),
                    (Some(last), None) if m.replication.is_some() => Some(last),
                    _ => None,
                },
                last_contact_ms: if is_self {
                    Some(0)
                } else {
                    contacts.get(id).map(|t| t.elapsed().as_millis() as u64)
                },
            }
        })
        .collect();
    Ok(Response::new(ClusterStatusReply {
        node_id: m.id,
        leader_id: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        commit_index: m.last_applied.map(|l| l.index),
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        state: format!("{:?}", m.state),
        nodes,
    }))
}

fn control_summary(r: &StoredResult) -> String {
    match r.status {
        vantage_common::Status::Pass => "pass".to_owned(),
        s => format!("{s}: {}", r.message),
    }
}

/// Every agent known, with its assignment and control checks.
pub(super) async fn agents(applied: &Replica) -> Reply<ListAgentsReply> {
    let applied = applied.read().await;
    let state = &applied.state;
    let plan = crate::assignment::assign(&state.declared, &state.agents);
    let agents = state
        .agents
        .iter()
        .map(|(name, a)| AgentInfo {
            name: name.clone(),
            region: a.region.clone(),
            version: a.version.clone(),
            address: a.address.clone(),
            connected: a.connected,
            first_seen_ms: a.first_seen_ms,
            last_seen_ms: a.last_seen_ms,
            assigned_checks: plan.get(name).map_or(0, |c| c.len() as u32),
            applied_seq: a.applied_seq,
            applied_results: a.applied_results,
            spool_id: a.spool_id,
            controls: a
                .controls
                .iter()
                .map(|(n, r)| (n.clone(), control_summary(r)))
                .collect(),
        })
        .collect();
    Ok(Response::new(ListAgentsReply {
        agents,
        now_ms: now_ms(),
    }))
}

/// Refuses an identity's certificates from now on; `key` is
/// `agent/REGION/NAME` or `operator/NAME`.
pub(super) async fn revoke(proposer: &Proposer, key: String) -> Reply<RevokeReply> {
    let who = Identity::from_key(&key).map_err(|_| {
        Status::invalid_argument(format!(
            "{key:?} names no agent or operator: use agent/REGION/NAME or operator/NAME"
        ))
    })?;
    if let Identity::Coordinator { id } = who {
        // Refusing a node's certificate would break writes through it.
        return Err(Status::invalid_argument(format!(
            "{key} is a coordinator: remove it with `vantagectl cluster remove --id {id}`, not revoke"
        )));
    }
    let result = proposer.write(Command::Revoke { name: who.key() }).await?;
    Ok(Response::new(RevokeReply {
        newly_revoked: result == CommandResult::Changed,
    }))
}

/// Accepts `name`'s certificates again.
pub(super) async fn unrevoke(proposer: &Proposer, name: String) -> Reply<UnrevokeReply> {
    let result = proposer.write(Command::Unrevoke { name }).await?;
    Ok(Response::new(UnrevokeReply {
        was_revoked: result == CommandResult::Changed,
    }))
}

/// The names refused.
pub(super) async fn revoked(applied: &Replica) -> Reply<ListRevokedReply> {
    let names = applied.read().await.state.revoked.iter().cloned().collect();
    Ok(Response::new(ListRevokedReply { names }))
}
