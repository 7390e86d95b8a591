//! The declared checks and what they see: apply, list, status, results,
//! history.

use tonic::{Response, Status};
use vantage_common::clock::now_ms;
use vantage_proto::v1::{
    ApplyReply, ApplyRequest, ChangeInfo, CheckInfo, CheckStatus, GetResultsReply,
    GetResultsRequest, HistoryReply, HistoryRequest, ImpairedRegion, ListChangesReply,
    ListChangesRequest, ListChecksReply, RegionStatus, RegionUptime, ResultInfo, StatusReply,
    StatusRequest,
};

use super::Reply;
use super::incidents::incident_info;
use crate::declared::{CheckDecl, Declared, Diff};
use crate::node::{Proposer, Replica};
use crate::selection::{Filter, select};
use crate::state::changes::Change;
use crate::state::results::Recent;
use crate::state::rollup::HOUR_MS;
use crate::state::{Command, CommandResult, State, parts};
use crate::verdict::Verdict;

fn check_info(c: &CheckDecl, state: &State) -> CheckInfo {
    let baseline = state
        .verdicts
        .get(&c.name)
        .and_then(|v| v.drift.baseline.as_ref());
    CheckInfo {
        on_change: serde_json::to_value(c.on_change)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        baseline: baseline
            .map(|b| {
                b.value
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        baseline_since_ms: baseline.map_or(0, |b| b.since_ms),
        name: c.name.clone(),
        kind: c.kind.to_string(),
        target: c.target.clone(),
        interval: c.interval.to_string(),
        timeout: c.timeout.map(|t| t.to_string()),
        regions: c.regions.clone(),
        labels: c.labels.clone().into_iter().collect(),
        fail_after: c.fail_after,
        recover_after: c.recover_after,
        quorum: c.quorum.to_string(),
        severity: c.severity.to_string(),
        routes: c.routes.clone(),
        params_json: serde_json::to_string(&c.params).unwrap_or_else(|_| "{}".into()),
    }
}

fn recent_info(r: &Recent) -> ResultInfo {
    ResultInfo {
        region: r.region().to_owned(),
        agent: r.agent().to_owned(),
        started_at_ms: r.started_at_ms,
        status: r.status.to_string(),
        class: r.class.map(|c| c.to_string()).unwrap_or_default(),
        message: r.message.to_string(),
        duration_ms: u64::from(r.duration_ms),
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

/// Validates a whole declaration, then replaces the current one with it
/// (or, dry run, says what that would change).
pub(super) async fn apply(
    applied: &Replica,
    proposer: &Proposer,
    req: ApplyRequest,
) -> Reply<ApplyReply> {
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
        let current = applied.read().await.state.declared.clone();
        return Ok(apply_reply(Diff::between(&current, &declared), false));
    }
    // In parts, one log entry each, so that a follower can take each in
    // one heartbeat however large the declaration (`state/parts.rs`).
    let parts = parts::split(&declared, parts::PART_BYTES)
        .map_err(|e| Status::internal(format!("encoding the declaration: {e}")))?;
    let count = u32::try_from(parts.len())
        .map_err(|_| Status::invalid_argument("the declaration is too large"))?;
    let id = declaration_id();
    let at_ms = now_ms();
    for (index, json) in (0..count).zip(parts) {
        let part = Command::DeclarationPart {
            id,
            index,
            count,
            json,
            at_ms,
        };
        match proposer.write(part).await? {
            CommandResult::Staged if index + 1 < count => {}
            CommandResult::Applied(diff) if index + 1 == count => {
                return Ok(apply_reply(diff, true));
            }
            CommandResult::Superseded => {
                return Err(Status::aborted(
                    "another declaration was applied meanwhile and this one was not: apply it again",
                ));
            }
            CommandResult::Refused(why) => return Err(Status::internal(why)),
            other => return Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }
    Err(Status::internal("a declaration of no parts"))
}

/// An id for a declaration's parts, unlike any other proposer's.
fn declaration_id() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // A randomly seeded hash, so two nodes proposing at the same instant
    // still differ.
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    foldhash::fast::RandomState::default().hash_one((seq, now_ms()))
}

/// Every declared check.
pub(super) async fn list(applied: &Replica) -> Reply<ListChecksReply> {
    let applied = applied.read().await;
    let checks = applied
        .state
        .declared
        .checks
        .iter()
        .map(|c| check_info(c, &applied.state))
        .collect();
    Ok(Response::new(ListChecksReply { checks }))
}

/// One declared check.
pub(super) async fn get(applied: &Replica, name: &str) -> Reply<CheckInfo> {
    let applied = applied.read().await;
    let check = applied
        .state
        .declared
        .checks
        .iter()
        .find(|c| c.name == name);
    check
        .map(|c| Response::new(check_info(c, &applied.state)))
        .ok_or_else(|| Status::not_found(format!("no check named {name:?}")))
}

/// The verdict of the checks a request selects, per region, a page at a
/// time, and the impaired vantages.
pub(super) async fn status(applied: &Replica, req: StatusRequest) -> Reply<StatusReply> {
    let filter = Filter::new(&req.verdict, &req.check, &req.label, &req.region)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let applied = applied.read().await;
    let state = &applied.state;
    let page = select(state, &filter, &req.after, req.limit as usize);
    let checks = page
        .checks
        .iter()
        .map(|(c, v)| {
            let down = match &v.verdict {
                Verdict::Regional { down } | Verdict::Outage { down } => down.clone(),
                _ => vec![],
            };
            let regions = v
                .regions
                .iter()
                .filter(|(region, _)| filter.shows_region(region))
                .map(|(region, t)| RegionStatus {
                    region: region.to_string(),
                    state: t.state.name().into(),
                    fails: t.fails,
                    passes: t.passes,
                    last_result_ms: t.last_result_ms,
                })
                .collect();
            CheckStatus {
                name: c.name.clone(),
                verdict: v.verdict.name().into(),
                down,
                since_ms: v.since_ms,
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
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Response::new(StatusReply {
        checks,
        now_ms: now_ms(),
        impaired,
        next: page.next.unwrap_or_default(),
        matched: count(page.matched),
        verdicts: page
            .verdicts
            .iter()
            .map(|(v, n)| ((*v).to_owned(), count(*n)))
            .collect(),
    }))
}

/// The latest result per region and the recent ones of a check.
pub(super) async fn results(applied: &Replica, req: GetResultsRequest) -> Reply<GetResultsReply> {
    let applied = applied.read().await;
    let state = &applied.state;
    if !state.declared.checks.iter().any(|c| c.name == req.check) {
        return Err(Status::not_found(format!("no check named {:?}", req.check)));
    }
    let wanted = |region: &str| req.region.is_empty() || req.region == region;
    let (latest, recent) = match state.results.get(&req.check) {
        Some(r) => (
            r.latest
                .values()
                .map(|l| &l.entry)
                .filter(|x| wanted(x.region()))
                .map(recent_info)
                .collect(),
            r.recent
                .iter()
                .rev()
                .filter(|x| wanted(x.region()))
                .take(req.recent as usize)
                .map(recent_info)
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

/// Uptime of a check since a time, per region, with its incidents.
pub(super) async fn history(applied: &Replica, r: HistoryRequest) -> Reply<HistoryReply> {
    let applied = applied.read().await;
    let state = &applied.state;
    let Some(verdict) = state.verdicts.get(&r.check) else {
        return Err(Status::not_found(format!("no check named {:?}", r.check)));
    };
    let now = now_ms();
    let since = r.since_ms - r.since_ms.rem_euclid(HOUR_MS);
    let t = verdict.time_since(since, now);
    let decided = (t.up_ms + t.noted_ms + t.degraded_ms + t.down_ms).max(1) as f64;
    let pct = |ms: i64| ms as f64 * 100.0 / decided;
    let regions = state
        .results
        .get(&r.check)
        .map(|res| {
            res.rollups
                .iter()
                .map(|(region, rollups)| {
                    let h = rollups.since(since);
                    let (pass, warn, fail) =
                        (u64::from(h.pass), u64::from(h.warn), u64::from(h.fail));
                    let counted = (pass + warn + fail).max(1) as f64;
                    RegionUptime {
                        region: region.to_string(),
                        pass,
                        warn,
                        fail,
                        error: u64::from(h.error),
                        uptime_pct: (pass + warn) as f64 * 100.0 / counted,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let incidents = state
        .incidents
        .all
        .values()
        .filter(|i| i.check == r.check && i.resolved_ms.is_none_or(|end| end >= since))
        .map(|i| incident_info(i, state))
        .collect();
    let changes = changes_of(state, Some(&r.check), since);
    Ok(Response::new(HistoryReply {
        changes,
        check: r.check,
        since_ms: since,
        now_ms: now,
        up_pct: pct(t.up_ms + t.noted_ms),
        degraded_pct: pct(t.degraded_ms),
        down_pct: pct(t.down_ms),
        unknown_ms: t.unknown_ms,
        regions,
        incidents,
    }))
}

fn change_info(check: &str, c: &Change) -> ChangeInfo {
    let map = |o: &vantage_common::observed::Observed| {
        o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    ChangeInfo {
        check: check.to_owned(),
        at_ms: c.at_ms,
        summary: c.summary.clone(),
        severity: c.severity.map(|s| s.to_string()).unwrap_or_default(),
        renewal: c.renewal,
        regions: c.regions.clone(),
        incident: c.incident.unwrap_or(0),
        old: map(&c.old),
        new: map(&c.new),
    }
}

/// Changes of one check (or all) at or after `since_ms`, oldest first.
fn changes_of(state: &State, check: Option<&str>, since_ms: i64) -> Vec<ChangeInfo> {
    crate::state::changes::since(&state.verdicts, check, since_ms)
        .into_iter()
        .map(|(name, c)| change_info(name, c))
        .collect()
}

/// Changes of agreed values (drift), of one check or all.
pub(super) async fn changes(applied: &Replica, r: ListChangesRequest) -> Reply<ListChangesReply> {
    let applied = applied.read().await;
    let state = &applied.state;
    if !r.check.is_empty() && !state.declared.checks.iter().any(|c| c.name == r.check) {
        return Err(Status::not_found(format!("no check named {:?}", r.check)));
    }
    let check = (!r.check.is_empty()).then_some(r.check.as_str());
    Ok(Response::new(ListChangesReply {
        changes: changes_of(state, check, r.since_ms),
    }))
}
