//! Alert sinks: one file each, each with a validate step (its settings from
//! a `[[channel]]`), `send(firing)` and `send(resolved)`.
//!
//! - `alert/webhook.rs` — generic JSON webhook, HMAC-SHA256 signed, with an
//!   `Idempotency-Key` header.
//! - `alert/slack.rs` — Slack incoming webhook.
//! - `alert/telegram.rs` — Telegram bot `sendMessage`.
//! - `alert/email.rs` — email over SMTP with STARTTLS (lettre).
//! - `alert/pagerduty.rs` — PagerDuty Events API v2 (`dedup_key`).
//! - `alert/alertmanager.rs` — Prometheus Alertmanager API v2.
//! - `alert/dispatch.rs` — the leader's delivery loop over the replicated
//!   outbox.
//!
//! Secrets (URLs with tokens, routing keys, passwords) are never written in
//! `checks.toml` itself: a setting `<name>_env = "VAR"` or `<name>_file =
//! "/path"` names where the coordinator reads it at send time, so the
//! replicated state and every listing hold the reference, never the value.

pub mod alertmanager;
pub mod dispatch;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod telegram;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use vantage_common::duration::Period;

use crate::declared::ChannelDecl;

/// Channel kinds, one sink file each.
pub const KINDS: &[&str] = &[
    "webhook",
    "slack",
    "telegram",
    "email",
    "pagerduty",
    "alertmanager",
];

/// Deadline of one delivery attempt unless the channel sets `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The incident is open (first notice, escalation or reminder).
    Firing,
    /// The incident resolved.
    Resolved,
}

/// One notification, as every sink renders it. Built once when it is queued
/// in the outbox, so a resend after a failover is the same message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Idempotency key: incident id, transition and channel.
    pub key: String,
    /// Incident id (0 for a synthetic test alert).
    pub incident: u64,
    /// Firing or resolved.
    pub event: Event,
    /// A synthetic alert from `vantagectl alerts test`.
    #[serde(default)]
    pub test: bool,
    /// The check (or `vantage/<region>` for a mesh alert).
    pub check: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The verdict at the time: `outage`, `regional`, `blind`, `warning`...
    pub verdict: String,
    /// One line: what is wrong, from where.
    pub summary: String,
    /// The check's labels plus `check`, `severity` and `verdict`.
    pub labels: BTreeMap<String, String>,
    /// When the incident opened (ms since the epoch).
    pub started_ms: i64,
    /// When it resolved.
    pub ended_ms: Option<i64>,
    /// Trace of the result behind it (W3C traceparent), continued by the
    /// delivery; receivers get the delivery's own as a `traceparent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl Message {
    /// `[FIRING critical] mx1: OUTAGE (down from eu, ru)`, marked when synthetic.
    pub fn title(&self) -> String {
        let test = if self.test { "[TEST] " } else { "" };
        match self.event {
            Event::Firing => format!(
                "{test}[FIRING {}] {}: {}",
                self.severity, self.check, self.summary
            ),
            Event::Resolved => format!("{test}[RESOLVED] {}: {}", self.check, self.summary),
        }
    }

    /// A few lines for chat and email bodies.
    pub fn body(&self) -> String {
        let mut s = self.title();
        if self.incident > 0 {
            s.push_str(&format!("\nincident #{}", self.incident));
        }
        s.push_str(&format!("\nstarted {}", rfc3339(self.started_ms)));
        if let Some(end) = self.ended_ms {
            s.push_str(&format!("\nresolved {}", rfc3339(end)));
        }
        if self.test {
            s.push_str("\nThis is a synthetic test alert sent by `vantagectl alerts test`; nothing is wrong.");
        }
        s
    }

    /// A synthetic alert for `vantagectl alerts test`.
    pub fn synthetic(channel: &str, now_ms: i64) -> Message {
        Message {
            key: format!("test/{channel}/{now_ms}"),
            incident: 0,
            event: Event::Firing,
            test: true,
            check: "vantage-test".into(),
            severity: "info".into(),
            verdict: "test".into(),
            summary: "synthetic test alert, nothing is wrong".into(),
            labels: BTreeMap::from([
                ("check".into(), "vantage-test".into()),
                ("severity".into(), "info".into()),
                ("test".into(), "true".into()),
            ]),
            started_ms: now_ms,
            ended_ms: None,
            trace: None,
        }
    }
}

/// RFC 3339 UTC time of `ms` since the epoch (clamped to years 0–9999).
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(-62_167_219_200_000, 253_402_300_799_999);
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A secret could not be read.
    #[error("secret {0}")]
    Secret(String),
    /// The receiver could not be reached or timed out.
    #[error("transport: {0}")]
    Transport(String),
    /// The receiver answered with an error.
    #[error("refused: {0}")]
    Refused(String),
    /// The channel's settings are unusable.
    #[error("settings: {0}")]
    Settings(String),
}

