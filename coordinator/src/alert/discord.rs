//! Discord webhook: one embed per message, coloured by severity, with the
//! verdict, severity and incident as fields and, when `status_url` is set,
//! a link to the check on the status page. Mentions are switched off (a
//! check's summary never pings anyone). The webhook URL carries its token:
//! it is a secret.
//!
//! ```toml
//! [[channel]]
//! name = "discord"
//! kind = "discord"
//! settings = { webhook_url_file = "/etc/vantage/discord.url" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{SettingsError, SinkError, Tone, UrlSetting, optional_url, settings};
use crate::notification::Message;
use vantage_common::clock::rfc3339;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    webhook_url_env: Option<String>,
    webhook_url_file: Option<PathBuf>,
    status_url: Option<String>,
    username: Option<String>,
}

/// A validated Discord channel.
#[derive(Debug, Clone)]
pub struct Discord {
    url: UrlSetting,
    status: Option<reqwest::Url>,
    username: String,
}

impl Discord {
    /// Checks the settings (the URL must come from the environment or a file).
    pub fn validate(table: &toml::Table) -> Result<Discord, SettingsError> {
        let s: Settings = settings(table)?;
        let username = s.username.unwrap_or_else(|| "vantage".to_owned());
        if username.is_empty() || username.chars().count() > 80 {
            return Err("username must be 1 to 80 characters".into());
        }
        Ok(Discord {
            url: UrlSetting::secret("webhook_url", &s.webhook_url_env, &s.webhook_url_file)?,
            status: optional_url("status_url", s.status_url)?,
            username,
        })
    }

    /// Posts `msg` as one embed.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let url = self.url.resolve("webhook_url")?;
        let secret = url.to_string();
        let body = self.embed(msg);
        super::post_json(http.post(url), &body, &[&secret]).await
    }

    fn embed(&self, msg: &Message) -> Value {
        let colour = match Tone::of(msg) {
            Tone::Critical => 0xE0_1E_5A,
            Tone::Warning => 0xEC_B2_2E,
            Tone::Info => 0x36_C5_F0,
            Tone::Resolved => 0x2E_B6_7D,
        };
        let mut fields = vec![
            json!({ "name": "Verdict", "value": msg.verdict.to_uppercase(), "inline": true }),
            json!({ "name": "Severity", "value": msg.severity.to_string(), "inline": true }),
        ];
        if msg.incident > 0 {
            fields.push(json!({ "name": "Incident", "value": format!("#{}", msg.incident), "inline": true }));
        }
        let mut embed = json!({
            // Discord's limits: 256 for a title, 4096 for a description.
            "title": msg.title().chars().take(256).collect::<String>(),
            "description": msg.body().chars().take(4096).collect::<String>(),
            "color": colour,
            "timestamp": rfc3339(msg.ended_ms.unwrap_or(msg.started_ms)),
            "fields": fields,
        });
        if let Some(link) = self
            .status
            .as_ref()
            .map(|s| super::check_link(s, &msg.check))
        {
            embed["url"] = Value::String(link);
        }
        json!({
            "username": self.username,
            "embeds": [embed],
            "allowed_mentions": { "parse": [] },
        })
    }
}
