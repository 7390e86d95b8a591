//! The `dane` check's parameters: the TLSA records of a domain's MX hosts
//! (or of one host), validated with DNSSEC, against the certificates the
//! hosts present (RFC 7672). The probe is the agent's `check/dane.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Parameters of a `dane` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaneCheck {
    /// A mail domain (each of its MX hosts is checked) or an MX host.
    pub target: String,
    /// SMTP port: TLSA records are looked up at `_<port>._tcp.<host>`.
    #[serde(default = "smtp_port")]
    pub port: u16,
    /// DNSSEC trust anchors: a file of DNSKEY records in zone-file syntax
    /// (`example.org. 3600 IN DNSKEY 257 3 13 ...`); the root zone's
    /// (IANA) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_anchor: Option<PathBuf>,
}

fn smtp_port() -> u16 {
    25
}

impl DaneCheck {
    /// A check of `target` with defaults.
    pub fn new(target: impl Into<String>) -> Self {
        DaneCheck {
            target: target.into(),
            port: smtp_port(),
            trust_anchor: None,
        }
    }
}
