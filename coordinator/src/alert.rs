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
//! - `alert/teams.rs` — Microsoft Teams Workflows webhook (Adaptive Card).
//! - `alert/discord.rs` — Discord webhook (an embed).
//! - `alert/ntfy.rs` — ntfy topic (JSON publish, priority by severity).
//! - `alert/sms.rs` — SMS through a Twilio-compatible REST API.
//!
//! Sinks know nothing of Raft or the replicated state: they are given a
//! [`Message`] (`notification.rs`) and say whether it was delivered. The
//! leader's sender (`node/delivery.rs`) decides what is due and records
//! the outcome.
//!
//! Secrets (URLs with tokens, routing keys, passwords) are never written in
//! `checks.toml` itself: a setting `<name>_env = "VAR"` or `<name>_file =
//! "/path"` names where the coordinator reads it at send time, so the
//! replicated state and every listing hold the reference, never the value.

pub mod alertmanager;
pub mod discord;
pub mod email;
pub mod ntfy;
pub mod pagerduty;
pub mod slack;
pub mod sms;
pub mod teams;
pub mod telegram;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use vantage_common::duration::Period;
pub use vantage_common::secret::{Secret, SecretError};

use crate::notification::{Event, Message, Severity};

/// Channel kinds, one sink file each.
pub const KINDS: &[&str] = &[
    "webhook",
    "slack",
    "telegram",
    "email",
    "pagerduty",
    "alertmanager",
    "teams",
    "discord",
    "ntfy",
    "sms",
];

/// Deadline of one delivery attempt unless the channel sets `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Why a channel's settings are unusable (reported at `apply`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not one of [`KINDS`].
    #[error("unknown kind `{0}` ({list})", list = KINDS.join(", "))]
    UnknownKind(String),
    /// A setting is unknown, missing, ill-typed or out of range.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for SettingsError {
    fn from(reason: String) -> Self {
        SettingsError::Invalid(reason)
    }
}

impl From<SecretError> for SettingsError {
    fn from(e: SecretError) -> Self {
        SettingsError::Invalid(e.to_string())
    }
}

impl From<SecretError> for SinkError {
    fn from(e: SecretError) -> Self {
        SinkError::Secret(e.to_string())
    }
}

impl From<&str> for SettingsError {
    fn from(reason: &str) -> Self {
        SettingsError::Invalid(reason.to_owned())
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
    /// Microsoft Teams Workflows webhook.
    Teams(teams::Teams),
    /// Discord webhook.
    Discord(discord::Discord),
    /// ntfy topic.
    Ntfy(ntfy::Ntfy),
    /// SMS (Twilio-compatible).
    Sms(sms::Sms),
}

/// How a message looks: the severity of a firing one, or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Firing, critical.
    Critical,
    /// Firing, warning.
    Warning,
    /// Firing, info.
    Info,
    /// Resolved.
    Resolved,
}

impl Tone {
    /// The tone of `msg`.
    pub fn of(msg: &Message) -> Tone {
        match (msg.event, msg.severity) {
            (Event::Resolved, _) => Tone::Resolved,
            (Event::Firing, Severity::Critical) => Tone::Critical,
            (Event::Firing, Severity::Warning) => Tone::Warning,
            (Event::Firing, _) => Tone::Info,
        }
    }
}

/// The page of `check` under `status` (a channel's `status_url`, where a
/// coordinator's status page is reached: `/check/NAME` beneath it), for
/// the link a chat message carries.
fn check_link(status: &reqwest::Url, check: &str) -> String {
    let mut link = status.clone();
    link.set_query(None);
    link.set_fragment(None);
    if let Ok(mut path) = link.path_segments_mut() {
        path.pop_if_empty().push("check").push(check);
    }
    link.to_string()
}

/// Settings every channel may carry besides its sink's own.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default)]
    timeout: Option<Period>,
}

/// Deserialises a sink's settings, refusing unknown fields (the sink's
/// struct says `deny_unknown_fields`).
fn settings<T: DeserializeOwned>(table: &toml::Table) -> Result<T, SettingsError> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| SettingsError::Invalid(e.message().to_owned()))
}

