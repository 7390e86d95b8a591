//! The `dnsbl` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dnsbl.rs`).

use serde::{Deserialize, Serialize};

/// Parameters of a `dnsbl` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblCheck {
    /// IPv4/IPv6 address or domain.
    pub target: String,
    /// Zones to query; the default set for the target's type when empty.
    #[serde(default)]
    pub zones: Vec<String>,
}
