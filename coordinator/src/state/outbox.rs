//! The outbox: every notification planned (`state/planning.rs`), by
//! idempotency key, with the outcome of every delivery attempt written back
//! by the leader's sender (`node/delivery.rs`). What is due now is a pure
//! function of the outbox ([`Outbox::due`]): deliveries of one incident to
//! one channel go in the order queued, failures back off, and a delivery
//! is retried for a day before it is abandoned.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::notification::{Key, Message};

/// Finished deliveries kept in the outbox for listings.
pub const KEEP_FINISHED: usize = 1000;
/// Age after which an undelivered notification is abandoned (retries go
/// on until then, at most every 5 minutes).
pub const MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet acknowledged by the receiver.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Given up after too many attempts or too long.
    Abandoned,
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// What is sent (its `key` is the outbox key).
    pub message: Message,
    /// Channel name.
    pub channel: String,
    /// When it was queued (log time).
    pub queued_ms: i64,
    /// Attempts that failed.
    pub attempts: u32,
    /// Not before this time (backoff after a failure).
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Pending, delivered or abandoned.
    pub state: DeliveryState,
    /// When it was delivered or abandoned.
    pub finished_ms: Option<i64>,
    /// Recipients that already have it, for a channel with several (SMS):
    /// a retry skips them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reached: Vec<String>,
}

/// A line for the timeline of the incident a delivery belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The incident.
    pub incident: u64,
    /// What happened.
    pub what: String,
}

/// Deliveries by idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outbox {
    /// By key.
    pub deliveries: BTreeMap<Key, Delivery>,
}

impl Outbox {
    /// Queues `message` (under its key) for its channel; false if that key
    /// was queued before.
    pub fn queue(&mut self, message: Message, now_ms: i64) -> bool {
        if self.deliveries.contains_key(&message.key) {
            return false;
        }
        let channel = message.key.channel().to_owned();
        self.deliveries.insert(
            message.key.clone(),
            Delivery {
                message,
                channel,
                queued_ms: now_ms,
                attempts: 0,
                next_attempt_ms: now_ms,
                last_error: None,
                state: DeliveryState::Pending,
                finished_ms: None,
                reached: Vec::new(),
            },
        );
        true
    }

    /// Deliveries not yet finished.
    pub fn pending(&self) -> impl Iterator<Item = &Delivery> {
        self.deliveries
            .values()
            .filter(|d| d.state == DeliveryState::Pending)
    }

    /// What to attempt at `now_ms`: per incident and channel only the
    /// oldest pending delivery (a resolution never overtakes its page, nor
    /// a late retry a newer notice), once its backoff has passed and unless
    /// it is in flight (`busy`); at most `room` of them.
    pub fn due(&self, now_ms: i64, busy: &HashSet<Key>, room: usize) -> Vec<&Delivery> {
        let mut first: BTreeMap<(u64, &str), &Delivery> = BTreeMap::new();
        for d in self.pending() {
            let slot = first
                .entry((d.message.incident, d.channel.as_str()))
                .or_insert(d);
            if (d.queued_ms, &d.message.key) < (slot.queued_ms, &slot.message.key) {
                *slot = d;
            }
        }
        first
            .into_values()
            .filter(|d| d.next_attempt_ms <= now_ms && !busy.contains(&d.message.key))
            .take(room)
            .collect()
    }

    /// The receiver accepted `key`; the note for its incident, if it
    /// changed anything (a late duplicate acknowledgement does not).
    pub fn delivered(&mut self, key: &Key, at_ms: i64) -> Option<Note> {
        let d = self
            .deliveries
            .get_mut(key)
            .filter(|d| d.state == DeliveryState::Pending)?;
        d.state = DeliveryState::Delivered;
        d.finished_ms = Some(at_ms);
        let note = Note {
            incident: d.message.incident,
            what: format!("delivered to {}", d.channel),
        };
        self.forget_finished();
        Some(note)
    }

    /// An attempt at `key` failed, after reaching the recipients in
    /// `reached` (kept: the next attempt skips them): back off, or give up
    /// once it is a day old. `Some` if it changed anything, with a note for
    /// the timeline on the first failure, then one in twelve, and when it
    /// gives up.
    pub fn failed(
        &mut self,
        key: &Key,
        error: &str,
        reached: &[String],
        at_ms: i64,
    ) -> Option<Option<Note>> {
        let d = self
            .deliveries
            .get_mut(key)
            .filter(|d| d.state == DeliveryState::Pending)?;
        for r in reached {
            if !d.reached.contains(r) {
                d.reached.push(r.clone());
            }
        }
        d.attempts += 1;
        d.last_error = Some(error.to_owned());
        d.next_attempt_ms = at_ms.saturating_add(backoff_ms(d.attempts));
        let give_up = at_ms - d.queued_ms > MAX_AGE_MS;
        let (channel, n, incident) = (&d.channel, d.attempts, d.message.incident);
        let what = if give_up {
            Some(format!("gave up on {channel} after {n} attempts: {error}"))
        } else if n % 12 == 1 {
            Some(format!(
                "delivery to {channel} failed (attempt {n}): {error}"
            ))
        } else {
            None
        };
        if give_up {
            d.state = DeliveryState::Abandoned;
            d.finished_ms = Some(at_ms);
            self.forget_finished();
        }
        Some(what.map(|what| Note { incident, what }))
    }

    fn forget_finished(&mut self) {
        let mut finished: Vec<(i64, Key)> = self
            .deliveries
            .iter()
            .filter(|(_, d)| d.state != DeliveryState::Pending)
            .map(|(k, d)| (d.finished_ms.unwrap_or(0), k.clone()))
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        for (_, key) in finished.iter().take(finished.len() - KEEP_FINISHED) {
            self.deliveries.remove(key);
        }
    }
}

