//! Slack incoming webhook: `{"text": ...}` to the webhook URL, which is
//! itself the secret.
//!
//! ```toml
//! [[channel]]
//! name = "chat"
//! kind = "slack"
//! settings = { webhook_url_env = "VANTAGE_SLACK_URL" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{SettingsError, SinkError, Tone, UrlSetting, settings};
use crate::notification::Message;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    webhook_url_env: Option<String>,
    webhook_url_file: Option<PathBuf>,
}

/// A validated Slack channel.
#[derive(Debug, Clone)]
pub struct Slack {
    url: UrlSetting,
}

impl Slack {
    /// Checks the settings (the URL must come from the environment or a file).
    pub fn validate(table: &toml::Table) -> Result<Slack, SettingsError> {
        let s: Settings = settings(table)?;
        Ok(Slack {
            url: UrlSetting::secret("webhook_url", &s.webhook_url_env, &s.webhook_url_file)?,
        })
    }

    /// Posts `msg` as one message.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let url = self.url.resolve("webhook_url")?;
        let icon = match Tone::of(msg) {
            Tone::Resolved => ":white_check_mark:",
            Tone::Critical => ":rotating_light:",
            Tone::Warning => ":warning:",
            Tone::Info => ":information_source:",
        };
        let body = serde_json::json!({ "text": format!("{icon} {}", msg.body()) });
        let secret = url.to_string();
        super::post_json(http.post(url), &body, &[&secret]).await
    }
}
