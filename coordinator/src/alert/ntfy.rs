//! ntfy: one notification per message, published as JSON to the topic's
//! server, its priority from the severity (critical 5, warning 4, info 3,
//! a resolution 3), tagged with an emoji, and, when `status_url` is set,
//! opening the check on the status page when tapped. The topic URL may be
//! a secret (a topic on a public server is readable by whoever knows its
//! name: `url_env`, `url_file`); an access token goes by `token_env` or
//! `token_file` as a bearer token.
//!
//! ```toml
//! [[channel]]
//! name = "phone"
//! kind = "ntfy"
//! settings = { url = "https://ntfy.example.org/mail-alerts", token_env = "VANTAGE_NTFY_TOKEN" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Secret, SettingsError, SinkError, Tone, UrlSetting, optional_url, settings};
use crate::notification::Message;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    status_url: Option<String>,
}

/// A validated ntfy channel.
#[derive(Debug, Clone)]
pub struct Ntfy {
    url: UrlSetting,
    token: Option<Secret>,
    status: Option<reqwest::Url>,
}

impl Ntfy {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Ntfy, SettingsError> {
        let s: Settings = settings(table)?;
        let topic = UrlSetting::pick("url", &s.url, &s.url_env, &s.url_file)?;
        if let UrlSetting::Plain(u) = &topic {
            split(u).ok_or_else(|| format!("url {u}: no topic (https://host/TOPIC)"))?;
        }
        Ok(Ntfy {
            url: topic,
            token: Secret::pick("token", &s.token_env, &s.token_file, false)?,
            status: optional_url("status_url", s.status_url)?,
        })
    }

    /// Publishes `msg` to the topic.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let topic_url = self.url.resolve("url")?;
        let (server, topic) = split(&topic_url)
            .ok_or_else(|| SinkError::Settings("url names no topic".to_owned()))?;
        let token = self.token.as_ref().map(Secret::read).transpose()?;
        let body = self.notification(msg, &topic);
        let mut request = http.post(server);
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        let url_text = topic_url.to_string();
        let secrets = [url_text.as_str(), token.as_deref().unwrap_or_default()];
        super::post_json(request, &body, &secrets).await
    }

    fn notification(&self, msg: &Message, topic: &str) -> Value {
        let (priority, tag) = match Tone::of(msg) {
            Tone::Critical => (5, "rotating_light"),
            Tone::Warning => (4, "warning"),
            Tone::Info => (3, "information_source"),
            Tone::Resolved => (3, "white_check_mark"),
        };
        let mut body = json!({
            "topic": topic,
            "title": msg.title(),
            "message": msg.body(),
            "priority": priority,
            "tags": [tag, msg.verdict],
        });
        if let Some(link) = self
            .status
            .as_ref()
            .map(|s| super::check_link(s, &msg.check))
        {
            body["click"] = Value::String(link);
        }
        body
    }
}

/// A topic URL's server (where JSON is published) and topic: the last
/// path segment and what comes before it.
fn split(topic_url: &reqwest::Url) -> Option<(reqwest::Url, String)> {
    let mut without_query = topic_url.clone();
    without_query.set_query(None);
    without_query.set_fragment(None);
    let text = without_query.as_str();
    let (server, topic) = text.rsplit_once('/')?;
    if topic.is_empty() || server.ends_with('/') {
        return None; // `https://host/` or `https://host//`
    }
    let server = reqwest::Url::parse(&format!("{server}/")).ok()?;
    Some((server, topic.to_owned()))
}
