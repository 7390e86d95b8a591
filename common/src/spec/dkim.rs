//! The `dkim` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dkim.rs`).

use serde::{Deserialize, Serialize};

/// Parameters of a `dkim` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimCheck {
    /// Signing domain.
    pub domain: String,
    /// Selector.
    pub selector: String,
}