impl SinkError {
    /// A reqwest error without its URL (URLs of Slack and Telegram carry
    /// the secret).
    fn http(e: reqwest::Error) -> SinkError {
        SinkError::Transport(e.without_url().to_string())
    }
}

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable of the coordinator process.
    Env(String),
    /// A file (its content, surrounding whitespace removed).
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reference only: a secret's value is never printed.
        match self {
            Secret::Env(v) => write!(f, "env {v}"),
            Secret::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl Secret {
    /// From a `<name>_env` / `<name>_file` pair; `required` fails when neither is set.
    pub fn pick(
        name: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
        required: bool,
    ) -> Result<Option<Secret>, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err(format!("set {name}_env or {name}_file, not both")),
            (Some(v), None) if v.is_empty() => Err(format!("{name}_env is empty")),
            (Some(v), None) => Ok(Some(Secret::Env(v.clone()))),
            (None, Some(p)) => Ok(Some(Secret::File(p.clone()))),
            (None, None) if required => Err(format!("{name}_env or {name}_file is required")),
            (None, None) => Ok(None),
        }
    }

    /// Reads the value now.
    pub fn read(&self) -> Result<String, SinkError> {
        let value = match self {
            Secret::Env(v) => std::env::var(v)
                .map_err(|_| SinkError::Secret(format!("environment variable {v} is not set")))?,
            Secret::File(p) => std::fs::read_to_string(p)
                .map_err(|e| SinkError::Secret(format!("{}: {e}", p.display())))?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(SinkError::Secret(format!("{self:?} is empty")));
        }
        Ok(value)
    }
}

/// A validated channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Deadline per attempt.
    pub timeout: Duration,
    /// The sink.
    pub sink: Sink,
}

/// The sink of a channel.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Generic webhook.
    Webhook(webhook::Webhook),
    /// Slack incoming webhook.
    Slack(slack::Slack),
    /// Telegram bot.
    Telegram(telegram::Telegram),
    /// Email over SMTP.
    Email(email::Email),
    /// PagerDuty Events v2.
    PagerDuty(pagerduty::PagerDuty),
    /// Alertmanager API v2.
    Alertmanager(alertmanager::Alertmanager),
}

/// Settings every channel may carry besides its sink's own.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default)]
    timeout: Option<Period>,
}

/// Deserialises a sink's settings, refusing unknown fields (the sink's
/// struct says `deny_unknown_fields`).
fn settings<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())
}

impl Channel {
    /// Validates a `[[channel]]`: its kind and its sink's settings.
    pub fn from_decl(decl: &ChannelDecl) -> Result<Channel, String> {
        if !KINDS.contains(&decl.kind.as_str()) {
            return Err(format!(
                "unknown kind `{}` ({})",
                decl.kind,
                KINDS.join(", ")
            ));
        }
        let mut table = decl.settings.clone();
        let common: Common = match table.remove("timeout") {
            Some(t) => settings(&toml::Table::from_iter([("timeout".to_owned(), t)]))?,
            None => Common { timeout: None },
        };
        let timeout = match common.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) if (1..=120).contains(&t.secs()) => t.duration(),
            Some(t) => return Err(format!("timeout {t} must be between 1s and 120s")),
        };
        let sink = match decl.kind.as_str() {
            "webhook" => Sink::Webhook(webhook::Webhook::validate(&table)?),
            "slack" => Sink::Slack(slack::Slack::validate(&table)?),
            "telegram" => Sink::Telegram(telegram::Telegram::validate(&table)?),
            "email" => Sink::Email(email::Email::validate(&table)?),
            "pagerduty" => Sink::PagerDuty(pagerduty::PagerDuty::validate(&table)?),
            "alertmanager" => Sink::Alertmanager(alertmanager::Alertmanager::validate(&table)?),
            other => return Err(format!("unknown kind `{other}`")), // not in KINDS
        };
        Ok(Channel {
            name: decl.name.clone(),
            timeout,
            sink,
        })
    }

    /// Delivers `msg` once, within the channel's deadline.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let send = async {
            match &self.sink {
                Sink::Webhook(s) => s.send(http, msg).await,
                Sink::Slack(s) => s.send(http, msg).await,
                Sink::Telegram(s) => s.send(http, msg).await,
                Sink::Email(s) => s.send(msg).await,
                Sink::PagerDuty(s) => s.send(http, msg).await,
                Sink::Alertmanager(s) => s.send(http, msg).await,
            }
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Transport(format!(
                "no answer within {}s",
                self.timeout.as_secs()
            ))),
        }
    }
}

/// The HTTP client the sinks share (rustls with ring, no OpenSSL).
pub fn http_client() -> Result<reqwest::Client, SinkError> {
    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("vantage/", env!("CARGO_PKG_VERSION")))
        // URLs may carry secrets (Slack, Telegram): never follow them elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .map_err(|e| SinkError::Settings(e.to_string()))
}

/// Posts `body` as JSON; see [`check_response`].
async fn post_json(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
    secrets: &[&str],
) -> Result<(), SinkError> {
    let response = request.json(body).send().await.map_err(SinkError::http)?;
    check_response(response, secrets).await
}

