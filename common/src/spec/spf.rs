//! The `spf` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/spf.rs`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Parameters of an `spf` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpfCheck {
    /// Domain whose record is checked.
    pub domain: String,
    /// Evaluate whether this address may send mail for the domain.
    #[serde(default)]
    pub ip: Option<IpAddr>,
}
