//! Runs the assigned checks: each on its own schedule with a deterministic
//! phase (so a fleet spreads its load and restarts keep the rhythm), under a
//! concurrency limit, each probe under its hard deadline. A check never
//! overlaps itself; a slow target delays nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
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

/// Keeps one task per check — the agent's own `controls` plus whatever is
/// assigned — following assignment changes.
pub async fn run(
    agent: String,
    ctx: Arc<ProbeContext>,
    concurrency: usize,
    controls: Vec<Assigned>,
    mut assignments: watch::Receiver<Vec<Assigned>>,
    out: mpsc::Sender<Finished>,
) {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut running: HashMap<String, (Assigned, JoinHandle<()>)> = HashMap::new();
    loop {
        let mut wanted: Vec<Assigned> = controls.clone();
        wanted.extend(assignments.borrow_and_update().iter().cloned());
        running.retain(|name, (a, task)| {
            let keep = wanted.iter().any(|w| w == a);
            if !keep {
                tracing::debug!(check = %name, "check unassigned or changed");
                task.abort();
            }
            keep
        });
        for a in wanted {
            if running.contains_key(&a.name) {
                continue;
            }
            let task = tokio::spawn(check_loop(
                agent.clone(),
                a.clone(),
                ctx.clone(),
                limit.clone(),
                out.clone(),
            ));
            running.insert(a.name.clone(), (a, task));
        }
        tracing::info!(checks = running.len(), "assignment in force");
        if assignments.changed().await.is_err() {
            for (_, (_, task)) in running {
                task.abort();
            }
            return;
        }
    }
}

async fn check_loop(
    agent: String,
    a: Assigned,
    ctx: Arc<ProbeContext>,
    limit: Arc<Semaphore>,
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
        // Boxed: the probe's (large) future exists only while it runs, so a
        // thousand sleeping checks stay small.
        let outcome = Box::pin(a.spec.run_within(&ctx, a.timeout)).await;
        drop(permit);
        let finished = Finished {
            check: a.name.clone(),
            started_at_ms,
            outcome,
        };
        if out.send(finished).await.is_err() {
            return;
        }
        tokio::time::sleep(until_next_slot(now_ms(), interval, phase)).await;
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
