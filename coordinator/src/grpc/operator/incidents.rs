//! Incidents: listings with timelines and deliveries, acknowledgements.

use tonic::{Response, Status};
use vantage_common::clock::now_ms;
use vantage_proto::v1::{
    AckIncidentReply, DeliveryInfo, IncidentEvent, IncidentInfo, ListIncidentsReply,
};

use super::Reply;
use crate::node::{Proposer, Replica};
use crate::state::incidents::Incident;
use crate::state::outbox::Outbox;
use crate::state::{Command, CommandResult, State};

/// An incident with its severity and deliveries, as operators see it.
pub(super) fn incident_info(i: &Incident, state: &State) -> IncidentInfo {
    IncidentInfo {
        severity: state
            .planning
            .severity(i.id)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        deliveries: deliveries(&state.outbox, i.id),
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

/// An incident's deliveries, oldest first.
fn deliveries(outbox: &Outbox, incident: u64) -> Vec<DeliveryInfo> {
    let mut list: Vec<DeliveryInfo> = outbox
        .deliveries
        .values()
        .filter(|d| d.message.incident == incident)
        .map(|d| DeliveryInfo {
            key: d.message.key.to_string(),
            channel: d.channel.clone(),
            event: format!("{:?}", d.message.event).to_lowercase(),
            state: format!("{:?}", d.state).to_lowercase(),
            attempts: d.attempts,
            last_error: d.last_error.clone().unwrap_or_default(),
            queued_ms: d.queued_ms,
            finished_ms: d.finished_ms,
        })
        .collect();
    list.sort_by_key(|d| d.queued_ms);
    list
}

/// Open incidents (all kept ones with `all`), newest first.
pub(super) async fn list(applied: &Replica, all: bool) -> Reply<ListIncidentsReply> {
    let applied = applied.read().await;
    let state = &applied.state;
    let incidents = state
        .incidents
        .all
        .values()
        .rev()
        .filter(|i| all || i.resolved_ms.is_none())
        .map(|i| incident_info(i, state))
        .collect();
    Ok(Response::new(ListIncidentsReply {
        incidents,
        now_ms: now_ms(),
    }))
}

/// One incident.
pub(super) async fn get(applied: &Replica, id: u64) -> Reply<IncidentInfo> {
    let applied = applied.read().await;
    let state = &applied.state;
    state
        .incidents
        .all
        .get(&id)
        .map(|i| Response::new(incident_info(i, state)))
        .ok_or_else(|| Status::not_found(format!("no incident {id}")))
}

/// Acknowledges an open incident: escalation and reminders stop.
pub(super) async fn ack(proposer: &Proposer, id: u64, by: String) -> Reply<AckIncidentReply> {
    let command = Command::AckIncident {
        id,
        by,
        at_ms: now_ms(),
    };
    match proposer.write(command).await? {
        CommandResult::Changed => Ok(Response::new(AckIncidentReply {})),
        _ => Err(Status::failed_precondition(format!(
            "incident {id} is unknown or resolved"
        ))),
    }
}
