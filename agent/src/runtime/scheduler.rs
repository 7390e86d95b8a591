//! Runs the assigned checks: each on its own schedule with a deterministic
//! phase (so a fleet spreads its load and restarts keep the rhythm), under a
//! concurrency limit, each probe under its hard deadline. A check never
//! overlaps itself; a slow target delays nothing else. The coordinator may
//! ask for a run out of schedule (fast confirmation of a failure). One
//! queue of due times drives every check; a probe is a task while it runs.
//!
//! Phases fall on a [`START_GRID`]: checks whose phases are close start
//! together, so their probes' network events share the agent's wake-ups
//! instead of each waking it alone (`vantage-bench agent --checks 10000`:
//! a fifth less CPU per probe than with phases to the millisecond).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;
use vantage_common::Outcome;
use vantage_common::clock::now_ms;
use vantage_common::logging::KeyValue;

use crate::check::CheckSpec;
use crate::context::ProbeContext;

/// Shortest interval honoured.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// One check this agent must run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    /// Check name.
    pub name: String,
    /// The probe.
    pub spec: CheckSpec,
    /// How often.
    pub interval: Duration,
    /// Deadline per probe (`None`: the kind's default).
    pub timeout: Option<Duration>,
}

/// A finished probe.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Check name.
    pub check: String,
    /// Probe start, ms since the epoch.
    pub started_at_ms: i64,
    /// The outcome.
    pub outcome: Outcome,
    /// W3C traceparent of the probe's span, when traces are exported.
    pub trace: Option<String>,
}

/// A stable 64-bit hash (FNV-1a) for schedule phases.
fn phase_hash(agent: &str, check: &str) -> u64 {
    vantage_common::hash::fnv1a_pair(agent, 0, check)
}

/// Probes start on this grid. An idle agent pays a wake-up (a context
/// switch, in a VM an exit) for each network event; probes that start
/// together share them. Coarser saves more but queues each probe's
/// handshake behind its neighbours', which its timings would show: at
/// 10,000 checks a minute about 8 probes start together, and on loopback
/// (where a probe is all CPU) a dialogue takes 7 ms at the median instead
/// of 2.5; across a real network the round trips hide most of it.
pub const START_GRID: Duration = Duration::from_millis(50);

/// `ms` rounded down to the [`START_GRID`].
fn on_grid(ms: u64) -> u64 {
    let grid = START_GRID.as_millis() as u64;
    ms - ms % grid
}

/// Milliseconds until the next slot of a check with this `interval` and
/// `phase`: slots are at wall-clock times `t` with `t ≡ phase (mod interval)`,
/// the phase rounded down to the [`START_GRID`].
pub fn until_next_slot(now_ms: i64, interval: Duration, phase: u64) -> Duration {
    let interval_ms = interval.as_millis().max(1) as i64;
    let phase = on_grid(phase % interval_ms as u64) as i64;
    let since = (now_ms - phase).rem_euclid(interval_ms);
    Duration::from_millis((interval_ms - since) as u64)
}

/// A request to run a check out of schedule after a delay.
pub type RunNow = (String, Duration);

/// What the scheduler keeps of one check.
struct Slot {
    assigned: Arc<Assigned>,
    /// Its schedule phase (ms).
    phase: u64,
    /// When it runs next (when not running).
    next: Instant,
    /// The probe under way.
    running: Option<JoinHandle<()>>,
    /// A run asked for out of schedule while one was under way: after it,
    /// with this delay (one waiting at most).
    pending: Option<Duration>,
}

/// What the scheduler runs with.
#[derive(Debug)]
pub struct Setup {
    /// Agent name (schedule phases depend on it).
    pub agent: String,
    /// Probe context (source address, resolver).
    pub ctx: Arc<ProbeContext>,
    /// Probes at once.
    pub concurrency: usize,
    /// The agent's own control checks.
    pub controls: Vec<Assigned>,
}

