//! Telegram bot: `sendMessage` to a chat. The bot token is a secret.
//!
//! ```toml
//! [[channel]]
//! name = "tg"
//! kind = "telegram"
//! settings = { bot_token_env = "VANTAGE_TG_TOKEN", chat_id = "-1001234567890" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{Secret, SettingsError, SinkError, settings, url};
use crate::notification::{Message, Severity};

const API: &str = "https://api.telegram.org";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    bot_token_env: Option<String>,
    bot_token_file: Option<PathBuf>,
    chat_id: Option<toml::Value>,
    api_url: Option<String>,
}

/// A validated Telegram channel.
#[derive(Debug, Clone)]
pub struct Telegram {
    token: Secret,
    chat_id: String,
    api: reqwest::Url,
}

impl Telegram {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Telegram, SettingsError> {
        let s: Settings = settings(table)?;
        let token = Secret::pick("bot_token", &s.bot_token_env, &s.bot_token_file, true)?
            .ok_or("bot_token_env or bot_token_file is required")?;
        let chat_id = match s.chat_id {
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::String(c)) if !c.is_empty() => c,
            _ => return Err("chat_id (a number or @channel name) is required".into()),
        };
        let api = url("api_url", s.api_url.as_deref().unwrap_or(API))?;
        Ok(Telegram {
            token,
            chat_id,
            api,
        })
    }

    /// Sends `msg` as one chat message; info notices arrive silently.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let token = self.token.read()?;
        let base = self.api.as_str().trim_end_matches('/');
        let endpoint = reqwest::Url::parse(&format!("{base}/bot{token}/sendMessage"))
            .map_err(|_| SinkError::Secret(format!("{:?} does not fit in a URL", self.token)))?;
        let body = serde_json::json!({
            "chat_id": self.chat_id,
            "text": msg.body(),
            "disable_notification": msg.severity == Severity::Info,
        });
        super::post_json(http.post(endpoint), &body, &[&token]).await
    }
}
