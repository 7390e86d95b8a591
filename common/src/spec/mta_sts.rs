//! The `mta-sts` and `tlsrpt` checks' parameters: a domain's MTA-STS
//! policy (RFC 8461) and its TLS reporting record (RFC 8460). The probes
//! are the agent's `check/mta_sts.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Parameters of an `mta-sts` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtaStsCheck {
    /// Mail domain.
    pub domain: String,
    /// No policy at all fails (else it passes, saying so).
    #[serde(default)]
    pub require: bool,
    /// Trust anchors (PEM) for the policy host's and the MX hosts'
    /// certificates; the system's roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SMTP port of the MX hosts (25).
    #[serde(default = "smtp_port")]
    pub port: u16,
}

/// Parameters of a `tlsrpt` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRptCheck {
    /// Mail domain.
    pub domain: String,
    /// No record fails (else it passes, saying so).
    #[serde(default)]
    pub require: bool,
}

fn smtp_port() -> u16 {
    25
}

impl MtaStsCheck {
    /// A check of `domain` with defaults.
    pub fn new(domain: impl Into<String>) -> Self {
        MtaStsCheck {
            domain: domain.into(),
            require: false,
            ca_file: None,
            port: smtp_port(),
        }
    }
}