/// Keeps the agent's own `controls` plus whatever is assigned on their
/// schedules, following assignment changes, and runs a check out of
/// schedule when the coordinator asks (`run_now`). One task and one queue
/// of due times serve every check; a task exists only while a probe runs,
/// so ten thousand idle checks cost little more than their declarations.
pub async fn run(
    setup: Setup,
    mut assignments: watch::Receiver<Vec<Assigned>>,
    mut run_now: mpsc::Receiver<RunNow>,
    out: mpsc::Sender<Finished>,
    metrics: Arc<super::metrics::AgentMetrics>,
) {
    let Setup {
        agent,
        ctx,
        concurrency,
        controls,
    } = setup;
    let limit = Arc::new(Semaphore::new(concurrency));
    // Checks by id (a changed check gets a new one), ids by name, and the
    // due queue: entries whose check is gone, running or rescheduled are
    // skipped when they come up.
    let mut slots: HashMap<u64, Slot> = HashMap::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next_id = 0u64;
    let (done_tx, mut done) = mpsc::unbounded_channel::<u64>();
    loop {
        // Follow the assignment.
        let wanted: Vec<Assigned> = controls
            .iter()
            .cloned()
            .chain(assignments.borrow_and_update().iter().cloned())
            .collect();
        let mut keep: HashMap<&str, &Assigned> =
            wanted.iter().map(|a| (a.name.as_str(), a)).collect();
        ids.retain(|name, id| {
            let same = slots
                .get(id)
                .is_some_and(|s| keep.get(name.as_str()) == Some(&&*s.assigned));
            if !same {
                tracing::debug!(check = %name, "check unassigned or changed");
                if let Some(task) = slots.remove(id).and_then(|s| s.running) {
                    task.abort();
                }
            }
            same
        });
        keep.retain(|name, _| !ids.contains_key(*name));
        let now = Instant::now();
        for a in keep.into_values() {
            next_id += 1;
            let phase = phase_hash(&agent, &a.name);
            // A new assignment gets a first result promptly (spread over up
            // to ten seconds, so a thousand checks do not start at once),
            // then the check settles on its phase.
            let spread = a.interval.max(MIN_INTERVAL).min(Duration::from_secs(10));
            let first =
                now + Duration::from_millis(on_grid(phase % spread.as_millis().max(1) as u64));
            ids.insert(a.name.clone(), next_id);
            slots.insert(
                next_id,
                Slot {
                    assigned: Arc::new(a.clone()),
                    phase,
                    next: first,
                    running: None,
                    pending: None,
                },
            );
            queue.push(Reverse((first, next_id)));
        }
        // Entries of checks gone pile up no further than one per check.
        if queue.len() > 2 * slots.len() + 16 {
            queue.retain(|Reverse((at, id))| slots.get(id).is_some_and(|s| s.next == *at));
        }
        tracing::info!(checks = slots.len(), "assignment in force");
        metrics
            .checks
            .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        loop {
            let due = queue.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                changed = assignments.changed() => {
                    if changed.is_err() {
                        for task in slots.into_values().filter_map(|s| s.running) {
                            task.abort();
                        }
                        return;
                    }
                    break;
                }
                Some((check, delay)) = run_now.recv() => {
                    let Some(slot) = ids.get(&check).and_then(|id| slots.get_mut(id).map(|s| (*id, s))) else {
                        tracing::debug!(%check, "run-now for a check not assigned here");
                        continue;
                    };
                    let (id, slot) = slot;
                    if slot.running.is_some() {
                        // A run already waiting serves this request too.
                        slot.pending.get_or_insert(delay);
                    } else {
                        slot.next = Instant::now() + delay;
                        queue.push(Reverse((slot.next, id)));
                    }
                }
                Some(id) = done.recv() => {
                    if let Some(slot) = slots.get_mut(&id) {
                        slot.running = None;
                        let wait = match slot.pending.take() {
                            Some(delay) => delay,
                            None => {
                                let interval = slot.assigned.interval.max(MIN_INTERVAL);
                                until_next_slot(now_ms(), interval, slot.phase)
                            }
                        };
                        slot.next = Instant::now() + wait;
                        queue.push(Reverse((slot.next, id)));
                    }
                }
                _ = sleep_until_due(due) => {
                    let now = Instant::now();
                    while let Some(Reverse((at, id))) = queue.peek().copied() {
                        if at > now {
                            break;
                        }
                        queue.pop();
                        let Some(slot) = slots.get_mut(&id) else { continue };
                        if slot.next != at || slot.running.is_some() {
                            continue; // rescheduled, or under way
                        }
                        let probe = probe_once(slot.assigned.clone(), ctx.clone(), limit.clone());
                        let (out, done_tx) = (out.clone(), done_tx.clone());
                        slot.running = Some(tokio::spawn(async move {
                            let Some(finished) = probe.await else { return };
                            if out.send(finished).await.is_ok() {
                                let _ = done_tx.send(id);
                            }
                        }));
                    }
                }
            }
        }
    }
}

/// Sleeps until `due`, or for ever when nothing is queued.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One probe of `a` under the concurrency limit and its deadline; `None`
/// when the agent is shutting down.
async fn probe_once(
    a: Arc<Assigned>,
    ctx: Arc<ProbeContext>,
    limit: Arc<Semaphore>,
) -> Option<Finished> {
    let permit = limit.acquire_owned().await.ok()?;
    let started_at_ms = now_ms();
    let span = tracing::info_span!("probe", check = %a.name);
    // Boxed: the probe's (large) future exists only while it runs.
    let outcome = Box::pin(crate::check::run_within(&a.spec, &ctx, a.timeout))
        .instrument(span.clone())
        .await;
    drop(permit);
    let trace = vantage_common::logging::traceparent(&span);
    if trace.is_some() {
        // Traced: what the probe found goes on its span.
        let o = &outcome;
        vantage_common::logging::set_attributes(
            &span,
            [
                KeyValue::new("kind", o.kind.clone()),
                KeyValue::new("target", o.target.clone()),
                KeyValue::new("status", o.status.as_str()),
                KeyValue::new(
                    "duration_ms",
                    i64::try_from(o.duration_ms).unwrap_or(i64::MAX),
                ),
            ]
            .into_iter()
            .chain(o.class.map(|c| KeyValue::new("class", c.as_str()))),
        );
    }
    Some(Finished {
        check: a.name.clone(),
        started_at_ms,
        outcome,
        trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_phase_aligned_and_deterministic() {
        let i = Duration::from_secs(60);
        assert_eq!(until_next_slot(0, i, 10_000), Duration::from_millis(10_000));
        assert_eq!(
            until_next_slot(10_000, i, 10_000),
            Duration::from_millis(60_000)
        );
        assert_eq!(
            until_next_slot(70_001, i, 10_000),
            Duration::from_millis(59_999)
        );
        // Phases close together share a slot on the grid.
        assert_eq!(until_next_slot(0, i, 10_049), Duration::from_millis(10_000));
        assert_eq!(until_next_slot(0, i, 70_020), Duration::from_millis(10_000));
        assert_eq!(until_next_slot(0, i, 10_050), Duration::from_millis(10_050));
        assert_eq!(phase_hash("a", "b"), phase_hash("a", "b"));
        assert_ne!(phase_hash("a", "b"), phase_hash("b", "a"));
    }
}
