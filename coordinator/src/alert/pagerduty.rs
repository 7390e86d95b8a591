//! PagerDuty Events API v2: `trigger` on firing, `resolve` on resolution,
//! with one `dedup_key` per incident so resends and escalations update the
//! same PagerDuty alert.
//!
//! ```toml
//! [[channel]]
//! name = "pager"
//! kind = "pagerduty"
//! settings = { routing_key_file = "/etc/vantage/pagerduty.key" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use vantage_common::clock::rfc3339;

use super::{Secret, SettingsError, SinkError, settings, url};
use crate::notification::{Event, Message};

const API: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    routing_key_env: Option<String>,
    routing_key_file: Option<PathBuf>,
    url: Option<String>,
}

/// A validated PagerDuty channel.
#[derive(Debug, Clone)]
pub struct PagerDuty {
    routing_key: Secret,
    url: reqwest::Url,
}

/// The `dedup_key` of a message: one per incident.
pub fn dedup_key(msg: &Message) -> String {
    if msg.test {
        msg.key.to_string()
    } else {
        format!("vantage-incident-{}", msg.incident)
    }
}

impl PagerDuty {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<PagerDuty, SettingsError> {
        let s: Settings = settings(table)?;
        let routing_key =
            Secret::pick("routing_key", &s.routing_key_env, &s.routing_key_file, true)?
                .ok_or("routing_key_env or routing_key_file is required")?;
        Ok(PagerDuty {
            routing_key,
            url: url("url", s.url.as_deref().unwrap_or(API))?,
        })
    }

    /// Triggers or resolves the incident's PagerDuty alert.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let routing_key = self.routing_key.read()?;
        let body = match msg.event {
            Event::Firing => serde_json::json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key(msg),
                "payload": {
                    "summary": msg.title().chars().take(1024).collect::<String>(),
                    "source": msg.check,
                    "severity": msg.severity,
                    "timestamp": rfc3339(msg.started_ms),
                    "component": msg.check,
                    "class": msg.verdict,
                    "custom_details": msg.labels,
                },
            }),
            Event::Resolved => serde_json::json!({
                "routing_key": routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key(msg),
            }),
        };
        super::post_json(http.post(self.url.clone()), &body, &[&routing_key]).await
    }
}
