//! Agent sessions held by the leader: open, heartbeat, expire, close, and
//! what is sent down them — assignments when they change, run-now
//! requests. The loop that drives expiry and pushes is the leader's
//! housekeeping (`node/housekeeping.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{Notify, mpsc};
use tonic::Status;
use vantage_proto::v1::coordinator_message::Msg;
use vantage_proto::v1::{AssignedCheck, Assignment, CoordinatorMessage, RunNow};

use crate::assignment::assign;
use crate::declared::Declared;
use crate::state::State;

/// Messages to one agent.
pub type Outbox = mpsc::Sender<Result<CoordinatorMessage, Status>>;

#[derive(Debug)]
struct Session {
    id: u64,
    tx: Outbox,
    /// Ends the session's stream (expired, replaced, or no longer leading).
    stop: Arc<Notify>,
    last_heartbeat: Instant,
    assigned: Option<Arc<BTreeSet<String>>>,
}

/// The assignment as last computed, and what it was computed from: it is
/// recomputed only when the declaration or the connected agents change.
#[derive(Debug)]
struct Plan {
    /// The declaration's sequence ([`State::declared_seq`]) and the
    /// connected agents with their regions.
    inputs: (u64, Vec<(String, String)>),
    by_agent: BTreeMap<String, Arc<BTreeSet<String>>>,
}

/// Live sessions by agent name.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
    assignment_version: AtomicU64,
    plan: Mutex<Option<Plan>>,
}

