//! The replicated state and the commands that change it. Pure: no I/O, no
//! clocks; every replica applying the same commands in the same order holds
//! the same state.
//!
//! The state is versioned and serialisable as a whole (snapshots). It grows
//! with the next issues: agent registry, result batches, verdicts,
//! incidents, the alert outbox.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::declared::{Declared, Diff};

/// Version of the serialised [`State`] layout; a snapshot of another
/// version is refused rather than misread.
pub const STATE_VERSION: u32 = 1;

/// Everything the cluster agrees on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// Checks, channels and routes as last applied.
    pub declared: Declared,
    /// Names (agents, operators) whose certificates are refused.
    pub revoked: BTreeSet<String>,
    /// Commands applied (including no-ops).
    pub applied_commands: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            declared: Declared::default(),
            revoked: BTreeSet::new(),
            applied_commands: 0,
        }
    }
}

/// A change to the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replace checks, channels and routes as a whole (validated before
    /// it is proposed).
    ApplyConfig {
        /// The new declaration.
        declared: Box<Declared>,
    },
    /// Refuse this name's certificates from now on.
    Revoke {
        /// Agent or operator name.
        name: String,
    },
    /// Accept this name again.
    Unrevoke {
        /// Agent or operator name.
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
}

impl State {
    /// Applies one command.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        self.applied_commands += 1;
        let changed = match command {
            Command::ApplyConfig { declared } => {
                let diff = Diff::between(&self.declared, declared);
                self.declared = (**declared).clone();
                return CommandResult::Applied(diff);
            }
            Command::Revoke { name } => self.revoked.insert(name.clone()),
            Command::Unrevoke { name } => self.revoked.remove(name),
            Command::Noop { .. } => false,
            Command::Batch(commands) => {
                self.applied_commands -= 1; // counted per inner command
                let results: Vec<_> = commands.iter().map(|c| self.apply(c)).collect();
                results.iter().any(|r| *r != CommandResult::Unchanged)
            }
        };
        if changed {
            CommandResult::Changed
        } else {
            CommandResult::Unchanged
        }
    }

    /// Is this name refused?
    pub fn is_revoked(&self, name: &str) -> bool {
        self.revoked.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_is_idempotent_and_reversible() {
        let mut s = State::default();
        let revoke = Command::Revoke {
            name: "msk-1".into(),
        };
        assert_eq!(s.apply(&revoke), CommandResult::Changed);
        assert_eq!(s.apply(&revoke), CommandResult::Unchanged);
        assert!(s.is_revoked("msk-1"));
        assert_eq!(
            s.apply(&Command::Unrevoke {
                name: "msk-1".into()
            }),
            CommandResult::Changed
        );
        assert!(!s.is_revoked("msk-1"));
        assert_eq!(s.applied_commands, 3);
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
}
