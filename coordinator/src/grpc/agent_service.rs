//! `AgentService`: one session stream per agent, on the leader. Hello →
//! Welcome (with the agent's applied watermark) and Assignment; result
//! batches are acknowledged only once committed in Raft; followers answer
//! with a Redirect to the leader.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use vantage_common::Outcome;
use vantage_common::clock::now_ms;
use vantage_common::identity::Identity;
use vantage_proto::v1::agent_message::Msg as In;
use vantage_proto::v1::agent_service_server::AgentService;
use vantage_proto::v1::coordinator_message::Msg as Out;
use vantage_proto::v1::{
    Ack, AgentMessage, CoordinatorMessage, Heartbeat, Redirect, ResultBatch, Welcome,
};

use super::auth::{Role, authorize};
use crate::confirm::Confirmations;
use crate::node::{Proposer, Replica};
use crate::sessions::Sessions;
use crate::state::results::StoredResult;
use crate::state::{Command, CommandResult, IncomingResult};

/// Most results in one batch.
pub const MAX_BATCH: usize = 1000;
/// Longest message of one result.
pub const MAX_MESSAGE: usize = 2048;
/// Largest details object of one result (JSON bytes).
pub const MAX_DETAILS: usize = 16 * 1024;
/// Most timed steps of one result, and the longest name of one (they go
/// into the log, for remote-write).
pub const MAX_PHASES: usize = 32;
const MAX_PHASE_NAME: usize = 32;
/// Longest trace context kept with a result (a W3C traceparent is 55).
const MAX_TRACEPARENT: usize = 128;
/// Largest encoded session message.
pub const MAX_FRAME: usize = 4 << 20;

/// The service and the handles a session uses.
#[derive(Debug, Clone)]
pub struct AgentApi {
    /// Leadership, and where batches are written.
    pub proposer: Proposer,
    /// The applied state (watermarks, assignments, the deny-list).
    pub applied: Replica,
    /// Live sessions.
    pub sessions: Arc<Sessions>,
    /// Second opinions after failures.
    pub confirmations: Arc<Confirmations>,
    /// Results applied (the `vantage_results` counter).
    pub results: Counter,
    /// Heartbeat interval asked of agents.
    pub heartbeat: Duration,
}

fn msg(m: Out) -> CoordinatorMessage {
    CoordinatorMessage { msg: Some(m) }
}

/// Checks a batch and turns it into stored results. Errors say what is wrong.
pub fn validate(
    batch: ResultBatch,
    region: &str,
    agent: &str,
) -> Result<Vec<IncomingResult>, Status> {
    if batch.results.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "batch of {} results exceeds {MAX_BATCH}",
            batch.results.len()
        )));
    }
    let mut last = 0;
    let mut out = Vec::with_capacity(batch.results.len());
    for r in batch.results {
        if r.seq <= last {
            return Err(Status::invalid_argument(format!(
                "result seq {} does not increase (after {last})",
                r.seq
            )));
        }
        last = r.seq;
        if r.check.is_empty() || r.check.len() > 128 {
            return Err(Status::invalid_argument(format!(
                "result {}: invalid check name",
                r.seq
            )));
        }
        let outcome = r
            .outcome
            .ok_or_else(|| Status::invalid_argument(format!("result {}: no outcome", r.seq)))?;
        if outcome.message.len() > MAX_MESSAGE || outcome.details_json.len() > MAX_DETAILS {
            return Err(Status::invalid_argument(format!(
                "result {}: message or details too large",
                r.seq
            )));
        }
        if outcome.phases.len() > MAX_PHASES
            || outcome.phases.iter().any(|p| p.name.len() > MAX_PHASE_NAME)
        {
            return Err(Status::invalid_argument(format!(
                "result {}: more than {MAX_PHASES} phases or a phase name over {MAX_PHASE_NAME} bytes",
                r.seq
            )));
        }
        let o = Outcome::try_from(outcome)
            .map_err(|e| Status::invalid_argument(format!("result {}: {e}", r.seq)))?;
        let details_json = serde_json::to_string(&o.details).unwrap_or_else(|_| "{}".into());
        let cert_not_after = o
            .details
            .get(vantage_common::outcome::CERT_NOT_AFTER)
            .and_then(serde_json::Value::as_i64);
        out.push(IncomingResult {
            seq: r.seq,
            check: r.check,
            result: StoredResult {
                region: region.to_owned(),
                agent: agent.to_owned(),
                started_at_ms: r.started_at_ms,
                status: o.status,
                class: o.class,
                message: o.message,
                duration_ms: o.duration_ms,
                details_json,
                cert_not_after,
                phases: o
                    .phases
                    .iter()
                    .map(|(name, took)| (name.to_owned(), took.as_micros() as u64))
                    .collect(),
            },
            // A traceparent is 55 characters; anything else is dropped.
            trace: (!r.trace_parent.is_empty() && r.trace_parent.len() <= MAX_TRACEPARENT)
                .then_some(r.trace_parent),
        });
    }
    Ok(out)
}

