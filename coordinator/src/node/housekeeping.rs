//! The leader's housekeeping, run on every node (it acts only while the
//! node leads): expire sessions that miss 3 heartbeats, mark absent agents
//! gone, refresh last-seen times, advance log time (`Tick`), and push each
//! agent its assignment whenever it changes.

use std::sync::Arc;
use std::time::Duration;

use super::{Proposer, Replica};
use crate::sessions::Sessions;
use crate::state::Command;

/// Runs until the process ends.
pub async fn run(
    proposer: Proposer,
    applied: Replica,
    sessions: Arc<Sessions>,
    heartbeat: Duration,
) {
    let tick = (heartbeat / 2).max(Duration::from_millis(50));
    let timeout = heartbeat * 3;
    // Log time for the vote (staleness) advances every ~5 s.
    let clock_every = (5000 / tick.as_millis().max(1)).max(1) as u64;
    let refresh_every =
        (Duration::from_secs(30).as_millis() / tick.as_millis().max(1)).max(1) as u64;
    let mut leading_since: Option<tokio::time::Instant> = None;
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(tick).await;
        ticks += 1;
        if !proposer.leads().await {
            if leading_since.take().is_some() {
                tracing::info!("no longer leading: closing agent sessions");
            }
            sessions.close_all();
            continue;
        }
        let since = *leading_since.get_or_insert_with(tokio::time::Instant::now);
        let now_ms = vantage_common::clock::now_ms();
        let mut gone = sessions.expire(timeout);
        for name in &gone {
            tracing::warn!(agent = %name, "agent missed 3 heartbeats: its checks move");
        }
        let live = sessions.names();
        let mut repair = Vec::new();
        {
            let applied = applied.read().await;
            let timeout_ms = timeout.as_millis() as i64;
            for (name, a) in &applied.state.agents {
                let has_session = live.contains(name);
                if a.connected
                    && !has_session
                    && since.elapsed() > timeout
                    && now_ms - a.last_seen_ms > timeout_ms
                {
                    // Connected to a previous leader, never came here.
                    gone.push(name.clone());
                }
                if !a.connected && has_session {
                    // A stale close raced with a reconnect.
                    repair.push(name.clone());
                }
            }
        }
        gone.sort();
        gone.dedup();
        let mut commands: Vec<Command> = gone
            .into_iter()
            .map(|name| Command::AgentGone {
                name,
                at_ms: now_ms,
            })
            .collect();
        if ticks.is_multiple_of(clock_every) {
            commands.push(Command::Tick { at_ms: now_ms });
        }
        if ticks.is_multiple_of(refresh_every) && !live.is_empty() {
            commands.push(Command::AgentsSeen {
                names: live,
                at_ms: now_ms,
            });
        } else if !repair.is_empty() {
            commands.push(Command::AgentsSeen {
                names: repair,
                at_ms: now_ms,
            });
        }
        if !commands.is_empty()
            && let Err(e) = proposer.write(Command::Batch(commands)).await
        {
            tracing::warn!(error = %e, "could not record agent liveness");
        }
        sessions.push_assignments(&applied.read().await.state);
    }
}
