//! `OperatorService`: cluster membership and status, declared checks,
//! agents and their results, revocation. Writes go through Raft from
//! whichever node the operator reached; reads answer from the node's
//! applied state.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use vantage_common::clock::now_ms;
use vantage_common::identity::valid_label;
use vantage_proto::v1::operator_service_server::OperatorService;
use vantage_proto::v1::{
    AckIncidentReply, AckIncidentRequest, AddMemberRequest, AddSilenceReply, AddSilenceRequest,
    AgentInfo, ApplyReply, ApplyRequest, CheckInfo, CheckStatus, ClusterStatusReply,
    ClusterStatusRequest, ExpireSilenceReply, ExpireSilenceRequest, GetCheckRequest,
    GetIncidentRequest, GetResultsReply, GetResultsRequest, HistoryReply, HistoryRequest,
    ImpairedRegion, IncidentEvent, IncidentInfo, InitClusterReply, InitClusterRequest,
    ListAgentsReply, ListAgentsRequest, ListChecksReply, ListChecksRequest, ListIncidentsReply,
    ListIncidentsRequest, ListRevokedReply, ListRevokedRequest, ListSilencesReply,
    ListSilencesRequest, MembershipReply, NodeStatus, RegionStatus, RegionUptime,
    RemoveMemberRequest, ResultInfo, RevokeReply, RevokeRequest, StatusReply, StatusRequest,
    TestChannelReply, TestChannelRequest,
};

use super::auth::{Role, authorize};
use super::operator_alerts;
use crate::declared::{CheckDecl, Declared, Diff, Quorum};
use crate::node::{Coordinator, Outcome, Proposal, ProposeError};
use crate::raft::types::Node;
use crate::state::{Command, CommandResult};

/// The service.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    coordinator: Arc<Coordinator>,
}

impl OperatorApi {
    /// Serves `coordinator`.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        OperatorApi { coordinator }
    }

    /// Checks the caller is an operator; returns its name.
    async fn caller<T>(&self, request: &Request<T>, method: &str) -> Result<String, Status> {
        let peer = authorize(&self.coordinator, request, Role::Operator, method).await?;
        tracing::info!(method, operator = %peer.identity, "operator call");
        Ok(peer.identity.name())
    }
}

/// A failed proposal as a gRPC status.
pub(super) fn status(e: ProposeError) -> Status {
    match e {
        ProposeError::NoLeader(m) => Status::unavailable(m),
        ProposeError::Refused(m) => Status::failed_precondition(m),
        ProposeError::Fatal(m) => Status::internal(m),
    }
}

fn membership(outcome: Outcome) -> Result<Response<MembershipReply>, Status> {
    match outcome {
        Outcome::Membership(voters, learners) => {
            Ok(Response::new(MembershipReply { voters, learners }))
        }
        Outcome::Written(_) => Err(Status::internal("unexpected reply to a membership change")),
    }
}

fn check_info(c: &CheckDecl) -> CheckInfo {
    CheckInfo {
        name: c.name.clone(),
        kind: c.kind.to_string(),
        target: c.target.clone(),
        interval: c.interval.to_string(),
        timeout: c.timeout.map(|t| t.to_string()),
        regions: c.regions.clone(),
        labels: c.labels.clone().into_iter().collect(),
        fail_after: c.fail_after,
        recover_after: c.recover_after,
        quorum: match &c.quorum {
            Quorum::Count(n) => n.to_string(),
            Quorum::Named(q) => q.clone(),
        },
        severity: c.severity.clone(),
        routes: c.routes.clone(),
        params_json: serde_json::to_string(&c.params).unwrap_or_else(|_| "{}".into()),
    }
}

fn result_info(r: &crate::state::results::StoredResult) -> ResultInfo {
    ResultInfo {
        region: r.region.clone(),
        agent: r.agent.clone(),
        started_at_ms: r.started_at_ms,
        status: r.status.to_string(),
        class: r.class.map(|c| c.to_string()).unwrap_or_default(),
        message: r.message.clone(),
        duration_ms: r.duration_ms,
    }
}

