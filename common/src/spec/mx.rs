//! The `mx` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/mx.rs`).

use serde::{Deserialize, Serialize};

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
        }
    }
}
