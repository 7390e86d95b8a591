//! SMS through a Twilio-compatible REST API: `POST
//! {api_url}/2010-04-01/Accounts/{account_sid}/Messages.json` per
//! recipient, form-encoded `To`, `From` (or `MessagingServiceSid`) and
//! `Body`, with HTTP basic auth (account SID and auth token; the token is
//! a secret). The body is one message: at most 160 GSM-7 characters (the
//! encoding an SMS of 160 holds), summarised, with anything outside GSM-7
//! spelt in it (`→` as `->`) or dropped, so no phone splits or re-encodes
//! it.
//!
//! A delivery is every recipient's message accepted; when one is refused
//! the whole delivery is retried, so the others may get it twice (as with
//! any at-least-once channel).
//!
//! ```toml
//! [[channel]]
//! name = "sms"
//! kind = "sms"
//! settings = { account_sid = "AC0123…", auth_token_env = "VANTAGE_TWILIO_TOKEN", from = "+15005550006", to = ["+4915112345678"] }
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{Secret, SettingsError, SinkError, Tone, settings, url};
use crate::notification::Message;

const API: &str = "https://api.twilio.com";

/// GSM-7 septets in one SMS.
pub const MAX_SEPTETS: usize = 160;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    account_sid: Option<String>,
    auth_token_env: Option<String>,
    auth_token_file: Option<PathBuf>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    api_url: Option<String>,
}

/// A validated SMS channel.
#[derive(Debug, Clone)]
pub struct Sms {
    account_sid: String,
    token: Secret,
    sender: Sender,
    to: Vec<String>,
    api: reqwest::Url,
}

/// Who the messages come from.
#[derive(Debug, Clone)]
enum Sender {
    /// A number (`From`).
    Number(String),
    /// A messaging service (`MessagingServiceSid`).
    Service(String),
}

/// `+` and 8 to 15 digits (E.164).
fn e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

impl Sms {
    /// Checks the settings.
    pub fn validate(table: &toml::Table) -> Result<Sms, SettingsError> {
        let s: Settings = settings(table)?;
        let account_sid = s.account_sid.unwrap_or_default();
        if account_sid.is_empty() || !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("account_sid (letters and digits) is required".into());
        }
        let token = Secret::pick("auth_token", &s.auth_token_env, &s.auth_token_file, true)?
            .ok_or("auth_token_env or auth_token_file is required")?;
        let sender = match (s.from, s.messaging_service_sid) {
            (Some(f), None) if e164(&f) => Sender::Number(f),
            (Some(f), None) => {
                return Err(format!("from {f:?} is no E.164 number (+4915112345678)").into());
            }
            (None, Some(m)) if !m.is_empty() => Sender::Service(m),
            (Some(_), Some(_)) => return Err("set from or messaging_service_sid, not both".into()),
            _ => return Err("from (or messaging_service_sid) is required".into()),
        };
        if s.to.is_empty() {
            return Err("to: at least one number is required".into());
        }
        if let Some(bad) = s.to.iter().find(|n| !e164(n)) {
            return Err(format!("to {bad:?} is no E.164 number (+4915112345678)").into());
        }
        Ok(Sms {
            account_sid,
            token,
            sender,
            to: s.to,
            api: url("api_url", s.api_url.as_deref().unwrap_or(API))?,
        })
    }

    /// Sends `msg` to every recipient not in `reached`, adding each one
    /// as the API accepts its message.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        msg: &Message,
        reached: &mut Vec<String>,
    ) -> Result<(), SinkError> {
        let token = self.token.read()?;
        let base = self.api.as_str().trim_end_matches('/');
        let endpoint = reqwest::Url::parse(&format!(
            "{base}/2010-04-01/Accounts/{}/Messages.json",
            self.account_sid
        ))
        .map_err(|e| SinkError::Settings(e.to_string()))?;
        let text = text(msg);
        let (key, from) = match &self.sender {
            Sender::Number(n) => ("From", n),
            Sender::Service(s) => ("MessagingServiceSid", s),
        };
        for to in &self.to {
            if reached.contains(to) {
                continue;
            }
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("To", to)
                .append_pair(key, from)
                .append_pair("Body", &text)
                .finish();
            let request = http
                .post(endpoint.clone())
                .basic_auth(&self.account_sid, Some(&token))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
            let response = request.send().await.map_err(SinkError::http)?;
            super::check_response(response, &[&token])
                .await
                .map_err(|e| match e {
                    SinkError::Refused(why) => SinkError::Refused(format!("to {to}: {why}")),
                    other => other,
                })?;
            reached.push(to.clone());
        }
        Ok(())
    }
}

/// The one SMS for `msg`: `FIRING critical mx1: OUTAGE (down from eu,
/// ru) #7`, at most [`MAX_SEPTETS`] GSM-7 septets.
pub fn text(msg: &Message) -> String {
    let what = match Tone::of(msg) {
        Tone::Resolved => "RESOLVED".to_owned(),
        _ if msg.verdict == "changed" => format!("CHANGED {}", msg.severity),
        _ => format!("FIRING {}", msg.severity),
    };
    let test = if msg.test { "TEST " } else { "" };
    let incident = if msg.incident > 0 {
        format!(" #{}", msg.incident)
    } else {
        String::new()
    };
    let full = gsm(&format!("{test}{what} {}: {}", msg.check, msg.summary));
    let incident = gsm(&incident);
    let room = MAX_SEPTETS.saturating_sub(septets(&incident));
    if septets(&full) <= room {
        return full + &incident;
    }
    let mut cut = String::new();
    for c in full.chars() {
        if septets(&cut) + septet_len(c) + 3 > room {
            break;
        }
        cut.push(c);
    }
    format!("{}...{incident}", cut.trim_end())
}

/// `s` in the GSM-7 alphabet: arrows and dashes spelt in ASCII, other
/// characters outside it dropped.
fn gsm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '→' => out.push_str("->"),
            '←' => out.push_str("<-"),
            '–' | '—' => out.push('-'),
            '‘' | '’' => out.push('\''),
            '“' | '”' => out.push('"'),
            '…' => out.push_str("..."),
            c if septet_len(c) > 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Septets `c` takes in GSM-7 (the extension table's take 2; 0: not in it).
fn septet_len(c: char) -> usize {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{c}";
    if BASIC.contains(c) {
        1
    } else if EXTENSION.contains(c) {
        2
    } else {
        0
    }
}

/// Septets `s` takes.
fn septets(s: &str) -> usize {
    s.chars().map(septet_len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_text_is_spelt_and_counted() {
        assert_eq!(gsm("SPF: -all → ~all ✓"), "SPF: -all -> ~all ");
        assert_eq!(septets("a[b]"), 6);
        assert_eq!(septets("Grüße"), 5, "ü and ß are GSM-7");
    }
}