fn control_summary(r: &crate::state::results::StoredResult) -> String {
    match r.status {
        vantage_common::Status::Pass => "pass".to_owned(),
        s => format!("{s}: {}", r.message),
    }
}

fn incident_info(
    i: &crate::state::incidents::Incident,
    alerts: &crate::state::alerts::Alerts,
) -> IncidentInfo {
    IncidentInfo {
        severity: i.severity.clone(),
        deliveries: super::operator_alerts::deliveries(alerts, i.id),
        id: i.id,
        check: i.check.clone(),
        verdict: i.verdict.name().into(),
        worst: i.worst.clone(),
        opened_ms: i.opened_ms,
        resolved_ms: i.resolved_ms,
        acked_by: i.acked_by.clone().unwrap_or_default(),
        timeline: i
            .timeline
            .iter()
            .map(|e| IncidentEvent {
                at_ms: e.at_ms,
                what: e.what.clone(),
            })
            .collect(),
    }
}

fn apply_reply(diff: Diff, applied: bool) -> Response<ApplyReply> {
    Response::new(ApplyReply {
        created: diff.created,
        changed: diff.changed,
        deleted: diff.deleted,
        routing_changed: diff.routing_changed,
        applied,
    })
}

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryReply>, Status> {
        self.caller(&request, "History").await?;
        let r = request.into_inner();
        let applied = self.coordinator.applied.read().await;
        let state = &applied.state;
        let Some(verdict) = state.verdicts.get(&r.check) else {
            return Err(Status::not_found(format!("no check named {:?}", r.check)));
        };
        let now = now_ms();
        let since = r.since_ms - r.since_ms.rem_euclid(crate::state::results::HOUR_MS);
        let t = verdict.time_since(since, now);
        let decided = (t.up_ms + t.degraded_ms + t.down_ms).max(1) as f64;
        let pct = |ms: i64| ms as f64 * 100.0 / decided;
        let regions = state
            .results
            .get(&r.check)
            .map(|res| {
                res.hours
                    .iter()
                    .map(|(region, hours)| {
                        let mut u = RegionUptime {
                            region: region.clone(),
                            ..Default::default()
                        };
                        for (_, h) in hours.range(since..) {
                            u.pass += u64::from(h.pass);
                            u.warn += u64::from(h.warn);
                            u.fail += u64::from(h.fail);
                            u.error += u64::from(h.error);
                        }
                        let counted = (u.pass + u.warn + u.fail).max(1) as f64;
                        u.uptime_pct = (u.pass + u.warn) as f64 * 100.0 / counted;
                        u
                    })
                    .collect()
            })
            .unwrap_or_default();
        let incidents = state
            .incidents
            .all
            .values()
            .filter(|i| i.check == r.check && i.resolved_ms.is_none_or(|end| end >= since))
            .map(|i| incident_info(i, &state.alerts))
            .collect();
        Ok(Response::new(HistoryReply {
            check: r.check,
            since_ms: since,
            now_ms: now,
            up_pct: pct(t.up_ms),
            degraded_pct: pct(t.degraded_ms),
            down_pct: pct(t.down_ms),
            unknown_ms: t.unknown_ms,
            regions,
            incidents,
        }))
    }

    async fn add_silence(
        &self,
        request: Request<AddSilenceRequest>,
    ) -> Result<Response<AddSilenceReply>, Status> {
        let by = self.caller(&request, "AddSilence").await?;
        operator_alerts::add_silence(&self.coordinator, by, request.into_inner()).await
    }

    async fn list_silences(
        &self,
        request: Request<ListSilencesRequest>,
    ) -> Result<Response<ListSilencesReply>, Status> {
        self.caller(&request, "ListSilences").await?;
        let applied = self.coordinator.applied.read().await;
        Ok(Response::new(operator_alerts::list_silences(
            &applied.state.alerts,
        )))
    }

    async fn expire_silence(
        &self,
        request: Request<ExpireSilenceRequest>,
    ) -> Result<Response<ExpireSilenceReply>, Status> {
        self.caller(&request, "ExpireSilence").await?;
        operator_alerts::expire_silence(&self.coordinator, request.into_inner().id).await
    }

    async fn test_channel(
        &self,
        request: Request<TestChannelRequest>,
    ) -> Result<Response<TestChannelReply>, Status> {
        self.caller(&request, "TestChannel").await?;
        operator_alerts::test_channel(&self.coordinator, &request.into_inner().channel).await
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsReply>, Status> {
        self.caller(&request, "ListIncidents").await?;
        let all = request.into_inner().all;
        let applied = self.coordinator.applied.read().await;
        let incidents = applied
            .state
            .incidents
            .all
            .values()
            .rev()
            .filter(|i| all || i.resolved_ms.is_none())
            .map(|i| incident_info(i, &applied.state.alerts))
            .collect();
        Ok(Response::new(ListIncidentsReply {
            incidents,
            now_ms: now_ms(),
        }))
    }

    async fn get_incident(
        &self,
        request: Request<GetIncidentRequest>,
    ) -> Result<Response<IncidentInfo>, Status> {
        self.caller(&request, "GetIncident").await?;
        let id = request.into_inner().id;
        let applied = self.coordinator.applied.read().await;
        let incident = applied.state.incidents.all.get(&id);
        incident
            .map(|i| Response::new(incident_info(i, &applied.state.alerts)))
            .ok_or_else(|| Status::not_found(format!("no incident {id}")))
    }

    async fn ack_incident(
        &self,
        request: Request<AckIncidentRequest>,
    ) -> Result<Response<AckIncidentReply>, Status> {
        let by = self.caller(&request, "AckIncident").await?;
        let id = request.into_inner().id;
        let command = Command::AckIncident {
            id,
            by,
            at_ms: now_ms(),
        };
        match self.coordinator.write(command).await.map_err(status)? {
            CommandResult::Changed => Ok(Response::new(AckIncidentReply {})),
            _ => Err(Status::failed_precondition(format!(
                "incident {id} is unknown or resolved"
            ))),
        }
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        self.caller(&request, "Status").await?;
        use crate::verdict::Verdict;
        let applied = self.coordinator.applied.read().await;
        let state = &applied.state;
        let checks = state
            .declared
            .checks
            .iter()
            .map(|c| {
                let v = state.verdicts.get(&c.name);
                let verdict = v.map_or(&Verdict::Ok, |v| &v.verdict);
                let down = match verdict {
                    Verdict::Regional { down } | Verdict::Outage { down } => down.clone(),
                    _ => vec![],
                };
                let regions = v
                    .map(|v| {
                        v.regions
                            .iter()
                            .map(|(region, t)| RegionStatus {
                                region: region.clone(),
                                state: t.state.name().into(),
                                fails: t.fails,
                                passes: t.passes,
                                last_result_ms: t.last_result_ms,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                CheckStatus {
                    name: c.name.clone(),
                    verdict: verdict.name().into(),
                    down,
                    since_ms: v.map_or(0, |v| v.since_ms),
                    regions,
                }
            })
            .collect();
        let impaired = state
            .impaired
            .iter()
            .map(|(region, i)| ImpairedRegion {
                region: region.clone(),
                reason: i.reason.clone(),
                since_ms: i.since_ms,
            })
            .collect();
        Ok(Response::new(StatusReply {
            checks,
            now_ms: now_ms(),
            impaired,
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsReply>, Status> {
        self.caller(&request, "ListAgents").await?;
        let applied = self.coordinator.applied.read().await;
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

    async fn get_results(
        &self,
        request: Request<GetResultsRequest>,
    ) -> Result<Response<GetResultsReply>, Status> {
        self.caller(&request, "GetResults").await?;
        let req = request.into_inner();
        let applied = self.coordinator.applied.read().await;
        let state = &applied.state;
        if !state.declared.checks.iter().any(|c| c.name == req.check) {
            return Err(Status::not_found(format!("no check named {:?}", req.check)));
        }
        let wanted = |region: &str| req.region.is_empty() || req.region == region;
        let (latest, recent) = match state.results.get(&req.check) {
            Some(r) => (
                r.latest
                    .values()
                    .filter(|x| wanted(&x.region))
                    .map(result_info)
                    .collect(),
                r.recent
                    .iter()
                    .rev()
                    .filter(|x| wanted(&x.region))
                    .take(req.recent as usize)
                    .map(result_info)
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Response::new(GetResultsReply {
            latest,
            recent,
            now_ms: now_ms(),
        }))
    }

    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyReply>, Status> {
        self.caller(&request, "Apply").await?;
        let req = request.into_inner();
        let source = if req.source_name.is_empty() {
            "checks.toml".to_owned()
        } else {
            req.source_name
        };
        // Everything is validated before anything is proposed: a bad file
        // writes nothing.
        let declared = Declared::parse(std::path::Path::new(&source), &req.toml)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.dry_run {
            let current = self.coordinator.applied.read().await.state.declared.clone();
            return Ok(apply_reply(Diff::between(&current, &declared), false));
        }
        let command = Command::ApplyConfig {
            declared: Box::new(declared),
            at_ms: now_ms(),
        };
        match self.coordinator.write(command).await.map_err(status)? {
            CommandResult::Applied(diff) => Ok(apply_reply(diff, true)),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn list_checks(
        &self,
        request: Request<ListChecksRequest>,
    ) -> Result<Response<ListChecksReply>, Status> {
        self.caller(&request, "ListChecks").await?;
        let applied = self.coordinator.applied.read().await;
        let checks = applied
            .state
            .declared
            .checks
            .iter()
            .map(check_info)
            .collect();
        Ok(Response::new(ListChecksReply { checks }))
    }

    async fn get_check(
        &self,
        request: Request<GetCheckRequest>,
    ) -> Result<Response<CheckInfo>, Status> {
        self.caller(&request, "GetCheck").await?;
        let name = request.into_inner().name;
        let applied = self.coordinator.applied.read().await;
        let check = applied
            .state
            .declared
            .checks
            .iter()
            .find(|c| c.name == name);
        check
            .map(|c| Response::new(check_info(c)))
            .ok_or_else(|| Status::not_found(format!("no check named {name:?}")))
    }

    async fn init_cluster(
        &self,
        request: Request<InitClusterRequest>,
    ) -> Result<Response<InitClusterReply>, Status> {
        self.caller(&request, "InitCluster").await?;
        let members: BTreeMap<u64, Node> = request
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, Node { addr: m.addr }))
            .collect();
        self.coordinator.initialize(members).await.map_err(status)?;
        Ok(Response::new(InitClusterReply {}))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.caller(&request, "AddMember").await?;
        let req = request.into_inner();
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
        membership(self.coordinator.propose(proposal).await.map_err(status)?)
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.caller(&request, "RemoveMember").await?;
        let id = request.into_inner().id;
        membership(
            self.coordinator
                .propose(Proposal::RemoveMember { id })
                .await
                .map_err(status)?,
        )
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        self.caller(&request, "ClusterStatus").await?;
        let m = self.coordinator.raft.metrics().borrow().clone();
        let contacts = self
            .coordinator
            .last_contact
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
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

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeReply>, Status> {
        self.caller(&request, "Revoke").await?;
        let name = request.into_inner().name;
        if !valid_label(&name) && !name.starts_with("coordinator-") {
            return Err(Status::invalid_argument(format!("invalid name {name:?}")));
        }
        let result = self
            .coordinator
            .write(Command::Revoke { name })
            .await
            .map_err(status)?;
        Ok(Response::new(RevokeReply {
            newly_revoked: result == CommandResult::Changed,
        }))
    }

    async fn list_revoked(
        &self,
        request: Request<ListRevokedRequest>,
    ) -> Result<Response<ListRevokedReply>, Status> {
        self.caller(&request, "ListRevoked").await?;
        let names = self
            .coordinator
            .applied
            .read()
            .await
            .state
            .revoked
            .iter()
            .cloned()
            .collect();
        Ok(Response::new(ListRevokedReply { names }))
    }
}
