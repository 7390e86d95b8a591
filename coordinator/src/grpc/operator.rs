//! `OperatorService`, operators only: each RPC checks the caller's role
//! and hands the request to its area, given just the handles it needs.
//! Writes go through Raft from whichever node the operator reached; reads
//! answer from the node's applied state.
//!
//! - `operator/checks.rs` — apply, checks, status, results, history.
//! - `operator/incidents.rs` — incidents, acknowledgements, deliveries.
//! - `operator/alerts.rs` — silences, maintenance windows, `alerts test`.
//! - `operator/cluster.rs` — membership, cluster status, agents,
//!   revocation.

mod alerts;
mod checks;
mod cluster;
mod incidents;

use tonic::{Request, Response, Status};
use vantage_proto::v1::operator_service_server::OperatorService;
use vantage_proto::v1::{
    AckIncidentReply, AckIncidentRequest, AddMemberRequest, AddSilenceReply, AddSilenceRequest,
    ApplyReply, ApplyRequest, CheckInfo, ClusterStatusReply, ClusterStatusRequest,
    ExpireSilenceReply, ExpireSilenceRequest, GetCheckRequest, GetIncidentRequest, GetResultsReply,
    GetResultsRequest, HistoryReply, HistoryRequest, IncidentInfo, InitClusterReply,
    InitClusterRequest, ListAgentsReply, ListAgentsRequest, ListChangesReply, ListChangesRequest,
    ListChecksReply, ListChecksRequest, ListIncidentsReply, ListIncidentsRequest, ListRevokedReply,
    ListRevokedRequest, ListSilencesReply, ListSilencesRequest, MembershipReply,
    RemoveMemberRequest, RevokeReply, RevokeRequest, StatusReply, StatusRequest, TestChannelReply,
    TestChannelRequest, UnrevokeReply, UnrevokeRequest,
};

use super::auth::{Role, authorize};
use crate::node::{Proposer, Replica};
use crate::raft::network::LastContact;

/// The service.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    applied: Replica,
    proposer: Proposer,
    last_contact: LastContact,
}

impl OperatorApi {
    /// Reads `applied`, writes through `proposer`; `last_contact` for
    /// cluster status.
    pub fn new(applied: Replica, proposer: Proposer, last_contact: LastContact) -> Self {
        OperatorApi {
            applied,
            proposer,
            last_contact,
        }
    }

    /// Checks the caller is an operator; returns its name.
    async fn caller<T>(&self, request: &Request<T>, method: &str) -> Result<String, Status> {
        let peer = authorize(&self.applied, request, Role::Operator, method).await?;
        tracing::info!(method, operator = %peer.identity, "operator call");
        Ok(peer.identity.name())
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn apply(&self, request: Request<ApplyRequest>) -> Reply<ApplyReply> {
        self.caller(&request, "Apply").await?;
        checks::apply(&self.applied, &self.proposer, request.into_inner()).await
    }

    async fn list_checks(&self, request: Request<ListChecksRequest>) -> Reply<ListChecksReply> {
        self.caller(&request, "ListChecks").await?;
        checks::list(&self.applied).await
    }

    async fn get_check(&self, request: Request<GetCheckRequest>) -> Reply<CheckInfo> {
        self.caller(&request, "GetCheck").await?;
        checks::get(&self.applied, &request.into_inner().name).await
    }

    async fn status(&self, request: Request<StatusRequest>) -> Reply<StatusReply> {
        self.caller(&request, "Status").await?;
        checks::status(&self.applied, request.into_inner()).await
    }

    async fn get_results(&self, request: Request<GetResultsRequest>) -> Reply<GetResultsReply> {
        self.caller(&request, "GetResults").await?;
        checks::results(&self.applied, request.into_inner()).await
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Reply<HistoryReply> {
        self.caller(&request, "History").await?;
        checks::history(&self.applied, request.into_inner()).await
    }

    async fn list_changes(&self, request: Request<ListChangesRequest>) -> Reply<ListChangesReply> {
        self.caller(&request, "ListChanges").await?;
        checks::changes(&self.applied, request.into_inner()).await
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Reply<ListIncidentsReply> {
        self.caller(&request, "ListIncidents").await?;
        incidents::list(&self.applied, request.into_inner().all).await
    }

    async fn get_incident(&self, request: Request<GetIncidentRequest>) -> Reply<IncidentInfo> {
        self.caller(&request, "GetIncident").await?;
        incidents::get(&self.applied, request.into_inner().id).await
    }

    async fn ack_incident(&self, request: Request<AckIncidentRequest>) -> Reply<AckIncidentReply> {
        let by = self.caller(&request, "AckIncident").await?;
        incidents::ack(&self.proposer, request.into_inner().id, by).await
    }

    async fn add_silence(&self, request: Request<AddSilenceRequest>) -> Reply<AddSilenceReply> {
        let by = self.caller(&request, "AddSilence").await?;
        alerts::add_silence(&self.proposer, by, request.into_inner()).await
    }

    async fn list_silences(
        &self,
        request: Request<ListSilencesRequest>,
    ) -> Reply<ListSilencesReply> {
        self.caller(&request, "ListSilences").await?;
        alerts::list_silences(&self.applied).await
    }

    async fn expire_silence(
        &self,
        request: Request<ExpireSilenceRequest>,
    ) -> Reply<ExpireSilenceReply> {
        self.caller(&request, "ExpireSilence").await?;
        alerts::expire_silence(&self.proposer, request.into_inner().id).await
    }

    async fn test_channel(&self, request: Request<TestChannelRequest>) -> Reply<TestChannelReply> {
        self.caller(&request, "TestChannel").await?;
        alerts::test_channel(&self.applied, &request.into_inner().channel).await
    }

    async fn init_cluster(&self, request: Request<InitClusterRequest>) -> Reply<InitClusterReply> {
        self.caller(&request, "InitCluster").await?;
        cluster::init(&self.proposer, request.into_inner()).await
    }

    async fn add_member(&self, request: Request<AddMemberRequest>) -> Reply<MembershipReply> {
        self.caller(&request, "AddMember").await?;
        cluster::add_member(&self.proposer, request.into_inner()).await
    }

    async fn remove_member(&self, request: Request<RemoveMemberRequest>) -> Reply<MembershipReply> {
        self.caller(&request, "RemoveMember").await?;
        cluster::remove_member(&self.proposer, request.into_inner().id).await
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Reply<ClusterStatusReply> {
        self.caller(&request, "ClusterStatus").await?;
        cluster::status(&self.proposer, &self.last_contact)
    }

    async fn list_agents(&self, request: Request<ListAgentsRequest>) -> Reply<ListAgentsReply> {
        self.caller(&request, "ListAgents").await?;
        cluster::agents(&self.applied).await
    }

    async fn revoke(&self, request: Request<RevokeRequest>) -> Reply<RevokeReply> {
        self.caller(&request, "Revoke").await?;
        cluster::revoke(&self.proposer, request.into_inner().name).await
    }

    async fn unrevoke(&self, request: Request<UnrevokeRequest>) -> Reply<UnrevokeReply> {
        self.caller(&request, "Unrevoke").await?;
        cluster::unrevoke(&self.proposer, request.into_inner().name).await
    }

    async fn list_revoked(&self, request: Request<ListRevokedRequest>) -> Reply<ListRevokedReply> {
        self.caller(&request, "ListRevoked").await?;
        cluster::revoked(&self.applied).await
    }
}
