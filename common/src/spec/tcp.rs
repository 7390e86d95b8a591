//! The `tcp` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/tcp.rs`).

use serde::{Deserialize, Serialize};

/// Parameters of a `tcp` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Texts that must all appear in what the server sends first.
    #[serde(default)]
    pub expect: Vec<String>,
}
