//! The replicated state and the commands that change it. Pure: no I/O, no
//! clocks; every replica applying the same commands in the same order holds
//! the same state.
//!
//! The state is versioned and serialised for snapshots one check at a time
//! (`state/stream.rs`; an older layout is migrated on load,
//! `state/migrate.rs`).
//!
//! - `state/agents.rs` — the agent registry.
//! - `state/results.rs` — latest results, recent history, roll-ups.
//! - `state/rollup.rs` — sums by hour (24) and by day (30), bounded.
//! - `state/small_map.rs` — the map of per-region values (a sorted vector).
//! - `state/verdicts.rs` — region trackers and the vote per check.
//! - `state/changes.rs` — change alerts: the value regions agreed on per
//!   check (baseline) and its changes, raised as CHANGED incidents.
//! - `state/mesh.rs` — vantage health: impaired regions do not vote.
//! - `state/incidents.rs` — incidents, their timelines, and the journal of
//!   what changed.
//! - `state/planning.rs` — alert planning: routes, escalation, reminders,
//!   resolutions; fed the incidents changed by each command.
//! - `state/silences.rs` — silences and maintenance windows.
//! - `state/outbox.rs` — the notifications to deliver, attempts written
//!   back, and what is due now.
//! - `state/parts.rs` — a declaration replicated in parts, and the parts
//!   received so far.
//! - `state/stream.rs` — the state as a stream of records (snapshots).
//! - `state/migrate.rs` — snapshots of earlier layouts, brought up to date.
//!
//! Applying a command: [`State::apply`] changes verdicts, incidents and
//! the rest (`apply_one`), then hands the incidents that changed to
//! planning, which queues notifications in the outbox.

pub mod agents;
pub mod changes;
pub mod incidents;
pub mod mesh;
pub mod migrate;
pub mod outbox;
pub mod parts;
pub mod planning;
pub mod results;
pub mod rollup;
pub mod silences;
pub mod small_map;
pub mod stream;
pub mod verdicts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::agents::AgentRecord;
use self::results::{CheckResults, StoredResult};
use crate::declared::{Declared, Diff, NameMap, slot};
use crate::notification::Key;
use crate::verdict::Verdict;
use vantage_common::Status;
use vantage_common::identity::Identity;

/// Version of the serialised [`State`] layout: a snapshot of an older one
/// is migrated (`state/migrate.rs`), one of a newer one refused rather
/// than misread.
pub const STATE_VERSION: u32 = 3;

/// Everything the cluster agrees on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// Checks, channels and routes as last applied.
    pub declared: Declared,
    /// The parts received so far of a declaration proposed in parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<parts::Staged>,
    /// Names (agents, operators) whose certificates are refused.
    pub revoked: BTreeSet<String>,
    /// Agents by name.
    pub agents: BTreeMap<String, AgentRecord>,
    /// Results by check name. (Serialised per check: `state/stream.rs`.)
    #[serde(skip)]
    pub results: NameMap<Arc<CheckResults>>,
    /// The vote per check. (Serialised per check: `state/stream.rs`.)
    #[serde(skip)]
    pub verdicts: verdicts::Verdicts,
    /// Incidents, open and recently resolved.
    #[serde(default)]
    pub incidents: incidents::Incidents,
    /// Alert planning per incident.
    #[serde(default)]
    pub planning: planning::Planning,
    /// Silences and maintenance windows.
    #[serde(default)]
    pub silences: silences::Silences,
    /// Notifications to deliver and delivered.
    #[serde(default)]
    pub outbox: outbox::Outbox,
    /// Regions whose vantage is impaired.
    #[serde(default)]
    pub impaired: mesh::Impaired,
    /// Failures from one region only, per region (derived).
    #[serde(skip)]
    burst: mesh::Burst,
    /// When checks' regions next fall silent (derived).
    #[serde(skip)]
    deadlines: verdicts::Deadlines,
    /// Commands applied (including no-ops).
    pub applied_commands: u64,
    /// `applied_commands` when the declaration was last replaced: what
    /// derived plans (the assignment) key on.
    #[serde(default)]
    pub declared_seq: u64,
    /// Latest leader time seen in the log (ms since the epoch).
    #[serde(default)]
    pub clock_ms: i64,
    /// The log index up to which results have gone to the remote-write
    /// receiver (a new leader resumes after it).
    #[serde(default)]
    pub remote_written: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            declared: Declared::default(),
            staged: None,
            revoked: BTreeSet::new(),
            agents: BTreeMap::new(),
            results: NameMap::default(),
            verdicts: verdicts::Verdicts::default(),
            incidents: incidents::Incidents::default(),
            planning: planning::Planning::default(),
            silences: silences::Silences::default(),
            outbox: outbox::Outbox::default(),
            impaired: mesh::Impaired::new(),
            burst: mesh::Burst::default(),
            deadlines: verdicts::Deadlines::default(),
            applied_commands: 0,
            declared_seq: 0,
            clock_ms: 0,
            remote_written: 0,
        }
    }
}

