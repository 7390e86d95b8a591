//! Microsoft Teams through a Workflows webhook ("When a Teams webhook
//! request is received"): one Adaptive Card per message, its heading
//! coloured by severity, with the verdict, the regions' summary, the
//! incident and, when `status_url` is set, a button to the check on the
//! status page. The webhook URL carries its signature: it is a secret.
//!
//! ```toml
//! [[channel]]
//! name = "teams"
//! kind = "teams"
//! settings = { webhook_url_env = "VANTAGE_TEAMS_URL", status_url = "https://status.example.org" }
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
}

/// A validated Teams channel.
#[derive(Debug, Clone)]
pub struct Teams {
    url: UrlSetting,
    status: Option<reqwest::Url>,
}

impl Teams {
    /// Checks the settings (the URL must come from the environment or a file).
    pub fn validate(table: &toml::Table) -> Result<Teams, SettingsError> {
        let s: Settings = settings(table)?;
        Ok(Teams {
            url: UrlSetting::secret("webhook_url", &s.webhook_url_env, &s.webhook_url_file)?,
            status: optional_url("status_url", s.status_url)?,
        })
    }

    /// Posts `msg` as one Adaptive Card.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let url = self.url.resolve("webhook_url")?;
        let secret = url.to_string();
        let body = card(msg, self.status.as_ref());
        super::post_json(http.post(url), &body, &[&secret]).await
    }
}

/// The message as a Workflows webhook body: an Adaptive Card attachment.
fn card(msg: &Message, status: Option<&reqwest::Url>) -> Value {
    let (colour, style) = match Tone::of(msg) {
        Tone::Critical => ("Attention", "attention"),
        Tone::Warning => ("Warning", "warning"),
        Tone::Info => ("Accent", "accent"),
        Tone::Resolved => ("Good", "good"),
    };
    let mut facts = vec![
        json!({ "title": "Check", "value": msg.check }),
        json!({ "title": "Verdict", "value": msg.verdict.to_uppercase() }),
        json!({ "title": "Severity", "value": msg.severity.to_string() }),
        json!({ "title": "Regions", "value": msg.summary }),
        json!({ "title": "Started", "value": rfc3339(msg.started_ms) }),
    ];
    if let Some(end) = msg.ended_ms {
        facts.push(json!({ "title": "Resolved", "value": rfc3339(end) }));
    }
    if msg.incident > 0 {
        facts.push(json!({ "title": "Incident", "value": format!("#{}", msg.incident) }));
    }
    let mut body = vec![
        json!({
            "type": "Container",
            "style": style,
            "bleed": true,
            "items": [{
                "type": "TextBlock",
                "text": msg.title(),
                "weight": "Bolder",
                "size": "Medium",
                "color": colour,
                "wrap": true,
            }],
        }),
        json!({ "type": "FactSet", "facts": facts }),
    ];
    if msg.test {
        body.push(json!({
            "type": "TextBlock",
            "text": "A synthetic test alert sent by `vantagectl alerts test`; nothing is wrong.",
            "isSubtle": true,
            "wrap": true,
        }));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": { "width": "Full" },
        "body": body,
    });
    if let Some(link) = status.map(|s| super::check_link(s, &msg.check)) {
        content["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": "Open on the status page",
            "url": link,
        }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}
