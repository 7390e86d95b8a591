//! Generic webhook: the message as a JSON body, signed with HMAC-SHA256
//! over the body (`X-Vantage-Signature: sha256=<hex>`) when a secret is set,
//! and an `Idempotency-Key` header the receiver can deduplicate by.
//!
//! ```toml
//! [[channel]]
//! name = "hooks"
//! kind = "webhook"
//! settings = { url = "https://hooks.example.org/vantage", secret_env = "VANTAGE_HOOK_SECRET" }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{Secret, SettingsError, SinkError, UrlSetting, settings};
use crate::notification::Message;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Vantage-Signature";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
}

/// A validated webhook channel.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: UrlSetting,
    secret: Option<Secret>,
}

impl Webhook {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Webhook, SettingsError> {
        let s: Settings = settings(table)?;
        Ok(Webhook {
            url: UrlSetting::pick("url", &s.url, &s.url_env, &s.url_file)?,
            secret: Secret::pick("secret", &s.secret_env, &s.secret_file, false)?,
        })
    }

    /// Posts `msg` (firing or resolved: the body's `event` says which).
    pub async fn send(&self, http: &reqwest::Client, msg: &Message) -> Result<(), SinkError> {
        let url = self.url.resolve("url")?;
        let url_text = url.to_string();
        let mut body = serde_json::to_value(msg)
            .map_err(|e| SinkError::Settings(format!("cannot encode the message: {e}")))?;
        body["title"] = serde_json::Value::String(msg.title());
        if let Some(fields) = body.as_object_mut() {
            fields.remove("trace"); // sent as the `traceparent` header
        }
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| SinkError::Settings(format!("cannot encode the message: {e}")))?;
        let mut request = http
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", msg.key.to_string());
        if let Some(traceparent) = vantage_common::logging::traceparent(&tracing::Span::current()) {
            request = request.header("traceparent", traceparent);
        }
        let mut secrets = vec![url_text];
        if let Some(secret) = &self.secret {
            let key = secret.read()?;
            request = request.header(SIGNATURE_HEADER, sign(key.as_bytes(), &bytes));
            secrets.push(key);
        }
        let response = request.body(bytes).send().await.map_err(SinkError::http)?;
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        super::check_response(response, &secrets).await
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`key`, `body`).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            super::sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
