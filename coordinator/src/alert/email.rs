//! Email over SMTP (lettre): STARTTLS by default, implicit TLS on request,
//! plaintext only when asked for by name. One message per notification; its
//! `Message-ID` is derived from the idempotency key, so a resend is
//! recognisably the same mail.
//!
//! ```toml
//! [[channel]]
//! name = "mail"
//! kind = "email"
//! settings = { smtp_host = "smtp.example.org", smtp_port = 587, from = "vantage@example.org",
//!              to = ["oncall@example.org"], username = "vantage", password_env = "VANTAGE_SMTP_PASSWORD" }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;

use super::{Secret, SettingsError, SinkError, settings};
use crate::notification::Message;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    smtp_host: String,
    smtp_port: Option<u16>,
    /// `starttls` (default), `tls` (implicit) or `none`.
    tls: Option<String>,
    from: String,
    to: Vec<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, e.g. a private relay's.
    ca_file: Option<PathBuf>,
}

/// Transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    StartTls,
    Implicit,
    None,
}

/// A validated email channel.
#[derive(Debug, Clone)]
pub struct Email {
    host: String,
    port: u16,
    security: Security,
    from: Mailbox,
    to: Vec<Mailbox>,
    username: Option<String>,
    password: Option<Secret>,
    ca_file: Option<PathBuf>,
}

impl Email {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Email, SettingsError> {
        let s: Settings = settings(table)?;
        if s.smtp_host.is_empty() {
            return Err("smtp_host is empty".into());
        }
        let security = match s.tls.as_deref().unwrap_or("starttls") {
            "starttls" => Security::StartTls,
            "tls" => Security::Implicit,
            "none" => Security::None,
            other => return Err(format!("tls {other:?} must be starttls, tls or none").into()),
        };
        let port = s.smtp_port.unwrap_or(match security {
            Security::Implicit => 465,
            _ => 587,
        });
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| format!("from {:?}: {e}", s.from))?;
        if s.to.is_empty() {
            return Err("to must list at least one address".into());
        }
        let to =
            s.to.iter()
                .map(|t| t.parse().map_err(|e| format!("to {t:?}: {e}")))
                .collect::<Result<Vec<Mailbox>, String>>()?;
        let password = Secret::pick("password", &s.password_env, &s.password_file, false)?;
        if password.is_some() != s.username.is_some() {
            return Err("username and password_env/password_file go together".into());
        }
        if password.is_some() && security == Security::None {
            return Err("a password is never sent without TLS (tls = \"none\")".into());
        }
        Ok(Email {
            host: s.smtp_host,
            port,
            security,
            from,
            to,
            username: s.username,
            password,
            ca_file: s.ca_file,
        })
    }

    /// Sends `msg` as one mail to every recipient.
    pub async fn send(&self, msg: &Message) -> Result<(), SinkError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(msg.title())
            .message_id(Some(format!(
                "<{}@vantage>",
                message_id(&msg.key.to_string())
            )))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder
            .body(msg.body())
            .map_err(|e| SinkError::Settings(e.to_string()))?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(Duration::from_secs(30)));
        if self.security != Security::None {
            let mut tls = TlsParameters::builder(self.host.clone());
            if let Some(ca) = &self.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| SinkError::Settings(format!("{}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| SinkError::Settings(format!("{}: {e}", ca.display())))?;
                tls = tls.add_root_certificate(cert);
            }
            let tls = tls
                .build_rustls()
                .map_err(|e| SinkError::Settings(e.to_string()))?;
            transport = transport.tls(match self.security {
                Security::Implicit => Tls::Wrapper(tls),
                _ => Tls::Required(tls),
            });
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            transport = transport.credentials(Credentials::new(user.clone(), password.read()?));
        }
        transport.build().send(mail).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                SinkError::Refused(e.to_string())
            } else {
                SinkError::Transport(e.to_string())
            }
        })
    }
}

/// The key with the characters a Message-ID cannot hold replaced.
fn message_id(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}