impl Sessions {
    /// Registers a session for `agent`, ending an older one; returns its id
    /// and the signal that ends it.
    pub fn open(&self, agent: &str, tx: Outbox) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = Arc::new(Notify::new());
        if let Ok(mut s) = self.inner.lock() {
            let session = Session {
                id,
                tx,
                stop: stop.clone(),
                last_heartbeat: Instant::now(),
                assigned: None,
            };
            if let Some(old) = s.insert(agent.to_owned(), session) {
                old.stop.notify_one();
            }
        }
        (id, stop)
    }

    /// Removes session `id` of `agent`; false if a newer one replaced it.
    pub fn close(&self, agent: &str, id: u64) -> bool {
        let Ok(mut s) = self.inner.lock() else {
            return false;
        };
        if s.get(agent).is_some_and(|x| x.id == id) {
            s.remove(agent);
            return true;
        }
        false
    }

    /// Notes a heartbeat.
    pub fn heartbeat(&self, agent: &str, id: u64) {
        if let Ok(mut s) = self.inner.lock()
            && let Some(x) = s.get_mut(agent).filter(|x| x.id == id)
        {
            x.last_heartbeat = Instant::now();
        }
    }

    /// Names with a live session.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops sessions silent for longer than `timeout`; returns their names.
    pub fn expire(&self, timeout: Duration) -> Vec<String> {
        let Ok(mut s) = self.inner.lock() else {
            return vec![];
        };
        let dead: Vec<String> = s
            .iter()
            .filter(|(_, x)| x.last_heartbeat.elapsed() > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for name in &dead {
            if let Some(session) = s.remove(name) {
                session.stop.notify_one();
            }
        }
        dead
    }

    /// Ends every session (this node stopped leading).
    pub fn close_all(&self) {
        if let Ok(mut s) = self.inner.lock() {
            for (_, session) in s.drain() {
                session.stop.notify_one();
            }
        }
    }

    /// Asks the agents running `check` to run it out of schedule after
    /// `delay`: `only` that agent, or every one but `except`. Returns the
    /// agents asked.
    pub fn run_now(
        &self,
        check: &str,
        delay: Duration,
        only: Option<&str>,
        except: Option<&str>,
    ) -> Vec<String> {
        let Ok(s) = self.inner.lock() else {
            return vec![];
        };
        let message = CoordinatorMessage {
            msg: Some(Msg::RunNow(RunNow {
                check: check.to_owned(),
                delay_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
            })),
        };
        s.iter()
            .filter(|(name, session)| {
                only.is_none_or(|o| o == name.as_str())
                    && except.is_none_or(|e| e != name.as_str())
                    && session.assigned.as_ref().is_some_and(|a| a.contains(check))
            })
            // A full outbox means a stuck agent: it gets no second opinion to give.
            .filter(|(_, session)| session.tx.try_send(Ok(message.clone())).is_ok())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The assignment of every connected agent, computed again only when
    /// the declaration or the connected agents changed.
    fn plan(&self, state: &State) -> BTreeMap<String, Arc<BTreeSet<String>>> {
        let inputs = (
            state.declared_seq,
            state
                .agents
                .iter()
                .filter(|(_, a)| a.connected)
                .map(|(name, a)| (name.clone(), a.region.clone()))
                .collect::<Vec<_>>(),
        );
        let Ok(mut plan) = self.plan.lock() else {
            return BTreeMap::new();
        };
        match plan.as_ref() {
            Some(p) if p.inputs == inputs => p.by_agent.clone(),
            _ => {
                let by_agent: BTreeMap<String, Arc<BTreeSet<String>>> =
                    assign(&state.declared, &state.agents)
                        .into_iter()
                        .map(|(agent, checks)| (agent, Arc::new(checks.into_iter().collect())))
                        .collect();
                *plan = Some(Plan {
                    inputs,
                    by_agent: by_agent.clone(),
                });
                by_agent
            }
        }
    }

    /// Sends each session its assignment if it changed since last sent.
    pub fn push_assignments(&self, state: &State) {
        let plan = self.plan(state);
        let Ok(mut s) = self.inner.lock() else { return };
        for (name, session) in s.iter_mut() {
            let checks = plan.get(name).cloned().unwrap_or_default();
            let same = session
                .assigned
                .as_ref()
                .is_some_and(|a| Arc::ptr_eq(a, &checks) || **a == *checks);
            if same {
                continue;
            }
            let version = self.assignment_version.fetch_add(1, Ordering::Relaxed) + 1;
            let messages = assignment(version, &state.declared, &checks);
            // All parts or none. A full outbox means a stuck agent; the
            // heartbeat expiry ends it.
            if let Ok(permits) = session.tx.try_reserve_many(messages.len()) {
                for (permit, message) in permits.zip(messages) {
                    permit.send(Ok(message));
                }
                session.assigned = Some(checks);
            }
        }
    }
}

/// Largest Assignment message (encoded), well under the agents' 4 MiB
/// frame limit: a larger set is sent in parts.
pub const ASSIGNMENT_PART_BYTES: usize = 1 << 20;

/// The Assignment messages for `names`: the set in parts of at most
/// [`ASSIGNMENT_PART_BYTES`] (one check's spec is bounded at 16 KiB).
pub fn assignment(
    version: u64,
    declared: &Declared,
    names: &BTreeSet<String>,
) -> Vec<CoordinatorMessage> {
    let mut parts: Vec<Vec<AssignedCheck>> = vec![Vec::new()];
    let mut bytes = 0;
    for c in declared.checks.iter().filter(|c| names.contains(&c.name)) {
        let Some(check) = c.spec().ok().and_then(|spec| {
            Some(AssignedCheck {
                name: c.name.clone(),
                spec_json: serde_json::to_string(&spec).ok()?,
                interval_s: u32::try_from(c.interval.secs()).unwrap_or(u32::MAX),
                timeout_s: c
                    .timeout
                    .and_then(|t| u32::try_from(t.secs()).ok())
                    .unwrap_or(0),
            })
        }) else {
            continue;
        };
        let size = check.encoded_len() + 8;
        if bytes + size > ASSIGNMENT_PART_BYTES && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(part) = parts.last_mut() {
            part.push(check);
        }
    }
    let count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
    parts
        .into_iter()
        .zip(1..)
        .map(|(checks, part)| CoordinatorMessage {
            msg: Some(Msg::Assignment(Assignment {
                version,
                checks,
                part,
                parts: count,
            })),
        })
        .collect()
}
