//! Silences and maintenance windows, and `alerts test` (a synthetic alert
//! sent end to end from the node the operator reached, with that node's
//! secrets).

use std::time::Instant;

use tonic::{Response, Status};
use vantage_common::clock::now_ms;
use vantage_proto::v1::{
    AddSilenceReply, AddSilenceRequest, ExpireSilenceReply, ListSilencesReply, SilenceInfo,
    TestChannelReply,
};

use super::Reply;
use crate::alert::http_client;
use crate::node::{Proposer, Replica};
use crate::notification::Message;
use crate::state::silences::{Silence, SilenceKind, WEEK_MS, Weekly};
use crate::state::{Command, CommandResult};

/// Validates and records a silence or maintenance window.
pub(super) async fn add_silence(
    proposer: &Proposer,
    by: String,
    r: AddSilenceRequest,
) -> Reply<AddSilenceReply> {
    let kind = match r.kind.as_str() {
        "" | "silence" => SilenceKind::Silence,
        "maintenance" => SilenceKind::Maintenance,
        other => {
            return Err(Status::invalid_argument(format!(
                "kind {other:?} must be silence or maintenance"
            )));
        }
    };
    if r.matchers.is_empty() {
        return Err(Status::invalid_argument(
            "at least one --match label=value is required (a silence never holds everything by accident)",
        ));
    }
    // Times from year 2000 to 9999, windows up to a year.
    let sane = 946_684_800_000..=253_402_300_799_999;
    if r.duration_ms <= 0 || r.duration_ms > 366 * 24 * 3600 * 1000 {
        return Err(Status::invalid_argument(
            "the duration must be positive and at most a year",
        ));
    }
    if (r.starts_ms != 0 && !sane.contains(&r.starts_ms))
        || (r.until_ms != 0 && !sane.contains(&r.until_ms))
    {
        return Err(Status::invalid_argument("start or end out of range"));
    }
    let now = now_ms();
    let starts_ms = if r.starts_ms == 0 { now } else { r.starts_ms };
    let (ends_ms, weekly) = if r.weekly {
        if r.duration_ms >= WEEK_MS {
            return Err(Status::invalid_argument(
                "a weekly window must be shorter than a week",
            ));
        }
        let until = if r.until_ms == 0 {
            i64::MAX
        } else {
            r.until_ms
        };
        (until, Some(Weekly::starting_at(starts_ms, r.duration_ms)))
    } else {
        (starts_ms + r.duration_ms, None)
    };
    if ends_ms <= now {
        return Err(Status::invalid_argument("the window is already over"));
    }
    let silence = Silence {
        id: 0,
        kind,
        matchers: r.matchers.into_iter().collect(),
        starts_ms,
        ends_ms,
        weekly,
        comment: r.comment,
        by,
        expired_ms: None,
    };
    match proposer
        .write(Command::AddSilence {
            silence,
            at_ms: now,
        })
        .await?
    {
        CommandResult::Created(id) => Ok(Response::new(AddSilenceReply { id })),
        other => Err(Status::internal(format!("unexpected reply {other:?}"))),
    }
}

/// Every silence still kept (active, upcoming and recently ended).
pub(super) async fn list_silences(applied: &Replica) -> Reply<ListSilencesReply> {
    let applied = applied.read().await;
    let now = now_ms();
    Ok(Response::new(ListSilencesReply {
        silences: applied
            .state
            .silences
            .by_id
            .values()
            .map(|s| SilenceInfo {
                id: s.id,
                kind: match s.kind {
                    SilenceKind::Silence => "silence",
                    SilenceKind::Maintenance => "maintenance",
                }
                .into(),
                matchers: s.matchers.clone().into_iter().collect(),
                starts_ms: s.starts_ms,
                ends_ms: if s.ends_ms == i64::MAX { 0 } else { s.ends_ms },
                weekly: s.weekly.is_some(),
                duration_ms: s
                    .weekly
                    .map_or(s.ends_ms.saturating_sub(s.starts_ms), |w| w.duration_ms),
                comment: s.comment.clone(),
                by: s.by.clone(),
                expired_ms: s.expired_ms,
                active: s.active(now),
            })
            .collect(),
        now_ms: now,
    }))
}

/// Ends a silence now.
pub(super) async fn expire_silence(proposer: &Proposer, id: u64) -> Reply<ExpireSilenceReply> {
    let command = Command::ExpireSilence {
        id,
        at_ms: now_ms(),
    };
    match proposer.write(command).await? {
        CommandResult::Changed => Ok(Response::new(ExpireSilenceReply {})),
        _ => Err(Status::failed_precondition(format!(
            "silence {id} is unknown or already over"
        ))),
    }
}

/// Sends a synthetic alert to `channel` from this node.
pub(super) async fn test_channel(applied: &Replica, channel: &str) -> Reply<TestChannelReply> {
    let decl = applied
        .read()
        .await
        .state
        .declared
        .channel(channel)
        .cloned();
    let decl = decl.ok_or_else(|| Status::not_found(format!("no channel named {channel:?}")))?;
    let channel = decl
        .channel()
        .map_err(|e| Status::failed_precondition(format!("channel {}: {e}", decl.name)))?;
    let http = http_client().map_err(|e| Status::internal(e.to_string()))?;
    let msg = Message::synthetic(&decl.name, now_ms());
    let started = Instant::now();
    channel
        .send(&http, &msg)
        .await
        .map_err(|e| Status::unavailable(format!("channel {}: {e}", decl.name)))?;
    Ok(Response::new(TestChannelReply {
        key: msg.key.to_string(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    }))
}
