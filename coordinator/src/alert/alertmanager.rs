//! Prometheus Alertmanager API v2: `POST /api/v2/alerts`.
//!
//! An alert's identity is its labels: `alertname="VantageIncident"`, the
//! check, the incident id, the severity and the check's own labels. Firing
//! posts the alert with `startsAt` and an `endsAt` a day ahead (so a
//! coordinator that vanishes does not leave it firing forever, and a short
//! `resolve_timeout` does not end it early; routes with `repeat` refresh it);
//! the same post ends the incident's alerts of the other severities, so a
//! REGIONAL notice that became an OUTAGE is replaced, not left beside it.
//! Resolved posts every severity with `endsAt` set to the resolution time.
//!
//! ```toml
//! [[channel]]
//! name = "am"
//! kind = "alertmanager"
//! settings = { url = "http://alertmanager.internal:9093" }
//! ```

use serde::Deserialize;

use vantage_common::clock::rfc3339;

use super::{SettingsError, SinkError, settings, url};
use crate::notification::{Event, Message, Severity};

/// How long a firing alert stays firing in Alertmanager without a refresh.
const FIRING_FOR_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
}

/// A validated Alertmanager channel.
#[derive(Debug, Clone)]
pub struct Alertmanager {
    alerts: reqwest::Url,
}

impl Alertmanager {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Alertmanager, SettingsError> {
        let s: Settings = settings(table)?;
        let base = url("url", &s.url)?;
        let alerts = url(
            "url",
            &format!("{}/api/v2/alerts", base.as_str().trim_end_matches('/')),
        )?;
        Ok(Alertmanager { alerts })
    }

    /// Posts the incident's alerts.
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let body = serde_json::Value::Array(alerts(msg, vantage_common::clock::now_ms()));
        super::post_json(http.post(self.alerts.clone()), &body, &[]).await
    }
}

/// The alerts one message posts.
fn alerts(msg: &Message, now_ms: i64) -> Vec<serde_json::Value> {
    Severity::ALL
        .into_iter()
        .map(|severity| {
            let mut labels = msg.labels.clone();
            labels.remove("verdict");
            labels.insert("alertname".into(), "VantageIncident".into());
            labels.insert("check".into(), msg.check.clone());
            labels.insert("incident".into(), msg.incident.to_string());
            labels.insert("severity".into(), severity.to_string());
            if msg.test {
                labels.insert("test".into(), "true".into());
            }
            let ends_ms = match msg.event {
                Event::Firing if severity == msg.severity => now_ms + FIRING_FOR_MS,
                Event::Firing => now_ms,
                Event::Resolved => msg.ended_ms.unwrap_or(now_ms),
            };
            serde_json::json!({
                "labels": labels,
                "annotations": {
                    "summary": msg.title(),
                    "description": msg.body(),
                    "verdict": msg.verdict,
                },
                "startsAt": rfc3339(msg.started_ms),
                "endsAt": rfc3339(ends_ms),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_replaces_other_severities_and_resolved_ends_all() {
        let mut m = Message::synthetic("am", 1_000);
        m.test = false;
        m.incident = 7;
        m.severity = Severity::Critical;
        let firing = alerts(&m, 5_000);
        let ends: Vec<(&str, &str)> = firing
            .iter()
            .map(|a| {
                (
                    a["labels"]["severity"].as_str().unwrap_or(""),
                    a["endsAt"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            ends[0],
            ("critical", rfc3339(5_000 + FIRING_FOR_MS).as_str())
        );
        assert_eq!(ends[1].1, rfc3339(5_000));
        assert_eq!(firing[0]["labels"]["incident"], "7");
        m.event = Event::Resolved;
        m.ended_ms = Some(9_000);
        assert!(
            alerts(&m, 10_000)
                .iter()
                .all(|a| a["endsAt"] == rfc3339(9_000).as_str())
        );
    }
}