/// A change to the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replace checks, channels and routes as a whole, in one entry
    /// (validated before it is proposed). The operator API proposes
    /// `DeclarationPart`s instead; logs of earlier versions hold these.
    ApplyConfig {
        /// The new declaration.
        declared: Box<Declared>,
        /// Leader clock.
        #[serde(default)]
        at_ms: i64,
    },
    /// One part of a declaration proposed in parts (`state/parts.rs`):
    /// parts `0..count` of one `id`, in order; the last applies the whole
    /// as `ApplyConfig` does.
    DeclarationPart {
        /// The declaration's id (the proposer's choice).
        id: u64,
        /// This part's index.
        index: u32,
        /// How many parts the declaration has.
        count: u32,
        /// This part of the declaration's JSON encoding.
        json: String,
        /// Leader clock.
        at_ms: i64,
    },
    /// Refuse this identity's certificates from now on.
    Revoke {
        /// Its deny-list key (`agent/REGION/NAME`, `operator/NAME`; a bare
        /// name in entries written before 0.6).
        name: String,
    },
    /// Accept this identity again.
    Unrevoke {
        /// The deny-list entry.
        name: String,
    },
    /// Changes nothing but the counter (benchmarks, liveness probes).
    Noop {
        /// Opaque payload, replicated like real data.
        payload: String,
    },
    /// Several commands in one log entry, applied in order (one Raft round
    /// trip for many small writes).
    Batch(Vec<Command>),
    /// An agent opened a session with the leader.
    AgentHello {
        /// Name from its certificate.
        name: String,
        /// Region from its certificate.
        region: String,
        /// Reported version.
        version: String,
        /// Remote address.
        address: String,
        /// Its spool's identity.
        spool_id: u64,
        /// Leader clock.
        at_ms: i64,
    },
    /// Agents whose sessions are alive on the leader: connected, and seen
    /// now (periodic refresh, and repair after a racing close).
    AgentsSeen {
        /// Names.
        names: Vec<String>,
        /// Leader clock.
        at_ms: i64,
    },
    /// An agent's session ended or missed its heartbeats.
    AgentGone {
        /// Name.
        name: String,
        /// Leader clock.
        at_ms: i64,
    },
    /// An operator acknowledged an incident.
    AckIncident {
        /// Incident id.
        id: u64,
        /// Operator name (from the certificate).
        by: String,
        /// Leader clock.
        at_ms: i64,
    },
    /// Log time advances (proposed by the leader every few seconds):
    /// regions silent for three intervals become stale.
    Tick {
        /// Leader clock.
        at_ms: i64,
    },
    /// Hold back notifications of matching incidents for a while.
    AddSilence {
        /// The silence (its id is assigned here).
        silence: silences::Silence,
        /// Leader clock.
        at_ms: i64,
    },
    /// End a silence or maintenance window now.
    ExpireSilence {
        /// Its id.
        id: u64,
        /// Leader clock.
        at_ms: i64,
    },
    /// A notification reached its receiver.
    Delivered {
        /// Idempotency key.
        key: Key,
        /// Leader clock.
        at_ms: i64,
    },
    /// A delivery attempt failed.
    DeliveryFailed {
        /// Idempotency key.
        key: Key,
        /// Why (never holds a secret).
        error: String,
        /// Recipients that have it so far, this attempt's included (SMS).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reached: Vec<String>,
        /// Leader clock.
        at_ms: i64,
    },
    /// The leader sent the results of the log up to `index` to the
    /// remote-write receiver.
    RemoteWritten {
        /// Log index.
        index: u64,
    },
    /// A batch of results from one agent; those at or below the agent's
    /// applied seq (resent after a failover) are skipped.
    Results {
        /// Agent name (from its certificate).
        agent: String,
        /// Its spool's identity.
        spool_id: u64,
        /// Leader clock.
        at_ms: i64,
        /// The results, in increasing seq order.
        results: Vec<IncomingResult>,
    },
}

impl Command {
    /// Does it call for re-planning every open incident's notifications
    /// (time passed, a silence ended)? A declaration applied (routes may
    /// have changed) does too: `State::apply` sees it by its result.
    fn replans_all(&self) -> bool {
        match self {
            Command::Tick { .. } | Command::ExpireSilence { .. } => true,
            Command::Batch(commands) => commands.iter().any(Command::replans_all),
            _ => false,
        }
    }
}

