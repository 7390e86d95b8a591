//! The `mx` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/mx.rs`).

use serde::{Deserialize, Serialize};

use crate::observed::Observed;

/// Parameters of an `mx` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MxCheck {
    /// Mail domain.
    pub domain: String,
    /// Also run `smtp` against each MX host.
    #[serde(default)]
    pub probe: bool,
    /// SMTP port probed on each host.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The MX set pinned (`10 mx1.example.org`, ...): a different set
    /// fails with class `policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
    /// Also ask every authoritative server of the zone directly and warn
    /// (class `dns`) when they disagree, one is lame, or their SOA serials
    /// are out of step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authoritative: bool,
}

fn default_port() -> u16 {
    25
}

impl MxCheck {
    /// An MX check of `domain`, without SMTP probes.
    pub fn new(domain: impl Into<String>) -> Self {
        MxCheck {
            domain: domain.into(),
            probe: false,
            port: default_port(),
            expect: Vec::new(),
            authoritative: false,
        }
    }

    /// The pinned set, normalised (`None` when nothing is pinned).
    pub fn pin(&self) -> Result<Option<Observed>, String> {
        for e in &self.expect {
            let ok = e
                .split_once(' ')
                .is_some_and(|(pref, host)| pref.parse::<u16>().is_ok() && !host.trim().is_empty());
            if !ok {
                return Err(format!("{e:?} is not an MX record (\"10 mx.example.org\")"));
            }
        }
        Ok((!self.expect.is_empty()).then(|| Observed::names(&self.expect)))
    }
}
