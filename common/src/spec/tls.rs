//! The `tls` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/tls.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::smtp::{Posture, TlsMode};
use crate::observed::is_fingerprint;

/// Parameters of a `tls` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCheck {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `auto`: STARTTLS on 25/587/2525, TLS from the first byte elsewhere.
    #[serde(default)]
    pub tls: TlsMode,
    /// Name the certificate must match; defaults to `host`.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Trust anchors (PEM); system roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Fewer days left than this is `warn`.
    #[serde(default = "default_warn_days")]
    pub warn_days: u32,
    /// Fewer days left than this is `fail`.
    #[serde(default = "default_crit_days")]
    pub crit_days: u32,
    /// The certificate pinned by its fingerprint (`sha256:` and 64 hex
    /// digits, as reported in `details.observed`): another certificate
    /// fails with class `policy`, even a valid renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Which TLS posture rules warn.
    #[serde(default, skip_serializing_if = "Posture::is_default")]
    pub posture: Posture,
}

fn default_warn_days() -> u32 {
    30
}
fn default_crit_days() -> u32 {
    7
}

impl TlsCheck {
    /// A check of `host:port` with defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        TlsCheck {
            host: host.into(),
            port,
            tls: TlsMode::Auto,
            tls_name: None,
            ca_file: None,
            warn_days: default_warn_days(),
            crit_days: default_crit_days(),
            expect: None,
            posture: Posture::default(),
        }
    }

    /// Checks the pin's form.
    pub fn validate_pin(&self) -> Result<(), String> {
        match self.expect.as_deref() {
            Some(e) if !is_fingerprint(e) => Err(format!(
                "{e:?} is not a certificate fingerprint (sha256: and 64 hex digits)"
            )),
            _ => Ok(()),
        }
    }

    /// Whether TLS starts with STARTTLS (else from the first byte).
    pub fn uses_starttls(&self) -> bool {
        match self.tls {
            TlsMode::Starttls => true,
            TlsMode::Auto => matches!(self.port, 25 | 587 | 2525),
            TlsMode::Implicit | TlsMode::None => false,
        }
    }
}
