//! Runs the assigned checks: each on its own schedule with a deterministic
//! phase (so a fleet spreads its load and restarts keep the rhythm), under a
//! concurrency limit, each probe under its hard deadline. A check never
//! overlaps itself; a slow target delays nothing else. The coordinator may
//! ask for a run out of schedule (fast confirmation of a failure).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use vantage_common::Outcome;
use vantage_common::clock::now_ms;

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

/// Milliseconds until the next slot of a check with this `interval` and
/// `phase`: slots are at wall-clock times `t` with `t ≡ phase (mod interval)`.
pub fn until_next_slot(now_ms: i64, interval: Duration, phase: u64) -> Duration {
    let interval_ms = interval.as_millis().max(1) as i64;
    let phase = (phase % interval_ms as u64) as i64;
    let since = (now_ms - phase).rem_euclid(interval_ms);
    Duration::from_millis((interval_ms - since) as u64)
}

/// A request to run a check out of schedule after a delay.
pub type RunNow = (String, Duration);

struct Running {
    assigned: Assigned,
    task: JoinHandle<()>,
    /// Out-of-schedule runs (one waiting at most).
    trigger: mpsc::Sender<Duration>,
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

/// Keeps one task per check — the agent's own `controls` plus whatever is
/// assigned — following assignment changes, and runs a check out of
/// schedule when the coordinator asks (`run_now`).
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
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let mut wanted: Vec<Assigned> = controls.clone();
        wanted.extend(assignments.borrow_and_update().iter().cloned());
        running.retain(|name, r| {
            let keep = wanted.contains(&r.assigned);
            if !keep {
                tracing::debug!(check = %name, "check unassigned or changed");
                r.task.abort();
            }
            keep
        });
        for a in wanted {
            if running.contains_key(&a.name) {
                continue;
            }
            let (trigger, triggered) = mpsc::channel(1);
            let task = tokio::spawn(check_loop(
                agent.clone(),
                a.clone(),
                ctx.clone(),
                limit.clone(),
                triggered,
                out.clone(),
            ));
            let name = a.name.clone();
            running.insert(
                name,
                Running {
                    assigned: a,
                    task,
                    trigger,
                },
            );
        }
        tracing::info!(checks = running.len(), "assignment in force");
        metrics
            .checks
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
        loop {
            tokio::select! {
                changed = assignments.changed() => {
                    if changed.is_err() {
                        for (_, r) in running {
                            r.task.abort();
                        }
                        return;
                    }
                    break;
                }
                Some((check, delay)) = run_now.recv() => match running.get(&check) {
                    // Full: a run is already waiting, which serves this request too.
                    Some(r) => {
                        let _ = r.trigger.try_send(delay);
                    }
                    None => tracing::debug!(%check, "run-now for a check not assigned here"),
                },
            }
        }
    }
}

async fn check_loop(
    agent: String,
    a: Assigned,
    ctx: Arc<ProbeContext>,
    limit: Arc<Semaphore>,
    mut triggered: mpsc::Receiver<Duration>,
    out: mpsc::Sender<Finished>,
) {
    let interval = a.interval.max(MIN_INTERVAL);
    let phase = phase_hash(&agent, &a.name);
    // A new assignment gets a first result promptly (spread over up to ten
    // seconds, so a thousand checks do not start at once), then the check
    // settles on its phase.
    let spread = interval.min(Duration::from_secs(10)).as_millis().max(1) as u64;
    tokio::time::sleep(Duration::from_millis(phase % spread)).await;
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let started_at_ms = now_ms();
        let span = tracing::info_span!(
            "probe",
            check = %a.name,
            kind = tracing::field::Empty,
            target = tracing::field::Empty,
            status = tracing::field::Empty,
            class = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        // Boxed: the probe's (large) future exists only while it runs, so a
        // thousand sleeping checks stay small.
        let outcome = Box::pin(crate::check::run_within(&a.spec, &ctx, a.timeout))
            .instrument(span.clone())
            .await;
        drop(permit);
        span.record("kind", outcome.kind.as_str());
        span.record("target", outcome.target.as_str());
        span.record("status", outcome.status.as_str());
        if let Some(class) = outcome.class {
            span.record("class", class.as_str());
        }
        span.record("duration_ms", outcome.duration_ms);
        let finished = Finished {
            check: a.name.clone(),
            started_at_ms,
            outcome,
            trace: vantage_common::logging::traceparent(&span),
        };
        drop(span);
        if out.send(finished).await.is_err() {
            return;
        }
        // The next slot, or sooner when asked (never overlapping itself).
        tokio::select! {
            _ = tokio::time::sleep(until_next_slot(now_ms(), interval, phase)) => {}
            Some(delay) = triggered.recv() => tokio::time::sleep(delay).await,
        }
    }
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
        assert_eq!(phase_hash("a", "b"), phase_hash("a", "b"));
        assert_ne!(phase_hash("a", "b"), phase_hash("b", "a"));
    }
}