/// One result as received from an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingResult {
    /// Spool sequence number.
    pub seq: u64,
    /// Check name.
    pub check: String,
    /// The stored form.
    pub result: StoredResult,
    /// W3C traceparent of the coordinator span that took it in (a child
    /// of the agent's probe span), when traces are exported. (Between
    /// validation and that span: the agent's own, at most 128 bytes.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The command changed the state.
    Changed,
    /// The state already was as asked.
    Unchanged,
    /// A declaration was applied; what it changed.
    Applied(Diff),
    /// A part of a declaration was kept; more are to come.
    Staged,
    /// A part of a declaration did not continue the one being received
    /// (another was started since): nothing of it was applied.
    Superseded,
    /// The command was not applied, for this reason.
    Refused(String),
    /// Results are applied up to this seq (of the agent's current spool).
    Acked(u64),
    /// Something was created with this id.
    Created(u64),
}

impl State {
    /// Applies one command, then plans the notifications it calls for.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let result = self.apply_one(command);
        let mut changed = self.incidents.take_changed();
        if command.replans_all() || matches!(result, CommandResult::Applied(_)) {
            self.silences.prune(self.clock_ms);
            changed.extend(self.incidents.open.values().copied());
        }
        let resolved = changed.iter().any(|id| {
            self.incidents
                .all
                .get(id)
                .is_some_and(|i| i.resolved_ms.is_some())
        });
        self.planning.plan(
            &changed,
            &mut self.incidents,
            planning::Context {
                declared: &self.declared,
                silences: &self.silences,
                outbox: &mut self.outbox,
                now_ms: self.clock_ms,
            },
        );
        if resolved {
            let forgotten = self.incidents.forget_old();
            self.planning.forget(&forgotten);
        }
        result
    }

    fn apply_one(&mut self, command: &Command) -> CommandResult {
        self.applied_commands += 1;
        let changed = match command {
            Command::ApplyConfig { declared, at_ms } => {
                return self.declare((**declared).clone(), *at_ms);
            }
            Command::DeclarationPart {
                id,
                index,
                count,
                json,
                at_ms,
            } => {
                return match parts::Staged::take(&mut self.staged, *id, *index, *count, json) {
                    parts::Taken::Kept => CommandResult::Staged,
                    parts::Taken::Dropped => CommandResult::Superseded,
                    parts::Taken::Complete(declared) => self.declare(*declared, *at_ms),
                    parts::Taken::Unreadable(e) => CommandResult::Refused(format!(
                        "the declaration's parts do not read back as one: {e}"
                    )),
                };
            }
            Command::AckIncident { id, by, at_ms } => self.incidents.ack(*id, by, *at_ms),
            Command::Tick { at_ms } => {
                self.clock_ms = self.clock_ms.max(*at_ms);
                let changed = self.assess_mesh();
                verdicts::tick(
                    &mut self.verdicts,
                    &mut self.incidents,
                    &mut self.deadlines,
                    &self.declared,
                    &self.impaired,
                    self.clock_ms,
                    changed,
                );
                true
            }
            Command::AddSilence { silence, at_ms } => {
                self.clock_ms = self.clock_ms.max(*at_ms);
                return CommandResult::Created(self.silences.add(silence.clone()));
            }
            Command::ExpireSilence { id, at_ms } => {
                self.clock_ms = self.clock_ms.max(*at_ms);
                self.silences.expire(*id, *at_ms)
            }
            Command::Delivered { key, at_ms } => match self.outbox.delivered(key, *at_ms) {
                Some(note) => {
                    self.incidents.note(note.incident, *at_ms, note.what);
                    true
                }
                None => false,
            },
            Command::DeliveryFailed {
                key,
                error,
                reached,
                at_ms,
            } => match self.outbox.failed(key, error, reached, *at_ms) {
                Some(note) => {
                    if let Some(note) = note {
                        self.incidents.note(note.incident, *at_ms, note.what);
                    }
                    true
                }
                None => false,
            },
            Command::Revoke { name } => self.revoked.insert(name.clone()),
            Command::Unrevoke { name } => self.revoked.remove(name),
            Command::Noop { .. } => false,
            Command::RemoteWritten { index } => {
                let moved = *index > self.remote_written;
                self.remote_written = self.remote_written.max(*index);
                moved
            }
            Command::AgentHello {
                name,
                region,
                version,
                address,
                spool_id,
                at_ms,
            } => {
                let existing = self.agents.get_mut(name);
                if let Some(new) =
                    agents::hello(existing, region, version, address, *spool_id, *at_ms)
                {
                    self.agents.insert(name.clone(), new);
                }
                true
            }
            Command::AgentsSeen { names, at_ms } => {
                for name in names {
                    if let Some(a) = self.agents.get_mut(name) {
                        a.last_seen_ms = a.last_seen_ms.max(*at_ms);
                        a.connected = true;
                    }
                }
                !names.is_empty()
            }
            Command::AgentGone { name, at_ms } => match self.agents.get_mut(name) {
                Some(a) if a.connected => {
                    a.connected = false;
                    a.last_seen_ms = a.last_seen_ms.max(*at_ms);
                    true
                }
                _ => false,
            },
            Command::Results {
                agent,
                spool_id,
                at_ms,
                results,
            } => {
                return CommandResult::Acked(self.apply_results(agent, *spool_id, *at_ms, results));
            }
            Command::Batch(commands) => {
                self.applied_commands -= 1; // counted per inner command
                let results: Vec<_> = commands.iter().map(|c| self.apply_one(c)).collect();
                results.iter().any(|r| *r != CommandResult::Unchanged)
            }
        };
        if changed {
            CommandResult::Changed
        } else {
            CommandResult::Unchanged
        }
    }

    /// Replaces the declaration with `declared`.
    fn declare(&mut self, declared: Declared, at_ms: i64) -> CommandResult {
        let diff = Diff::between(&self.declared, &declared);
        let old = std::mem::replace(&mut self.declared, declared);
        self.burst.invalidate();
        self.deadlines.invalidate();
        self.declared_seq = self.applied_commands;
        self.clock_ms = self.clock_ms.max(at_ms);
        let at = self.clock_ms;
        // A deleted check's history goes with it: declared again later, it
        // starts afresh rather than with results of what it used to be.
        if !diff.deleted.is_empty() {
            let now = &self.declared;
            self.results.retain(|name, _| now.position(name).is_some());
        }
        // A region taken off a check no longer answers for it: its last
        // result stops being shown as current (its history stays).
        for name in &diff.changed {
            let (Some(check), Some(results)) =
                (self.declared.check(name), self.results.get_mut(name))
            else {
                continue;
            };
            if !results.latest.keys().all(|r| check.runs_in(r.as_str())) {
                Arc::make_mut(results)
                    .latest
                    .retain(|r, _| check.runs_in(r.as_str()));
            }
        }
        verdicts::follow_declaration(
            &mut self.verdicts,
            &mut self.incidents,
            &old,
            &self.declared.checks,
            &self.impaired,
            at,
        );
        CommandResult::Applied(diff)
    }

    fn apply_results(
        &mut self,
        agent: &str,
        spool_id: u64,
        at_ms: i64,
        results: &[IncomingResult],
    ) -> u64 {
        // Incidents whose verdict this batch changes get its traces.
        let mark = self.incidents.mark();
        let Some(record) = self.agents.get_mut(agent) else {
            return 0; // results are only accepted after a hello
        };
        if record.spool_id != spool_id {
            return 0; // a stale batch from a previous spool
        }
        let who = Identity::Agent {
            region: record.region.clone(),
            name: agent.to_owned(),
        };
        if denies(&self.revoked, &who) {
            // Revoked while the batch was in flight: nothing more is applied.
            return record.applied_seq;
        }
        record.last_seen_ms = record.last_seen_ms.max(at_ms);
        self.clock_ms = self.clock_ms.max(at_ms);
        let mut touched: BTreeSet<String> = BTreeSet::new();
        // The latest traced result per check, for the incidents it changes.
        let mut traces: BTreeMap<&str, &str> = BTreeMap::new();
        // Vantage health can only change with a control result or a failure.
        let mut reassess = false;
        for r in results {
            if r.seq <= record.applied_seq {
                continue; // already applied (resent after a failover)
            }
            record.applied_seq = r.seq;
            record.applied_results += 1;
            reassess |= matches!(r.result.status, Status::Fail | Status::Error);
            if let Some(control) = r.check.strip_prefix("control/") {
                reassess = true;
                record.controls.insert(control.to_owned(), r.result.clone());
                continue;
            }
            // Results of checks deleted meanwhile, or from a region the
            // check is not assigned to, are acknowledged, not kept.
            let found = self.declared.position(&r.check).and_then(|i| {
                let check = self.declared.checks.get(i)?;
                check
                    .regions
                    .contains(&r.result.region)
                    .then_some((i, check))
            });
            if let Some((position, check)) = found {
                if verdicts::observe(
                    &mut self.verdicts,
                    &mut self.incidents,
                    check,
                    &r.result,
                    at_ms,
                ) {
                    touched.insert(check.name.clone());
                }
                if let Some(trace) = &r.trace {
                    traces.insert(r.check.as_str(), trace);
                }
                self.deadlines
                    .observed(position, check, r.result.started_at_ms);
                let Some(results) = slot(&mut self.results, &r.check, Arc::default) else {
                    continue;
                };
                let results = Arc::make_mut(results);
                results.record(&r.result);
                self.burst.update(check, Some(results));
            }
        }
        let applied_seq = record.applied_seq;
        // Vantage health first, so a burst from one region is judged before
        // its results vote.
        let all = (reassess || !touched.is_empty()) && self.assess_mesh();
        if all {
            verdicts::refresh(
                &mut self.verdicts,
                &mut self.incidents,
                &self.declared.checks,
                &self.impaired,
                self.clock_ms,
            );
        } else if !touched.is_empty() {
            verdicts::refresh(
                &mut self.verdicts,
                &mut self.incidents,
                touched.iter().filter_map(|name| self.declared.check(name)),
                &self.impaired,
                self.clock_ms,
            );
        }
        if !traces.is_empty() {
            self.incidents.attach_traces(mark, &traces);
        }
        applied_seq
    }

    /// Re-assesses vantage health; opens or resolves mesh-degraded
    /// incidents; returns whether the impaired set changed.
    fn assess_mesh(&mut self) -> bool {
        let now = mesh::assess(
            &self.agents,
            &self.declared.checks,
            &self.results,
            &mut self.burst,
        );
        let at = self.clock_ms;
        let mut gone = Vec::new();
        for (region, i) in self.impaired.iter_mut() {
            if now.contains_key(region) {
                i.clear_since_ms = None;
                continue;
            }
            let since = *i.clear_since_ms.get_or_insert(at);
            if at - since >= mesh::CLEAR_AFTER_MS {
                gone.push(region.clone());
            }
        }
        let mut changed = !gone.is_empty();
        for region in gone {
            self.impaired.remove(&region);
            self.incidents
                .on_verdict(&mesh::subject(&region), &Verdict::Ok, at);
        }
        for (region, reason) in now {
            if self.impaired.contains_key(&region) {
                continue;
            }
            changed = true;
            self.incidents.on_verdict(
                &mesh::subject(&region),
                &Verdict::Impaired {
                    region: region.clone(),
                    reason: reason.clone(),
                },
                at,
            );
            self.impaired.insert(
                region,
                mesh::Impairment {
                    reason,
                    since_ms: at,
                    clear_since_ms: None,
                },
            );
        }
        changed
    }

    /// Is this identity refused? Its key is on the deny-list — or, for
    /// entries written before keys existed, its bare agent or operator name.
    pub fn is_revoked(&self, who: &Identity) -> bool {
        denies(&self.revoked, who)
    }
}