/// An `ingest` span per traced result, child of the agent's probe span;
/// each result then carries its ingest span's traceparent into the log, so
/// the notifications it causes continue the same trace.
fn traced_ingest(results: &mut [IncomingResult], region: &str, agent: &str) -> Vec<tracing::Span> {
    let mut spans = Vec::new();
    for r in results.iter_mut() {
        let Some(parent) = r.trace.take() else {
            continue;
        };
        let span = tracing::info_span!("ingest", check = %r.check, %region, %agent, seq = r.seq, status = r.result.status.as_str());
        vantage_common::logging::set_parent(&span, &parent);
        r.trace = vantage_common::logging::traceparent(&span);
        spans.push(span);
    }
    spans
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let peer = authorize(&self.applied, &request, Role::Agent, "Session").await?;
        let Identity::Agent { region, name } = peer.identity.clone() else {
            return Err(Status::permission_denied("agents only"));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let api = self.clone();
        if !api.proposer.leads().await {
            let (leader_id, leader_addr) = api.proposer.leader().await.unwrap_or((0, None));
            let redirect = Redirect {
                leader_id,
                leader_addr: leader_addr.unwrap_or_default(),
            };
            let _ = tx.send(Ok(msg(Out::Redirect(redirect)))).await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let result =
                run_session(&api, inbound, &tx, &region, &name, &peer.addr.to_string()).await;
            if let Err(status) = result {
                tracing::warn!(agent = %name, region = %region, error = %status.message(), "agent session ended with an error");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn run_session(
    api: &AgentApi,
    mut inbound: Streaming<AgentMessage>,
    tx: &crate::sessions::Outbox,
    region: &str,
    name: &str,
    address: &str,
) -> Result<(), Status> {
    let hello = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(AgentMessage {
            msg: Some(In::Hello(h)),
        }))) => h,
        Ok(Ok(_)) => return Err(Status::invalid_argument("a session starts with Hello")),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(Status::deadline_exceeded("no Hello within 10s")),
    };
    let spool_id = hello.spool_id;
    let command = Command::AgentHello {
        name: name.to_owned(),
        region: region.to_owned(),
        version: hello.version.chars().take(64).collect(),
        address: address.to_owned(),
        spool_id,
        at_ms: now_ms(),
    };
    api.proposer.write(command).await?;
    let acked_seq = api
        .applied
        .read()
        .await
        .state
        .agents
        .get(name)
        .map_or(0, |a| a.applied_seq);
    let welcome = Welcome {
        node_id: api.proposer.id(),
        acked_seq,
        heartbeat_interval_ms: u32::try_from(api.heartbeat.as_millis()).unwrap_or(u32::MAX),
    };
    tx.send(Ok(msg(Out::Welcome(welcome))))
        .await
        .map_err(|_| Status::cancelled("agent went away"))?;
    let (session, stop) = api.sessions.open(name, tx.clone());
    tracing::info!(agent = %name, region = %region, %address, version = %hello.version, "agent session opened");
    api.sessions
        .push_assignments(&api.applied.read().await.state);

    let result = tokio::select! {
        r = serve(api, &mut inbound, tx, (region, name), spool_id, session) => r,
        _ = stop.notified() => Err(Status::unavailable(
            "session ended by the coordinator (missed heartbeats, a newer session, or a leadership change)",
        )),
    };
    if api.sessions.close(name, session) {
        tracing::info!(agent = %name, region = %region, "agent session closed");
        let gone = Command::AgentGone {
            name: name.to_owned(),
            at_ms: now_ms(),
        };
        if let Err(e) = api.proposer.write(gone).await {
            tracing::warn!(agent = %name, error = %e, "could not record the agent as gone");
        }
    }
    result
}

async fn serve(
    api: &AgentApi,
    inbound: &mut Streaming<AgentMessage>,
    tx: &crate::sessions::Outbox,
    (region, name): (&str, &str),
    spool_id: u64,
    session: u64,
) -> Result<(), Status> {
    while let Some(message) = inbound.message().await? {
        // A revoked agent's session ends at its next heartbeat or batch
        // (the deny-list is replicated: on whichever node leads).
        let who = Identity::Agent {
            region: region.to_owned(),
            name: name.to_owned(),
        };
        if api.applied.read().await.state.is_revoked(&who) {
            tracing::warn!(agent = %name, region = %region, "agent session ended: revoked");
            return Err(Status::permission_denied(format!(
                "agent {name}: its certificate was revoked"
            )));
        }
        match message.msg {
            Some(In::Heartbeat(h)) => {
                api.sessions.heartbeat(name, session);
                let beat = Heartbeat {
                    sent_at_ms: now_ms(),
                    pending: h.pending,
                };
                if tx.send(Ok(msg(Out::Heartbeat(beat)))).await.is_err() {
                    return Ok(());
                }
            }
            Some(In::Batch(batch)) => {
                api.sessions.heartbeat(name, session);
                let mut results = validate(batch, region, name)?;
                // Probes traced by the agent go on here, until committed.
                let _ingest = traced_ingest(&mut results, region, name);
                let failing: Vec<(String, std::time::Duration)> = results
                    .iter()
                    .filter(|r| r.result.status == vantage_common::Status::Fail)
                    .map(|r| {
                        let took = std::time::Duration::from_millis(r.result.duration_ms);
                        (r.check.clone(), took)
                    })
                    .collect();
                let count = results.len() as u64;
                let command = Command::Results {
                    agent: name.to_owned(),
                    spool_id,
                    at_ms: now_ms(),
                    results,
                };
                match api.proposer.write(command).await {
                    Ok(CommandResult::Acked(seq)) => {
                        api.results.inc_by(count);
                        if !failing.is_empty() {
                            let applied = api.applied.read().await;
                            api.confirmations.after_batch(
                                &api.sessions,
                                &applied.state,
                                name,
                                region,
                                &failing,
                            );
                        }
                        if tx.send(Ok(msg(Out::Ack(Ack { seq })))).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(other) => {
                        return Err(Status::internal(format!("unexpected result {other:?}")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(In::Hello(_)) => {
                return Err(Status::invalid_argument("Hello may only open a session"));
            }
            None => return Err(Status::invalid_argument("empty message")),
        }
    }
    Ok(())
}
