//! The `ptr` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/ptr.rs`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Parameters of a `ptr` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtrCheck {
    /// The address whose reverse DNS is checked.
    pub ip: IpAddr,
}