/// Wait after `attempts` failures: 2 s doubling, at most 5 min.
pub fn backoff_ms(attempts: u32) -> i64 {
    (2_000i64 << attempts.saturating_sub(1).min(8)).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Severity;

    fn message(key: Key) -> Message {
        let mut m = Message::synthetic(key.channel(), 0);
        m.test = false;
        m.incident = key.incident();
        m.key = key;
        m
    }

    fn notice(incident: u64, channel: &str) -> Key {
        Key::notice(incident, Severity::Critical, channel)
    }

    fn resolved(incident: u64, channel: &str) -> Key {
        Key::Resolved {
            incident,
            channel: channel.into(),
        }
    }

    fn keys(due: Vec<&Delivery>) -> Vec<String> {
        due.iter().map(|d| d.message.key.to_string()).collect()
    }

    #[test]
    fn due_keeps_order_per_incident_and_channel() {
        let mut o = Outbox::default();
        assert!(o.queue(message(notice(1, "pager")), 0));
        assert!(!o.queue(message(notice(1, "pager")), 5), "queued once");
        o.queue(message(notice(1, "chat")), 0);
        o.queue(message(resolved(1, "pager")), 10);
        o.queue(message(notice(2, "pager")), 10);
        let none = HashSet::new();
        // The resolution waits for its page; other incidents and channels do not.
        assert_eq!(
            keys(o.due(10, &none, 64)),
            ["1/critical/chat", "1/critical/pager", "2/critical/pager"]
        );
        // In flight: not due again, and what follows it waits too.
        let busy = HashSet::from([notice(1, "pager")]);
        assert_eq!(
            keys(o.due(10, &busy, 64)),
            ["1/critical/chat", "2/critical/pager"]
        );
        // Room limits how many start.
        assert_eq!(keys(o.due(10, &none, 1)), ["1/critical/chat"]);
        assert!(o.due(10, &none, 0).is_empty());
        // Delivered: the resolution is next for that channel.
        assert!(o.delivered(&notice(1, "pager"), 11).is_some());
        assert!(
            keys(o.due(11, &none, 64)).contains(&"1/resolved/pager".to_owned()),
            "resolution follows its page"
        );
    }

    #[test]
    fn due_waits_for_the_backoff_and_skips_finished() {
        let mut o = Outbox::default();
        o.queue(message(notice(1, "pager")), 1_000);
        let none = HashSet::new();
        assert!(o.due(999, &none, 64).is_empty(), "not before it is queued");
        assert!(
            o.failed(&notice(1, "pager"), "HTTP 500", &[], 1_000)
                .is_some()
        );
        assert!(o.due(2_999, &none, 64).is_empty(), "backing off 2 s");
        assert_eq!(keys(o.due(3_000, &none, 64)), ["1/critical/pager"]);
        o.failed(&notice(1, "pager"), "HTTP 500", &[], 3_000);
        assert!(o.due(6_999, &none, 64).is_empty(), "then 4 s");
        assert_eq!(o.due(7_000, &none, 64).len(), 1);
        o.delivered(&notice(1, "pager"), 7_100);
        assert!(o.due(i64::MAX, &none, 64).is_empty(), "delivered is done");
    }

    #[test]
    fn recipients_reached_by_failed_attempts_are_kept_for_the_retry() {
        let mut o = Outbox::default();
        let key = notice(1, "sms");
        o.queue(message(key.clone()), 0);
        o.failed(&key, "HTTP 500", &["+1".to_owned()], 10);
        o.failed(&key, "HTTP 500", &["+1".to_owned(), "+2".to_owned()], 20);
        o.failed(&key, "timeout", &[], 30);
        let due = o.due(i64::MAX, &HashSet::new(), 64);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].reached, ["+1", "+2"]);
        assert_eq!(due[0].attempts, 3);
    }

    #[test]
    fn failures_back_off_are_noted_sparingly_and_abandoned_after_a_day() {
        let mut o = Outbox::default();
        let key = notice(1, "pager");
        o.queue(message(key.clone()), 0);
        let mut noted = 0;
        for i in 0..40 {
            if let Some(Some(note)) = o.failed(&key, "HTTP 500", &[], 10_000 + i) {
                assert!(note.what.starts_with("delivery to pager failed"));
                assert_eq!(note.incident, 1);
                noted += 1;
            }
        }
        assert_eq!(noted, 4, "attempts 1, 13, 25, 37 noted");
        assert_eq!(o.deliveries[&key].state, DeliveryState::Pending);
        let last = o.failed(&key, "HTTP 500", &[], MAX_AGE_MS + 1);
        assert!(
            matches!(&last, Some(Some(n)) if n.what.starts_with("gave up on pager after 41")),
            "{last:?}"
        );
        assert_eq!(o.deliveries[&key].state, DeliveryState::Abandoned);
        assert!(o.delivered(&key, MAX_AGE_MS + 2).is_none());
        assert!(o.failed(&key, "late", &[], MAX_AGE_MS + 3).is_none());
        assert!(o.delivered(&notice(9, "x"), 0).is_none(), "unknown key");
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(30), 300_000);
    }

    #[test]
    fn finished_deliveries_are_bounded_oldest_first() {
        let mut o = Outbox::default();
        for i in 0..(KEEP_FINISHED as u64 + 5) {
            o.queue(message(notice(i + 1, "chat")), 0);
            o.delivered(&notice(i + 1, "chat"), i as i64);
        }
        assert_eq!(o.deliveries.len(), KEEP_FINISHED);
        assert!(!o.deliveries.contains_key(&notice(1, "chat")));
        assert!(
            o.deliveries
                .contains_key(&notice(KEEP_FINISHED as u64 + 5, "chat"))
        );
    }
}
