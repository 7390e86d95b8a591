//! The `delivery` check's parameters: a message submitted through one
//! server and watched for in a mailbox over IMAP (the probe itself is the
//! agent's `check/delivery.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::smtp::{TlsMode, is_printable, validate_login};
use super::{SpecError, is_host, is_mail_address};
use crate::duration::Period;
use crate::secret::{Secret, SecretError};

/// How long a run waits for its message unless the check sets `timeout`.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// How TLS is used on an IMAP connection (never without: a login follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapTls {
    /// Port 993 implicit TLS, any other STARTTLS.
    #[default]
    Auto,
    /// STARTTLS (port 143).
    Starttls,
    /// TLS from the first byte (port 993).
    Implicit,
}

impl ImapTls {
    /// Whether TLS starts with the first byte on `port`.
    pub fn implicit(self, port: u16) -> bool {
        match self {
            ImapTls::Auto => port == 993,
            ImapTls::Starttls => false,
            ImapTls::Implicit => true,
        }
    }
}

/// Parameters of a `delivery` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryCheck {
    /// The recipient: the mailbox the message must reach.
    pub to: String,
    /// Where the message is submitted, `host:port`.
    pub submit: String,
    /// TLS on the submission connection (`auto`: 465 implicit, 587
    /// STARTTLS required, else opportunistic).
    #[serde(default)]
    pub submit_tls: TlsMode,
    /// Name the submission server's certificate must be valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_tls_name: Option<String>,
    /// Envelope sender and `From:` (default: the recipient).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mail_from: String,
    /// Log in to the submission server as this user (after TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its password: an environment variable of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Its password: a file on the agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The mailbox's IMAP server, `host:port`.
    pub imap: String,
    /// TLS on the IMAP connection.
    #[serde(default)]
    pub imap_tls: ImapTls,
    /// Name the IMAP server's certificate must be valid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_tls_name: Option<String>,
    /// The IMAP user.
    pub imap_username: String,
    /// Its password: an environment variable of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_password_env: Option<String>,
    /// Its password: a file on the agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_password_file: Option<PathBuf>,
    /// The folder watched.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// Trust anchors (PEM) for both servers' certificates; the system's
    /// roots otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Arriving later than this after submission is `warn`.
    #[serde(default = "default_warn_after")]
    pub warn_after: Period,
    /// Name sent in EHLO.
    #[serde(default = "super::smtp::default_helo")]
    pub helo: String,
}

fn inbox() -> String {
    "INBOX".to_owned()
}

fn default_warn_after() -> Period {
    Period::from_secs(60)
}

/// `host:port` split (IPv6 literals in brackets), when it is one.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    is_host(host).then(|| (host.to_owned(), port))
}

impl DeliveryCheck {
    /// Where the submission password is read, when one is set.
    pub fn password(&self) -> Result<Option<Secret>, SecretError> {
        Secret::pick("password", &self.password_env, &self.password_file, false)
    }

    /// Where the IMAP password is read.
    pub fn imap_password(&self) -> Result<Secret, SecretError> {
        Secret::pick(
            "imap_password",
            &self.imap_password_env,
            &self.imap_password_file,
            true,
        )?
        .ok_or_else(|| SecretError::Missing("imap_password".into()))
    }

    /// The envelope sender and `From:`.
    pub fn sender(&self) -> &str {
        if self.mail_from.is_empty() {
            &self.to
        } else {
            &self.mail_from
        }
    }

    /// What types alone cannot check.
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        if !is_mail_address(&self.to) {
            return Err(SpecError::Target(format!(
                "{:?} is not a mail address",
                self.to
            )));
        }
        if !self.mail_from.is_empty() && !is_mail_address(&self.mail_from) {
            return Err(SpecError::param(
                "mail_from",
                format!("{:?} is not a mail address", self.mail_from),
            ));
        }
        for (field, value) in [("submit", &self.submit), ("imap", &self.imap)] {
            if split_host_port(value).is_none() {
                return Err(SpecError::param(
                    field,
                    format!("{value:?} is not host:port"),
                ));
            }
        }
        validate_login(
            self.username.as_deref(),
            self.password(),
            self.submit_tls == TlsMode::None,
            "submit_tls",
        )?;
        self.imap_password()
            .map_err(|e| SpecError::param("imap_password", e.to_string()))?;
        if !is_printable(&self.imap_username) {
            return Err(SpecError::param(
                "imap_username",
                "must be 1-255 characters, none of them control characters",
            ));
        }
        if !is_printable(&self.mailbox) || self.mailbox.contains(['"', '\\']) {
            return Err(SpecError::param(
                "mailbox",
                "must be 1-255 characters, no control characters, quotes or backslashes",
            ));
        }
        if self.warn_after.secs() == 0 {
            return Err(SpecError::param("warn_after", "must be at least 1s"));
        }
        Ok(())
    }
}
