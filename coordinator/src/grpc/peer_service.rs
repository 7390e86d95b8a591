//! `RaftService`: openraft RPCs between coordinators, and writes forwarded
//! by followers to the leader.

use openraft::raft::InstallSnapshotRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use vantage_proto::v1::RaftPayload;
use vantage_proto::v1::raft_service_server::RaftService;

use super::auth::{Role, authorize};
use crate::node::{Proposal, ProposeError, Proposer, Redirect, Replica};
use crate::raft::network::{decode, encode};
use crate::raft::types::{Raft, TypeConfig};

/// The service.
#[derive(Clone)]
pub struct PeerApi {
    raft: Raft,
    proposer: Proposer,
    applied: Replica,
}

impl std::fmt::Debug for PeerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerApi").finish_non_exhaustive()
    }
}

impl PeerApi {
    /// Serves `raft`'s RPCs and forwarded proposals; `applied` for the
    /// deny-list.
    pub fn new(raft: Raft, proposer: Proposer, applied: Replica) -> Self {
        PeerApi {
            raft,
            proposer,
            applied,
        }
    }

    async fn args<T: DeserializeOwned>(
        &self,
        request: &Request<RaftPayload>,
        method: &str,
    ) -> Result<T, Status> {
        authorize(&self.applied, request, Role::Coordinator, method).await?;
        decode(request.get_ref())
            .map_err(|e| Status::invalid_argument(format!("{method}: undecodable payload: {e}")))
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    encode(value)
        .map(Response::new)
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for PeerApi {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.args(&request, "AppendEntries").await?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = self.args(&request, "Vote").await?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let mut rpc: InstallSnapshotRequest<TypeConfig> =
            self.args(&request, "InstallSnapshot").await?;
        let data = request.into_inner().data;
        // Empty from nodes before 0.8, whose chunk is in the JSON.
        if !data.is_empty() {
            rpc.data = data;
        }
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let proposal: Proposal = self.args(&request, "Forward").await?;
        // Only this node is tried: if it no longer leads, the follower
        // looks for the leader again.
        let result = match self.proposer.propose_here(&proposal).await {
            Ok(outcome) => Ok(outcome),
            Err(Redirect::Leader(node)) => Err(ProposeError::NoLeader(format!(
                "leadership moved to {}",
                node.addr
            ))),
            Err(Redirect::Unknown) => Err(ProposeError::NoLeader("no leader elected yet".into())),
            Err(Redirect::Failed(e)) => Err(e),
        };
        reply(&result)
    }
}