impl Channel {
    /// Validates a channel named `name`: its `kind` and its sink's settings
    /// (`table`).
    pub fn new(name: &str, kind: &str, table: &toml::Table) -> Result<Channel, SettingsError> {
        if !KINDS.contains(&kind) {
            return Err(SettingsError::UnknownKind(kind.to_owned()));
        }
        let mut table = table.clone();
        let common: Common = match table.remove("timeout") {
            Some(t) => settings(&toml::Table::from_iter([("timeout".to_owned(), t)]))?,
            None => Common { timeout: None },
        };
        let timeout = match common.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) if (1..=120).contains(&t.secs()) => t.duration(),
            Some(t) => return Err(format!("timeout {t} must be between 1s and 120s").into()),
        };
        let sink = match kind {
            "webhook" => Sink::Webhook(webhook::Webhook::validate(&table)?),
            "slack" => Sink::Slack(slack::Slack::validate(&table)?),
            "telegram" => Sink::Telegram(telegram::Telegram::validate(&table)?),
            "email" => Sink::Email(email::Email::validate(&table)?),
            "pagerduty" => Sink::PagerDuty(pagerduty::PagerDuty::validate(&table)?),
            "alertmanager" => Sink::Alertmanager(alertmanager::Alertmanager::validate(&table)?),
            "teams" => Sink::Teams(teams::Teams::validate(&table)?),
            "discord" => Sink::Discord(discord::Discord::validate(&table)?),
            "ntfy" => Sink::Ntfy(ntfy::Ntfy::validate(&table)?),
            "sms" => Sink::Sms(sms::Sms::validate(&table)?),
            other => return Err(SettingsError::UnknownKind(other.to_owned())), // not in KINDS
        };
        Ok(Channel {
            name: name.to_owned(),
            timeout,
            sink,
        })
    }

    /// Delivers `msg` once, within the channel's deadline.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        self.send_remaining(http, msg, &mut Vec::new()).await
    }

    /// Delivers `msg` once, within the channel's deadline, to the
    /// recipients not in `reached`; a channel with several recipients
    /// (SMS) adds each one it reaches to `reached` as it goes, so that a
    /// failed attempt can be resumed without sending anyone the message
    /// twice.
    pub async fn send_remaining(
        &self,
        http: &reqwest::Client,
        msg: &Message,
        reached: &mut Vec<String>,
    ) -> Result<(), SinkError> {
        let send = async {
            match &self.sink {
                Sink::Webhook(s) => s.send(http, msg).await,
                Sink::Slack(s) => s.send(http, msg).await,
                Sink::Telegram(s) => s.send(http, msg).await,
                Sink::Email(s) => s.send(msg).await,
                Sink::PagerDuty(s) => s.send(http, msg).await,
                Sink::Alertmanager(s) => s.send(http, msg).await,
                Sink::Teams(s) => s.send(http, msg).await,
                Sink::Discord(s) => s.send(http, msg).await,
                Sink::Ntfy(s) => s.send(http, msg).await,
                Sink::Sms(s) => s.send(http, msg, reached).await,
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

/// 2xx is delivered; anything else is an error naming the status and a
/// sanitised reason ([`sanitise`]): the error goes into the replicated
/// timeline, `alerts test` output and the logs.
async fn check_response(response: reqwest::Response, secrets: &[&str]) -> Result<(), SinkError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // Read no more of an error body than the reason can use.
    let mut body = Vec::new();
    let mut response = response;
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let reason = sanitise(&String::from_utf8_lossy(&body), secrets);
    Err(SinkError::Refused(format!("HTTP {status}: {reason}")))
}

/// Bytes of an error body read.
const MAX_ERROR_BODY: usize = 4096;
/// Characters of a reason kept.
const MAX_REASON: usize = 160;

/// A receiver's error text made safe to keep: every piece of a secret (the
/// secret itself and each run of 6 or more letters and digits in it: a
/// receiver may echo only a URL's path or a token's tail) and anything
/// token-like (16 or more letters, digits, `-`, `_` with both letters and
/// digits) is `[redacted]`; control characters become spaces; at most
/// [`MAX_REASON`] characters.
pub fn sanitise(text: &str, secrets: &[&str]) -> String {
    let mut pieces: Vec<&str> = Vec::new();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        pieces.push(s);
        pieces.extend(
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|p| p.len() >= 6),
        );
    }
    // Longest first, so a secret goes before its pieces.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut text = text.to_owned();
    for p in pieces {
        text = text.replace(p, "[redacted]");
    }
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let token_like = run.len() >= 16
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().any(|b| b.is_ascii_alphabetic());
        out.push_str(if token_like {
            "[redacted]"
        } else {
            run.as_str()
        });
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut out);
        out.push(if c.is_control() { ' ' } else { c });
    }
    flush(&mut run, &mut out);
    let words: Vec<&str> = out.split_whitespace().collect();
    words.join(" ").chars().take(MAX_REASON).collect()
}

