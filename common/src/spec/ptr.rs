//! The `ptr` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/ptr.rs`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::observed::Observed;

/// Parameters of a `ptr` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtrCheck {
    /// The address whose reverse DNS is checked.
    pub ip: IpAddr,
    /// The names pinned: a different set of PTR names fails with class
    /// `policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
}

impl PtrCheck {
    /// The pinned names, normalised (`None` when nothing is pinned).
    pub fn pin(&self) -> Option<Observed> {
        (!self.expect.is_empty()).then(|| Observed::names(&self.expect))
    }
}
