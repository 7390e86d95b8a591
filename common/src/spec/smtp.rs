//! The `smtp` check's parameters, as `checks.toml`, the agent's own
//! control checks and the command line give them (the probe itself is
//! the agent's `check/smtp.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{SpecError, is_mail_address};
use crate::secret::{Secret, SecretError};

/// How TLS is used on an SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Pick by port (465 implicit, 587 STARTTLS required, else opportunistic).
    #[default]
    Auto,
    /// Plaintext only; never STARTTLS.
    None,
    /// STARTTLS required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// What the mode means on a given port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No TLS.
    Plain,
    /// STARTTLS when offered.
    Opportunistic,
    /// STARTTLS or fail.
    Required,
    /// TLS from the first byte.
    Implicit,
}

impl TlsMode {
    /// The transport this mode means on `port`.
    pub fn transport(self, port: u16) -> Transport {
        match (self, port) {
            (TlsMode::None, _) => Transport::Plain,
            (TlsMode::Starttls, _) | (TlsMode::Auto, 587) => Transport::Required,
            (TlsMode::Implicit, _) | (TlsMode::Auto, 465) => Transport::Implicit,
            (TlsMode::Auto, _) => Transport::Opportunistic,
        }
    }
}

/// Default name sent in EHLO.
pub const DEFAULT_HELO: &str = "vantage.invalid";

/// Parameters of an `smtp` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpCheck {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS use.
    #[serde(default)]
    pub tls: TlsMode,
    /// Name for SNI and certificate matching; defaults to `host`.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Name sent in EHLO.
    #[serde(default = "default_helo")]
    pub helo: String,
    /// Slower than this (whole dialogue) is `warn`.
    #[serde(default = "default_degraded_ms")]
    pub degraded_ms: u64,
    /// Which TLS posture rules warn.
    #[serde(default, skip_serializing_if = "Posture::is_default")]
    pub posture: Posture,
    /// Envelope sender of the acceptance step (empty: the null sender `<>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mail_from: String,
    /// Recipients of the acceptance step: MAIL FROM, RCPT TO for each,
    /// RSET and QUIT (never DATA). Empty: no acceptance step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcpt: Vec<String>,
    /// Trust anchors (PEM) the server's certificate must chain to before
    /// credentials are sent; the system's roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Log in (AUTH, after TLS only) as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password: an environment variable of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password: a file on the agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// Most recipients one acceptance step tries.
pub const MAX_RCPT: usize = 20;

/// The TLS posture rules of `smtp` and `tls` checks, each of which makes
/// a `warn` (class `tls`) and can be switched off:
/// `params = { port = 25, posture = { legacy_tls = false } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posture {
    /// The server still accepts TLS 1.0 or 1.1 (tried with a legacy
    /// ClientHello on a connection of its own).
    #[serde(default = "yes")]
    pub legacy_tls: bool,
    /// The leaf key is RSA with fewer bits than this (0: off).
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: u32,
    /// A certificate of the chain (its root aside) is signed with SHA-1
    /// or MD5.
    #[serde(default = "yes")]
    pub sha1: bool,
    /// AUTH is advertised before STARTTLS on a port that offers STARTTLS
    /// (credentials could be sent in clear).
    #[serde(default = "yes")]
    pub auth_before_starttls: bool,
}

fn yes() -> bool {
    true
}

fn default_min_rsa_bits() -> u32 {
    2048
}

impl Default for Posture {
    fn default() -> Self {
        Posture {
            legacy_tls: true,
            min_rsa_bits: default_min_rsa_bits(),
            sha1: true,
            auth_before_starttls: true,
        }
    }
}

impl Posture {
    /// Every rule on, at its default threshold.
    pub fn is_default(&self) -> bool {
        *self == Posture::default()
    }
}

pub(super) fn default_helo() -> String {
    DEFAULT_HELO.to_owned()
}

fn default_degraded_ms() -> u64 {
    5000
}

impl SmtpCheck {
    /// A check of `host:port` with defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SmtpCheck {
            host: host.into(),
            port,
            tls: TlsMode::Auto,
            tls_name: None,
            helo: default_helo(),
            degraded_ms: default_degraded_ms(),
            posture: Posture::default(),
            mail_from: String::new(),
            rcpt: Vec::new(),
            ca_file: None,
            username: None,
            password_env: None,
            password_file: None,
        }
    }

    /// Where the password is read, when one is set.
    pub fn password(&self) -> Result<Option<Secret>, SecretError> {
        Secret::pick("password", &self.password_env, &self.password_file, false)
    }

    /// The envelope sender as it goes between `<` and `>`.
    pub fn sender(&self) -> &str {
        if self.mail_from == "<>" {
            ""
        } else {
            &self.mail_from
        }
    }

    /// The acceptance and login parameters, as types alone cannot check them.
    pub(super) fn validate_mail(&self) -> Result<(), SpecError> {
        let sender = self.sender();
        if !sender.is_empty() && !is_mail_address(sender) {
            return Err(SpecError::param(
                "mail_from",
                format!("{sender:?} is not a mail address (empty or \"<>\": the null sender)"),
            ));
        }
        if let Some(bad) = self.rcpt.iter().find(|r| !is_mail_address(r)) {
            return Err(SpecError::param(
                "rcpt",
                format!("{bad:?} is not a mail address"),
            ));
        }
        if self.rcpt.len() > MAX_RCPT {
            return Err(SpecError::param(
                "rcpt",
                format!("{} recipients, at most {MAX_RCPT}", self.rcpt.len()),
            ));
        }
        validate_login(
            self.username.as_deref(),
            self.password(),
            self.tls == TlsMode::None,
            "tls",
        )
    }
}

/// A login's parameters: a user name and a password reference go together,
/// the name is printable, and a connection without TLS (`tls_field` is
/// `"none"`) takes no login.
pub(super) fn validate_login(
    username: Option<&str>,
    password: Result<Option<Secret>, SecretError>,
    plaintext: bool,
    tls_field: &str,
) -> Result<(), SpecError> {
    let password = password.map_err(|e| SpecError::param("password", e.to_string()))?;
    match (username, password) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(SpecError::param(
            "username",
            "password_env/password_file is set but username is not",
        )),
        (Some(_), None) => Err(SpecError::param(
            "password",
            "username needs password_env or password_file",
        )),
        (Some(u), Some(_)) if !is_printable(u) => Err(SpecError::param(
            "username",
            "must be 1-255 characters, none of them control characters",
        )),
        (Some(_), Some(_)) if plaintext => Err(SpecError::param(
            "username",
            format!("AUTH needs TLS: credentials are never sent in clear ({tls_field} = \"none\")"),
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// 1-255 characters, none of them a control character.
pub(super) fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control)
}