/// Parses a URL setting (`http` or `https`).
fn url(name: &str, value: &str) -> Result<reqwest::Url, SettingsError> {
    let u = reqwest::Url::parse(value).map_err(|e| format!("{name} {value:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{name} {value:?}: only http and https URLs").into());
    }
    Ok(u)
}

/// An optional URL setting (`status_url`).
fn optional_url(name: &str, value: Option<String>) -> Result<Option<reqwest::Url>, SettingsError> {
    value.map(|v| url(name, &v)).transpose()
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
    /// A URL that is a secret: `<name>_env` or `<name>_file` only.
    fn secret(
        name: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<UrlSetting, SettingsError> {
        Self::pick(name, &None, env, file)
    }

    fn pick(
        name: &str,
        plain: &Option<String>,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<UrlSetting, SettingsError> {
        match (plain, Secret::pick(name, env, file, false)?) {
            (Some(_), Some(_)) => Err(format!("set one of {name}, {name}_env, {name}_file").into()),
            (Some(p), None) => Ok(UrlSetting::Plain(url(name, p)?)),
            (None, Some(s)) => Ok(UrlSetting::Secret(s)),
            (None, None) => Err(format!("{name}, {name}_env or {name}_file is required").into()),
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

    fn channel(kind: &str, settings: &str) -> Result<Channel, SettingsError> {
        Channel::new("c", kind, &toml::from_str(settings).unwrap_or_default())
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
            (
                "teams",
                "webhook_url_env = \"TEAMS\"\nstatus_url = \"https://status.example.org\"",
            ),
            ("discord", "webhook_url_file = \"/d\""),
            (
                "ntfy",
                "url = \"https://ntfy.example.org/alerts\"\ntoken_env = \"N\"",
            ),
            (
                "sms",
                "account_sid = \"AC1\"\nauth_token_env = \"T\"\nfrom = \"+15005550006\"\nto = [\"+4915112345678\"]",
            ),
        ];
        for (kind, s) in good {
            assert!(channel(kind, s).is_ok(), "{kind}: {s}");
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
            (
                "teams",
                "webhook_url = \"https://x.example/y\"",
                "unknown field",
            ),
            (
                "discord",
                "webhook_url_env = \"D\"\nusername = \"\"",
                "username",
            ),
            ("ntfy", "url = \"https://ntfy.example.org/\"", "no topic"),
            (
                "sms",
                "account_sid = \"AC1\"\nauth_token_env = \"T\"\nfrom = \"+15005550006\"\nto = [\"0151 123\"]",
                "E.164",
            ),
            (
                "sms",
                "account_sid = \"AC1\"\nauth_token = \"plain\"\nfrom = \"+15005550006\"\nto = [\"+4915112345678\"]",
                "unknown field",
            ),
            ("matrix", "", "unknown kind"),
        ];
        for (kind, s, want) in bad {
            match channel(kind, s) {
                Ok(_) => panic!("{kind} {s:?} accepted"),
                Err(e) => assert!(e.to_string().contains(want), "{kind} {s:?}: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn an_error_body_echoing_any_piece_of_a_secret_is_sanitised() {
        let refused = |body: &'static str| {
            reqwest::Response::from(
                http::Response::builder()
                    .status(500)
                    .body(body)
                    .unwrap_or_default(),
            )
        };
        let url = "https://hooks.example.net/services/T0AB12/B0CD34/k7Qx9Zp2Lm4Rt8Vw";
        for body in [
            "Cannot POST /services/T0AB12/B0CD34/k7Qx9Zp2Lm4Rt8Vw",
            "no such hook k7Qx9Zp2Lm4Rt8Vw",
            "token 1234567:AAH3xYz-9qLmNoPqRsTuVwXyZ rejected\n\u{7}",
        ] {
            let e = check_response(refused(body), &[url]).await;
            let said = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(said.starts_with("refused: HTTP 500"), "{said}");
            for secret in ["k7Qx9Zp2Lm4Rt8Vw", "T0AB12", "AAH3xYz-9qLmNoPqRsTuVwXyZ"] {
                assert!(!said.contains(secret), "{said}");
            }
            assert!(!said.contains('\u{7}') && said.len() < 200, "{said}");
        }
        // What a receiver says about itself survives.
        let e = check_response(refused("invalid_payload: missing text"), &[url]).await;
        assert_eq!(
            e.err().map(|e| e.to_string()).unwrap_or_default(),
            "refused: HTTP 500 Internal Server Error: invalid_payload: missing text"
        );
    }
}