/// Does the deny-list `revoked` refuse `who`? (A free function so that
/// code holding a mutable borrow of another field can ask.)
fn denies(revoked: &BTreeSet<String>, who: &Identity) -> bool {
    revoked.contains(&who.key())
        || (!matches!(who, Identity::Coordinator { .. }) && revoked.contains(&who.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_is_idempotent_and_reversible() {
        let mut s = State::default();
        let agent = |region: &str, name: &str| Identity::Agent {
            region: region.into(),
            name: name.into(),
        };
        let revoke = Command::Revoke {
            name: "agent/ru/msk-1".into(),
        };
        assert_eq!(s.apply(&revoke), CommandResult::Changed);
        assert_eq!(s.apply(&revoke), CommandResult::Unchanged);
        assert!(s.is_revoked(&agent("ru", "msk-1")));
        // Only that agent: not its namesake elsewhere, not an operator.
        assert!(!s.is_revoked(&agent("eu", "msk-1")));
        assert!(!s.is_revoked(&Identity::Operator {
            name: "msk-1".into()
        }));
        assert_eq!(
            s.apply(&Command::Unrevoke {
                name: "agent/ru/msk-1".into()
            }),
            CommandResult::Changed
        );
        assert!(!s.is_revoked(&agent("ru", "msk-1")));
        assert_eq!(s.applied_commands, 3);
        // An entry from before keys existed still bites (any role but a
        // coordinator).
        s.apply(&Command::Revoke { name: "old".into() });
        assert!(s.is_revoked(&agent("us", "old")));
        assert!(!s.is_revoked(&Identity::Coordinator { id: 1 }));
    }

    #[test]
    fn batches_apply_every_command_in_order() {
        let mut s = State::default();
        let batch = Command::Batch(vec![
            Command::Revoke { name: "a".into() },
            Command::Noop {
                payload: "x".into(),
            },
            Command::Unrevoke { name: "a".into() },
            Command::Revoke { name: "b".into() },
        ]);
        assert_eq!(s.apply(&batch), CommandResult::Changed);
        assert_eq!(s.revoked.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.applied_commands, 4);
        let noops = Command::Batch(vec![Command::Noop {
            payload: "y".into(),
        }]);
        assert_eq!(s.apply(&noops), CommandResult::Unchanged);
    }

    /// `n` dns checks whose labels carry a non-ASCII text, so that parts
    /// are cut next to multi-byte characters.
    fn declaration(prefix: &str, n: usize) -> Declared {
        let toml: String = (0..n)
            .map(|i| {
                format!(
                    "[[check]]\nname = \"{prefix}-{i}\"\nkind = \"dns\"\ntarget = \"{prefix}{i}.test\"\nregions = [\"ru\"]\n\
                     labels = {{ owner = \"почтовая служба №{i}\" }}\n"
                )
            })
            .collect();
        parsed(&toml)
    }

    fn part_commands(declared: &Declared, id: u64, part_bytes: usize) -> Vec<Command> {
        let parts = match parts::split(declared, part_bytes) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let count = parts.len() as u32;
        (0..count)
            .zip(parts)
            .map(|(index, json)| Command::DeclarationPart {
                id,
                index,
                count,
                json,
                at_ms: 5,
            })
            .collect()
    }

    #[test]
    fn a_declaration_in_parts_applies_as_one_and_survives_a_snapshot_between_parts() {
        let big = declaration("a", 300);
        let commands = part_commands(&big, 1, 1000);
        assert!(commands.len() > 20, "{} parts", commands.len());
        for c in &commands {
            let Command::DeclarationPart { json, .. } = c else {
                unreachable!()
            };
            assert!(json.len() <= 1000, "a part of {} bytes", json.len());
        }

        let mut whole = State::default();
        let expected = whole.apply(&Command::ApplyConfig {
            declared: Box::new(big.clone()),
            at_ms: 5,
        });
        assert!(matches!(expected, CommandResult::Applied(_)));

        let mut s = State::default();
        let (first, rest) = commands.split_at(commands.len() / 2);
        for c in first {
            assert_eq!(s.apply(c), CommandResult::Staged);
        }
        assert!(
            s.declared.checks.is_empty(),
            "nothing applied before the last part"
        );
        // A node that installs a snapshot taken between parts goes on from it.
        let mut buf = Vec::new();
        if let Err(e) = stream::write(&s, &mut buf) {
            panic!("{e}");
        }
        let mut s = match stream::read(&mut buf.as_slice()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let (last, middle) = rest.split_last().unwrap_or_else(|| unreachable!());
        for c in middle {
            assert_eq!(s.apply(c), CommandResult::Staged);
        }
        assert_eq!(s.apply(last), expected);
        assert_eq!(s.declared, big);
        assert_eq!(s.staged, None, "nothing kept once applied");
    }

    #[test]
    fn a_declaration_started_later_wins_and_the_earlier_ones_parts_are_dropped() {
        let a = part_commands(&declaration("a", 40), 1, 1000);
        let b = part_commands(&declaration("b", 40), 2, 1000);
        assert!(a.len() > 2 && b.len() > 2);
        let mut s = State::default();
        assert_eq!(s.apply(&a[0]), CommandResult::Staged);
        assert_eq!(s.apply(&b[0]), CommandResult::Staged);
        // a's next part no longer continues what is being received.
        assert_eq!(s.apply(&a[1]), CommandResult::Superseded);
        for c in &b[1..b.len() - 1] {
            assert_eq!(s.apply(c), CommandResult::Staged);
        }
        assert!(matches!(
            s.apply(&b[b.len() - 1]),
            CommandResult::Applied(_)
        ));
        assert!(s.declared.checks.iter().all(|c| c.name.starts_with("b-")));
        assert_eq!(s.declared.checks.len(), 40);
        // Parts without their first one, or repeated, change nothing.
        assert_eq!(s.apply(&a[2]), CommandResult::Superseded);
        assert_eq!(s.apply(&b[1]), CommandResult::Superseded);
        assert!(s.declared.checks.iter().all(|c| c.name.starts_with("b-")));
    }

    /// A declaration from checks.toml text.
    fn parsed(toml: &str) -> Declared {
        match Declared::parse(std::path::Path::new("t.toml"), toml) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Agent `name` of `region` says hello with spool `spool_id` at `at_ms`.
    fn hello(name: &str, region: &str, spool_id: u64, at_ms: i64) -> Command {
        Command::AgentHello {
            name: name.into(),
            region: region.into(),
            version: "t".into(),
            address: "127.0.0.1:1".into(),
            spool_id,
            at_ms,
        }
    }

    /// A result of `status` from agent `agent` of `region`, started at `at_ms`.
    fn stored(region: &str, agent: &str, at_ms: i64, status: Status) -> StoredResult {
        StoredResult {
            region: region.into(),
            agent: agent.into(),
            started_at_ms: at_ms,
            status,
            class: None,
            message: String::new(),
            duration_ms: 1,
            details_json: "{}".into(),
            cert_not_after: None,
            phases: Vec::new(),
        }
    }

    #[test]
    fn results_from_a_region_a_check_is_not_assigned_to_are_not_kept() {
        let decl = "[[check]]\nname = \"c\"\nkind = \"tcp\"\ntarget = \"127.0.0.1\"\nregions = [\"ru\"]\nparams = { port = 25 }\n";
        let declared = parsed(decl);
        let mut s = State::default();
        s.apply(&Command::ApplyConfig {
            declared: Box::new(declared),
            at_ms: 1,
        });
        for (name, region) in [("ru-1", "ru"), ("xx-1", "xx")] {
            s.apply(&hello(name, region, 7, 2));
            let result = stored(region, name, 3, Status::Pass);
            let acked = s.apply(&Command::Results {
                agent: name.into(),
                spool_id: 7,
                at_ms: 3,
                results: vec![IncomingResult {
                    seq: 1,
                    check: "c".into(),
                    result,
                    trace: None,
                }],
            });
            assert_eq!(acked, CommandResult::Acked(1), "{region}: acknowledged");
        }
        let kept: Vec<&str> = s.results["c"].latest.keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["ru"]);
    }

    #[test]
    fn delivery_failures_logged_before_reached_recipients_still_read() {
        let failed = |reached: Vec<String>| Command::DeliveryFailed {
            key: Key::notice(1, crate::notification::Severity::Critical, "sms"),
            error: "HTTP 500".into(),
            reached,
            at_ms: 5,
        };
        // An entry as written before the field existed reads as none.
        let old = serde_json::to_string(&failed(Vec::new())).unwrap();
        assert!(!old.contains("reached"), "{old}");
        assert_eq!(
            serde_json::from_str::<Command>(&old).unwrap(),
            failed(Vec::new())
        );
        let new = serde_json::to_string(&failed(vec!["+1".into()])).unwrap();
        assert_eq!(
            serde_json::from_str::<Command>(&new).unwrap(),
            failed(vec!["+1".into()])
        );
    }

    #[test]
    fn a_region_taken_off_a_check_leaves_its_latest_results() {
        let check = |regions: &str| {
            parsed(&format!(
                "[[check]]\nname = \"c\"\nkind = \"dns\"\ntarget = \"c.test\"\nregions = [{regions}]\n"
            ))
        };
        let mut s = State::default();
        s.apply(&Command::ApplyConfig {
            declared: Box::new(check("\"ru\", \"eu\"")),
            at_ms: 1,
        });
        for (agent, region) in [("ru-1", "ru"), ("eu-1", "eu")] {
            s.apply(&hello(agent, region, 7, 2));
            s.apply(&Command::Results {
                agent: agent.into(),
                spool_id: 7,
                at_ms: 3,
                results: vec![IncomingResult {
                    seq: 1,
                    check: "c".into(),
                    result: stored(region, agent, 3, Status::Pass),
                    trace: None,
                }],
            });
        }
        let regions = |s: &State| -> Vec<String> {
            s.results["c"]
                .latest
                .keys()
                .map(|k| k.to_string())
                .collect()
        };
        assert_eq!(regions(&s), ["eu", "ru"]);
        s.apply(&Command::ApplyConfig {
            declared: Box::new(check("\"ru\"")),
            at_ms: 4,
        });
        assert_eq!(regions(&s), ["ru"]);
    }

    #[test]
    fn a_deleted_checks_results_go_with_it() {
        let both = parsed(
            "[[check]]\nname = \"c\"\nkind = \"dns\"\ntarget = \"c.test\"\nregions = [\"ru\"]\n\
             [[check]]\nname = \"d\"\nkind = \"dns\"\ntarget = \"d.test\"\nregions = [\"ru\"]\n",
        );
        let only_c = parsed(
            "[[check]]\nname = \"c\"\nkind = \"dns\"\ntarget = \"c.test\"\nregions = [\"ru\"]\n",
        );
        let mut s = State::default();
        s.apply(&Command::ApplyConfig {
            declared: Box::new(both.clone()),
            at_ms: 1,
        });
        s.apply(&hello("ru-1", "ru", 7, 1));
        let results = ["c", "d"]
            .iter()
            .zip(1..)
            .map(|(check, seq)| IncomingResult {
                seq,
                check: (*check).into(),
                result: stored("ru", "ru-1", 2, Status::Fail),
                trace: None,
            })
            .collect();
        let acked = s.apply(&Command::Results {
            agent: "ru-1".into(),
            spool_id: 7,
            at_ms: 2,
            results,
        });
        assert_eq!(acked, CommandResult::Acked(2));
        assert!(s.results.contains_key("d"));

        s.apply(&Command::ApplyConfig {
            declared: Box::new(only_c),
            at_ms: 3,
        });
        assert!(
            s.results.contains_key("c"),
            "a kept check keeps its results"
        );
        assert!(!s.results.contains_key("d"), "d's results outlived it");
        s.apply(&Command::ApplyConfig {
            declared: Box::new(both),
            at_ms: 4,
        });
        assert!(
            !s.results.contains_key("d"),
            "d declared again starts afresh"
        );
    }

    #[test]
    fn a_batch_in_flight_when_its_agent_is_revoked_is_not_applied() {
        let mut s = State::default();
        s.apply(&hello("ru-1", "ru", 7, 1));
        s.apply(&Command::Revoke {
            name: "ru-1".into(),
        });
        let result = stored("ru", "ru-1", 2, Status::Fail);
        let acked = s.apply(&Command::Results {
            agent: "ru-1".into(),
            spool_id: 7,
            at_ms: 2,
            results: vec![IncomingResult {
                seq: 1,
                check: "c".into(),
                result,
                trace: None,
            }],
        });
        assert_eq!(acked, CommandResult::Acked(0));
        assert_eq!(s.agents["ru-1"].applied_results, 0);
    }

    #[test]
    fn regions_go_stale_on_time_through_the_deadline_queue_and_after_a_reload() {
        let toml = "[[check]]\nname = \"a\"\nkind = \"dns\"\ntarget = \"a.test\"\ninterval = \"10s\"\nregions = [\"ru\", \"eu\"]\n\
                    [[check]]\nname = \"b\"\nkind = \"dns\"\ntarget = \"b.test\"\ninterval = \"30s\"\nregions = [\"ru\", \"eu\"]\n\
                    [[check]]\nname = \"c\"\nkind = \"dns\"\ntarget = \"c.test\"\ninterval = \"60s\"\nregions = [\"eu\"]\n";
        let declared = parsed(toml);
        let mut live = State::default();
        live.apply(&Command::ApplyConfig {
            declared: Box::new(declared),
            at_ms: 0,
        });
        for region in ["ru", "eu"] {
            live.apply(&hello(&format!("{region}-1"), region, 1, 0));
        }
        let mut reloaded = live.clone();
        let mut seq = 0;
        for step in 1..=240i64 {
            let t = step * 5_000;
            let mut commands = Vec::new();
            for (r, region) in ["ru", "eu"].iter().enumerate() {
                let mut results = Vec::new();
                for (c, check) in ["a", "b", "c"].iter().enumerate() {
                    // Gaps of varying length; RU falls silent on `b` for
                    // good half-way; everything stops for a while at 600 s.
                    let silent = (step + c as i64 * 7 + r as i64 * 3) % 13 < 4
                        || (*check == "b" && *region == "ru" && step > 120)
                        || (120..150).contains(&step);
                    if silent {
                        continue;
                    }
                    seq += 1;
                    results.push(IncomingResult {
                        seq,
                        check: (*check).into(),
                        result: stored(
                            region,
                            &format!("{region}-1"),
                            t,
                            if step % 11 == 0 {
                                Status::Fail
                            } else {
                                Status::Pass
                            },
                        ),
                        trace: None,
                    });
                }
                commands.push(Command::Results {
                    agent: format!("{region}-1"),
                    spool_id: 1,
                    at_ms: t,
                    results,
                });
            }
            commands.push(Command::Tick { at_ms: t });
            for c in &commands {
                live.apply(c);
                reloaded.apply(c);
            }
            for (name, v) in &live.verdicts {
                let interval = live.declared.check(name).map_or(0, |c| c.interval.ms());
                for (region, tracker) in &v.regions {
                    let silent = t - tracker.last_result_ms > 3 * interval;
                    assert_eq!(
                        tracker.state == crate::verdict::RegionState::Stale,
                        silent,
                        "{name}/{region} at {t}: {tracker:?}"
                    );
                }
            }
            assert_eq!(live, reloaded, "at {t}");
            if step % 40 == 0 {
                // A snapshot read back holds no queue: it is rebuilt.
                let mut bytes = Vec::new();
                assert!(stream::write(&reloaded, &mut bytes).is_ok());
                reloaded = match stream::read(&mut bytes.as_slice()) {
                    Ok(s) => s,
                    Err(e) => panic!("{e}"),
                };
            }
        }
        let stale =
            |s: &State| s.verdicts["b"].regions["ru"].state == crate::verdict::RegionState::Stale;
        assert!(stale(&live) && stale(&reloaded));
    }
}
