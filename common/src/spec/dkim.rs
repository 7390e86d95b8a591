//! The `dkim` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/dkim.rs`).

use serde::{Deserialize, Serialize};

use crate::observed::{Observed, is_fingerprint};

/// Parameters of a `dkim` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimCheck {
    /// Signing domain.
    pub domain: String,
    /// Selector.
    pub selector: String,
    /// The key pinned: the whole record (`v=DKIM1; k=rsa; p=...`) or the
    /// key's fingerprint as reported (`sha256:...`). A different key or
    /// record fails with class `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Also ask every authoritative server of the zone directly and warn
    /// (class `dns`) when they disagree, one is lame, or their SOA serials
    /// are out of step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authoritative: bool,
}

impl DkimCheck {
    /// Checks the pin's form: a fingerprint or a record with a key.
    pub fn validate_pin(&self) -> Result<(), String> {
        match self.expect.as_deref() {
            None => Ok(()),
            Some(e) if is_fingerprint(e) => Ok(()),
            Some(e)
                if Observed::tags(e).is_some_and(|o| o.get("p").is_some_and(|p| p.len() > 2)) =>
            {
                Ok(())
            }
            Some(e) => Err(format!(
                "{e:?} is neither a DKIM record with a key (p=...) nor a sha256: fingerprint"
            )),
        }
    }
}
