//! The `dmarc` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dmarc.rs`).

use serde::{Deserialize, Serialize};

use crate::observed::Observed;

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
    /// The record pinned: an answer that differs from it (compared tag by
    /// tag) fails with class `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Also ask every authoritative server of the zone directly and warn
    /// (class `dns`) when they disagree, one is lame, or their SOA serials
    /// are out of step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authoritative: bool,
}

/// Is this TXT string a DMARC record (`v=DMARC1` first, any case)?
pub fn is_dmarc(txt: &str) -> bool {
    txt.trim_start()
        .get(..8)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
}

impl DmarcCheck {
    /// The pinned record, normalised.
    pub fn pin(&self) -> Result<Option<Observed>, String> {
        self.expect
            .as_deref()
            .map(|e| {
                Observed::tags(e)
                    .filter(|o| {
                        o.get("v")
                            .is_some_and(|v| v.eq_ignore_ascii_case("v=DMARC1"))
                    })
                    .ok_or_else(|| format!("{e:?} is not a DMARC record (v=DMARC1; p=...)"))
            })
            .transpose()
    }
}
