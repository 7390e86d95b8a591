//! The leader's delivery loop. Only the leader sends: it reads the
//! replicated outbox, sends every due notification in its own task (a hung
//! or failing receiver delays nothing else) within the channel's deadline,
//! and writes each outcome back through Raft — `Delivered`, or
//! `DeliveryFailed` with the backoff the state machine computes. A new
//! leader first waits until its state holds everything committed before its
//! term, then sends what is still pending, under the same idempotency key.
//! Deliveries of one incident to one channel go in the order queued.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;
use vantage_common::clock::now_ms;

use super::{Channel, http_client};
use crate::node::Coordinator;
use crate::state::Command;
use crate::state::alerts::DeliveryState;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Deliveries in flight at most.
const MAX_IN_FLIGHT: usize = 64;

/// Runs on every node; acts only while the node leads.
pub async fn run(node: Arc<Coordinator>) {
    let http = match http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: alerts cannot be delivered");
            return;
        }
    };
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    // The term whose earlier entries (a previous leader's acknowledgements)
    // are known applied here.
    let mut caught_up_term = None;
    loop {
        tokio::time::sleep(POLL).await;
        if node.raft.current_leader().await != Some(node.id) {
            continue;
        }
        let term = node.raft.metrics().borrow().current_term;
        if caught_up_term != Some(term) {
            // Until then our outbox may still list as pending what the
            // previous leader delivered.
            if node.raft.ensure_linearizable().await.is_err() {
                continue;
            }
            caught_up_term = Some(term);
        }
        let now = now_ms();
        let due: Vec<_> = {
            let applied = node.applied.read().await;
            let Ok(busy) = in_flight.lock() else {
                return;
            };
            let room = MAX_IN_FLIGHT.saturating_sub(busy.len());
            let outbox = &applied.state.alerts.outbox;
            // In order per (incident, channel): a resolution never overtakes
            // its page, nor a late retry a newer notice.
            let mut first: BTreeMap<(u64, &str), (i64, &str)> = BTreeMap::new();
            for d in outbox
                .values()
                .filter(|d| d.state == DeliveryState::Pending)
            {
                let here = (d.queued_ms, d.message.key.as_str());
                let slot = first
                    .entry((d.message.incident, d.channel.as_str()))
                    .or_insert(here);
                *slot = (*slot).min(here);
            }
            first
                .values()
                .filter_map(|(_, key)| outbox.get(*key))
                .filter(|d| d.next_attempt_ms <= now && !busy.contains(&d.message.key))
                .take(room)
                .map(|d| {
                    (
                        d.clone(),
                        applied.state.declared.channel(&d.channel).cloned(),
                    )
                })
                .collect()
        };
        for (delivery, decl) in due {
            let key = delivery.message.key.clone();
            if let Ok(mut busy) = in_flight.lock() {
                busy.insert(key.clone());
            }
            let (node, http, in_flight) = (node.clone(), http.clone(), in_flight.clone());
            let span = tracing::info_span!(
                "deliver",
                key = %key,
                channel = %delivery.channel,
                attempt = delivery.attempts + 1,
            );
            if let Some(parent) = &delivery.message.trace {
                vantage_common::logging::set_parent(&span, parent);
            }
            let task = async move {
                let sink = decl
                    .as_ref()
                    .map_or("unknown", |d| d.kind.as_str())
                    .to_owned();
                let outcome = match decl.as_ref().map(Channel::from_decl) {
                    None => Err(format!(
                        "channel {} is no longer declared",
                        delivery.channel
                    )),
                    Some(Err(e)) => Err(format!("channel {}: {e}", delivery.channel)),
                    Some(Ok(channel)) => channel
                        .send(&http, &delivery.message)
                        .await
                        .map_err(|e| e.to_string()),
                };
                node.metrics.delivery(&sink, outcome.is_ok());
                let command = match outcome {
                    Ok(()) => {
                        tracing::info!(key = %key, channel = %delivery.channel, "notification delivered");
                        Command::Delivered {
                            key: key.clone(),
                            at_ms: now_ms(),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(key = %key, channel = %delivery.channel, %error, attempt = delivery.attempts + 1, "notification not delivered");
                        Command::DeliveryFailed {
                            key: key.clone(),
                            error,
                            at_ms: now_ms(),
                        }
                    }
                };
                if let Err(e) = node.write(command).await {
                    // Still pending in the outbox: sent again, same key.
                    tracing::warn!(key = %key, error = %e, "could not record the delivery outcome");
                }
                if let Ok(mut busy) = in_flight.lock() {
                    busy.remove(&key);
                }
            };
            tokio::spawn(task.instrument(span));
        }
    }
}
