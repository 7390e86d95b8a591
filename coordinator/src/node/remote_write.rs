//! The leader's remote-write loop: reads the applied log after the
//! replicated cursor (`State::remote_written`), turns the results it holds
//! into samples (`remote_write.rs`), sends them in requests of at most
//! `max_samples_per_send`, and moves the cursor through Raft after each
//! read of up to 1 MiB of entries. A new leader
//! first waits until its state holds everything committed before its term,
//! then resumes after the cursor: at-least-once, with identical samples a
//! TSDB deduplicates.
//!
//! A request that fails for a reason worth retrying (transport, timeout,
//! 5xx, 429) is retried with backoff, the cursor held where it is; one
//! refused (other 4xx) is dropped and counted, one refused for a stale
//! sample halved (`Writer::drain`). Entries a snapshot purged
//! before they were sent (the receiver was down for longer than the log
//! keeps) are skipped with a warning.

use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{RaftLogReader, RaftLogStorage};

use super::{Proposer, Replica};
use crate::config::RemoteWriteSettings;
use crate::metrics::Metrics;
use crate::raft::log_store::LogStore;
use crate::remote_write::{Drained, Samples, Writer, results};
use crate::state::Command;

/// How often the log is looked at.
const POLL: Duration = Duration::from_secs(1);
/// Entries without results read past before the cursor is written anyway.
const IDLE_ENTRIES: u64 = 1000;
/// Retry backoff bounds.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Runs on every node until the process ends; sends only while the node
/// leads.
pub async fn run(
    settings: RemoteWriteSettings,
    log: LogStore,
    proposer: Proposer,
    applied: Replica,
    metrics: Arc<Metrics>,
) {
    let writer = match Writer::new(&settings) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "remote_write: cannot start; no samples are sent");
            return;
        }
    };
    let mut log = log;
    let mut caught_up_term = None;
    loop {
        tokio::time::sleep(POLL).await;
        // Until caught up the cursor may lag what the previous leader sent.
        if !proposer.leads_caught_up(&mut caught_up_term).await {
            continue;
        }
        if let Err(e) = catch_up(&writer, &mut log, &proposer, &applied, &metrics).await {
            tracing::warn!(error = %e, "remote_write: stopped for now");
        }
    }
}

/// Sends everything applied after the cursor, moving the cursor as it goes.
async fn catch_up(
    writer: &Writer,
    log: &mut LogStore,
    proposer: &Proposer,
    applied: &Replica,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let cursor = applied.read().await.state.remote_written;
    let last_applied = proposer
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index);
    if last_applied <= cursor {
        return Ok(());
    }
    let first = log
        .get_log_state()
        .await?
        .last_purged_log_id
        .map_or(0, |l| l.index + 1);
    let mut next = cursor + 1;
    if next < first && cursor == 0 {
        next = first; // remote-write was just switched on: from what the log holds
    } else if next < first {
        tracing::warn!(
            from = next,
            to = first - 1,
            "remote_write: log entries were compacted before they were sent; their samples are lost"
        );
        metrics.remote_write_skipped.inc_by(first - next);
        next = first;
    }
    while next <= last_applied {
        let entries = log.limited_get_log_entries(next, last_applied + 1).await?;
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            break;
        };
        // Each result with its agent and its check's kind (checks no
        // longer declared are not sent).
        let tagged: Vec<_> = {
            let applied = applied.read().await;
            entries
                .iter()
                .flat_map(results)
                .filter_map(|(agent, r)| {
                    let kind = applied.state.declared.check(&r.check)?.kind.name();
                    Some((agent, kind, r))
                })
                .collect()
        };
        let any = !tagged.is_empty();
        let mut samples = Samples::default();
        for (agent, kind, r) in tagged {
            samples.add(agent, kind, r);
            if samples.len() >= writer.max_samples {
                send(writer, std::mem::take(&mut samples), proposer, metrics).await?;
            }
        }
        if !samples.is_empty() {
            send(writer, samples, proposer, metrics).await?;
        }
        next = last + 1;
        metrics
            .remote_write_index
            .set(i64::try_from(last).unwrap_or(i64::MAX));
        // The cursor's own entry is one more to read past: it is written
        // after results went out, or once entries without any have piled
        // up, so that an idle cluster does not write one a second.
        if any || last - cursor >= IDLE_ENTRIES {
            write_cursor(proposer, last).await?;
        }
    }
    Ok(())
}

/// Moves the replicated cursor to `index`.
async fn write_cursor(proposer: &Proposer, index: u64) -> anyhow::Result<()> {
    proposer
        .write(Command::RemoteWritten { index })
        .await
        .map_err(|e| anyhow::anyhow!("cannot move the cursor: {e}"))?;
    Ok(())
}

/// Sends `samples` in requests of at most `max_samples_per_send`, retrying
/// with backoff what fails for a reason worth it; gives up (an error) when
/// this node stops leading.
async fn send(
    writer: &Writer,
    samples: Samples,
    proposer: &Proposer,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let mut queue = samples.requests(writer.max_samples);
    queue.reverse(); // taken off the end
    let mut backoff = BACKOFF.0;
    loop {
        let mut done = Drained::default();
        let outcome = writer.drain(&mut queue, &mut done).await;
        metrics.remote_write_samples(true, done.sent as u64);
        metrics.remote_write_samples(false, done.dropped as u64);
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "remote_write: failed; retrying");
                metrics.remote_write_failures.inc();
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
        if !proposer.leads().await {
            anyhow::bail!("no longer leading");
        }
    }
}
