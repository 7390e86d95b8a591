//! Fast confirmation, on the leader: when a region first sees a check fail,
//! the agents of the other assigned regions are asked to run it now (a
//! second opinion) and the failing agent to retry shortly (2 s after the
//! failing probe began: at once after a timeout), so a quorum
//! verdict comes within seconds instead of after more intervals. Requests
//! go through the agents' session streams; nothing here is replicated (the
//! results it provokes are, like any others).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sessions::Sessions;
use crate::state::State;
use crate::verdict::{RegionState, Verdict};

/// Wait before a failing region retries.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Second opinions for one check at most this often (or every two
/// intervals, if longer).
pub const ASK_EVERY: Duration = Duration::from_secs(30);

/// Rate limits of the requests sent.
#[derive(Debug, Default)]
pub struct Confirmations {
    asked: Mutex<HashMap<String, Instant>>,
    retried: Mutex<HashMap<(String, String), Instant>>,
}

fn due<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Instant>>, key: K, every: Duration) -> bool {
    let Ok(mut map) = map.lock() else {
        return false;
    };
    let now = Instant::now();
    if map
        .get(&key)
        .is_some_and(|t| now.duration_since(*t) < every)
    {
        return false;
    }
    map.insert(key, now);
    true
}

impl Confirmations {
    /// After a batch from `agent` in `region` was applied: `failing` names
    /// the checks it reported failing, with how long each probe took.
    pub fn after_batch(
        &self,
        sessions: &Sessions,
        state: &State,
        agent: &str,
        region: &str,
        failing: &[(String, Duration)],
    ) {
        for (name, took) in failing {
            let (Some(check), Some(v)) = (state.declared.check(name), state.verdicts.get(name))
            else {
                continue;
            };
            let Some(tracker) = v.regions.get(region) else {
                continue;
            };
            // Confirming: failing here, not yet DOWN, not already an outage.
            if tracker.fails == 0
                || tracker.state == RegionState::Down
                || matches!(v.verdict, Verdict::Outage { .. })
            {
                continue;
            }
            if due(
                &self.retried,
                (name.clone(), region.to_owned()),
                RETRY_DELAY,
            ) {
                // A probe that timed out has already waited.
                let delay = RETRY_DELAY.saturating_sub(*took);
                sessions.run_now(name, delay, Some(agent), None);
            }
            let interval = check.interval.duration();
            if tracker.fails == 1 && due(&self.asked, name.clone(), ASK_EVERY.max(interval * 2)) {
                let asked = sessions.run_now(name, Duration::ZERO, None, Some(agent));
                tracing::info!(check = %name, %region, ?asked, "failure seen: second opinions asked");
            }
        }
    }
}