/// 2xx is delivered; anything else is an error naming the status and the
/// start of the body — withheld if it echoes one of `secrets` (the error
/// is written to the replicated timeline).
async fn check_response(response: reqwest::Response, secrets: &[&str]) -> Result<(), SinkError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = if secrets.iter().any(|s| !s.is_empty() && text.contains(s)) {
        "(body withheld: it echoes a secret)".into()
    } else {
        text.chars().take(200).collect()
    };
    Err(SinkError::Refused(format!(
        "HTTP {status}: {}",
        text.trim()
    )))
}

/// Parses a URL setting (`http` or `https`).
fn url(name: &str, value: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(value).map_err(|e| format!("{name} {value:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{name} {value:?}: only http and https URLs"));
    }
    Ok(u)
}

/// A URL setting that may itself be a secret (`url`, `url_env` or `url_file`).
#[derive(Debug, Clone)]
pub enum UrlSetting {
    /// Written in the file.
    Plain(reqwest::Url),
    /// Read at send time.
    Secret(Secret),
}

impl UrlSetting {
    fn pick(
        name: &str,
        plain: &Option<String>,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<UrlSetting, String> {
        match (plain, Secret::pick(name, env, file, false)?) {
            (Some(_), Some(_)) => Err(format!("set one of {name}, {name}_env, {name}_file")),
            (Some(p), None) => Ok(UrlSetting::Plain(url(name, p)?)),
            (None, Some(s)) => Ok(UrlSetting::Secret(s)),
            (None, None) => Err(format!("{name}, {name}_env or {name}_file is required")),
        }
    }

    fn resolve(&self, name: &str) -> Result<reqwest::Url, SinkError> {
        match self {
            UrlSetting::Plain(u) => Ok(u.clone()),
            // The value is secret: the error names the reference only.
            UrlSetting::Secret(s) => url(name, &s.read()?)
                .map_err(|_| SinkError::Secret(format!("{s:?} does not hold an http(s) URL"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(kind: &str, settings: &str) -> ChannelDecl {
        ChannelDecl {
            name: "c".into(),
            kind: kind.into(),
            settings: toml::from_str(settings).unwrap_or_default(),
        }
    }

    #[test]
    fn every_kind_validates_its_settings() {
        let good = [
            (
                "webhook",
                "url = \"https://h.example/x\"\nsecret_env = \"K\"",
            ),
            ("slack", "webhook_url_env = \"SLACK\""),
            ("telegram", "bot_token_file = \"/t\"\nchat_id = \"-100\""),
            (
                "email",
                "smtp_host = \"mx.example\"\nfrom = \"v@example.org\"\nto = [\"a@example.org\"]",
            ),
            ("pagerduty", "routing_key_env = \"PD\""),
            ("alertmanager", "url = \"http://127.0.0.1:9093\""),
        ];
        for (kind, s) in good {
            assert!(Channel::from_decl(&decl(kind, s)).is_ok(), "{kind}: {s}");
        }
        let bad = [
            ("webhook", "url = \"ftp://h/x\"", "only http"),
            (
                "webhook",
                "url = \"https://h/x\"\nsecret = \"plain\"",
                "unknown field",
            ),
            ("slack", "", "required"),
            ("telegram", "bot_token_env = \"T\"", "chat_id"),
            (
                "email",
                "smtp_host = \"h\"\nfrom = \"nope\"\nto = [\"a@b.c\"]",
                "from",
            ),
            (
                "email",
                "smtp_host = \"h\"\nfrom = \"a@b.c\"\nto = []",
                "to",
            ),
            (
                "pagerduty",
                "routing_key_env = \"A\"\nrouting_key_file = \"/b\"",
                "not both",
            ),
            (
                "alertmanager",
                "url = \"http://x\"\ntimeout = \"0s\"",
                "timeout",
            ),
            ("sms", "", "unknown kind"),
        ];
        for (kind, s, want) in bad {
            match Channel::from_decl(&decl(kind, s)) {
                Ok(_) => panic!("{kind} {s:?} accepted"),
                Err(e) => assert!(e.contains(want), "{kind} {s:?}: {e}"),
            }
        }
    }

    #[test]
    fn secrets_are_read_late_and_never_printed() {
        let path = std::env::temp_dir().join(format!("vantage-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t-value\n").unwrap_or_default();
        let s = Secret::File(path.clone());
        assert_eq!(s.read().ok().as_deref(), Some("s3cr3t-value"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let _ = std::fs::remove_file(&path);
        assert!(matches!(s.read(), Err(SinkError::Secret(_))));
        let missing = Secret::Env("VANTAGE_TEST_SURELY_UNSET".into());
        assert!(
            missing
                .read()
                .err()
                .is_some_and(|e| e.to_string().contains("VANTAGE_TEST_SURELY_UNSET"))
        );
    }

    #[test]
    fn titles_mark_tests_and_resolutions() {
        let m = Message::synthetic("chat", 0);
        assert!(m.title().starts_with("[TEST] [FIRING info] vantage-test"));
        assert!(m.body().contains("nothing is wrong"));
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00.000Z");
    }
}
