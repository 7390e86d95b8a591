//! The leader's sender. Only the leader sends: it asks the replicated
//! outbox what is due ([`Outbox::due`](crate::state::outbox::Outbox::due),
//! pure), sends each notification in its own task (a hung or failing
//! receiver delays nothing else) through the channel's sink, within the
//! channel's deadline, and writes each outcome back through Raft —
//! `Delivered`, or `DeliveryFailed` with the backoff the state machine
//! computes. A new leader first waits until its state holds everything
//! committed before its term, then sends what is still pending, under the
//! same idempotency key.
//!
//! What is in flight is owned by this loop alone (a `JoinSet` of sends and
//! the keys they carry): no lock to poison, and a send that panics frees
//! its key like one that returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tracing::Instrument;
use vantage_common::clock::now_ms;

use super::{Proposer, Replica};
use crate::alert::http_client;
use crate::declared::ChannelDecl;
use crate::metrics::Metrics;
use crate::notification::Key;
use crate::state::Command;
use crate::state::outbox::Delivery;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Deliveries in flight at most.
const MAX_IN_FLIGHT: usize = 64;

/// Runs on every node until the process ends; sends only while the node
/// leads.
pub async fn run(proposer: Proposer, applied: Replica, metrics: Arc<Metrics>) {
    let http = match http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: alerts cannot be delivered");
            return;
        }
    };
    let mut sends: JoinSet<()> = JoinSet::new();
    let mut in_flight: HashMap<Id, Key> = HashMap::new();
    // The term whose earlier entries (a previous leader's acknowledgements)
    // are known applied here.
    let mut caught_up_term = None;
    loop {
        tokio::time::sleep(POLL).await;
        while let Some(done) = sends.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => {
                    tracing::error!(error = %e, "a delivery task failed; its notification is retried");
                    e.id()
                }
            };
            in_flight.remove(&id);
        }
        // Until caught up our outbox may still list as pending what the
        // previous leader delivered.
        if !proposer.leads_caught_up(&mut caught_up_term).await {
            continue;
        }
        let busy: HashSet<Key> = in_flight.values().cloned().collect();
        let due: Vec<(Delivery, Option<ChannelDecl>)> = {
            let applied = applied.read().await;
            let state = &applied.state;
            let room = MAX_IN_FLIGHT.saturating_sub(busy.len());
            state
                .outbox
                .due(now_ms(), &busy, room)
                .into_iter()
                .map(|d| (d.clone(), state.declared.channel(&d.channel).cloned()))
                .collect()
        };
        for (delivery, decl) in due {
            let key = delivery.message.key.clone();
            let span = tracing::info_span!(
                "deliver",
                key = %key,
                channel = %delivery.channel,
                attempt = delivery.attempts + 1,
            );
            if let Some(parent) = &delivery.message.trace {
                vantage_common::logging::set_parent(&span, parent);
            }
            let send = send(
                proposer.clone(),
                http.clone(),
                metrics.clone(),
                delivery,
                decl,
            );
            let handle = sends.spawn(send.instrument(span));
            in_flight.insert(handle.id(), key);
        }
    }
}

/// One attempt at `delivery`, its outcome written back through Raft.
async fn send(
    proposer: Proposer,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    delivery: Delivery,
    decl: Option<ChannelDecl>,
) {
    let key = delivery.message.key.clone();
    // Recipients reached so far, this attempt's added as they are.
    let mut reached = delivery.reached.clone();
    let sink = decl
        .as_ref()
        .map_or("unknown", |d| d.kind.as_str())
        .to_owned();
    let outcome = match decl.as_ref().map(ChannelDecl::channel) {
        None => Err(format!(
            "channel {} is no longer declared",
            delivery.channel
        )),
        Some(Err(e)) => Err(format!("channel {}: {e}", delivery.channel)),
        Some(Ok(channel)) => channel
            .send_remaining(&http, &delivery.message, &mut reached)
            .await
            .map_err(|e| e.to_string()),
    };
    metrics.delivery(&sink, outcome.is_ok());
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
                reached,
                at_ms: now_ms(),
            }
        }
    };
    if let Err(e) = proposer.write(command).await {
        // Still pending in the outbox: sent again, same key.
        tracing::warn!(key = %key, error = %e, "could not record the delivery outcome");
    }
}
