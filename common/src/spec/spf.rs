//! The `spf` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/spf.rs`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::observed::Observed;

/// Parameters of an `spf` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpfCheck {
    /// Domain whose record is checked.
    pub domain: String,
    /// Evaluate whether this address may send mail for the domain.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The record pinned: an answer that differs from it (compared term
    /// by term, without case) fails with class `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Also ask every authoritative server of the zone directly and warn
    /// (class `dns`) when they disagree, one is lame, or their SOA serials
    /// are out of step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authoritative: bool,
}

impl SpfCheck {
    /// The pinned record, normalised.
    pub fn pin(&self) -> Result<Option<Observed>, String> {
        self.expect
            .as_deref()
            .map(|e| {
                Observed::spf(e).ok_or_else(|| format!("{e:?} is not an SPF record (v=spf1 ...)"))
            })
            .transpose()
    }
}
