//! The `dmarc` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dmarc.rs`).

use serde::{Deserialize, Serialize};

/// Policy strength an operator can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequiredPolicy {
    /// `p=none` suffices (a record must exist).
    None,
    /// `quarantine` or `reject`.
    Quarantine,
    /// `reject` only.
    Reject,
}

impl RequiredPolicy {
    /// Parses `none`, `quarantine`, `reject`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(RequiredPolicy::None),
            "quarantine" => Some(RequiredPolicy::Quarantine),
            "reject" => Some(RequiredPolicy::Reject),
            _ => None,
        }
    }
}

/// Parameters of a `dmarc` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmarcCheck {
    /// Author domain.
    pub domain: String,
    /// Fail when the effective policy is weaker than this.
    #[serde(default)]
    pub require_policy: Option<RequiredPolicy>,
}
