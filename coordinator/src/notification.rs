//! What a notification is, apart from how any sink sends it: its
//! [`Severity`], [`Event`], idempotency [`Key`] and the [`Message`] every
//! sink renders. The replicated outbox holds these (`state/outbox.rs`), the
//! sinks (`alert/`) render them; neither owns the other's concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vantage_common::clock::rfc3339;

/// Routing severity of an incident or a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Pages (an outage of a critical check).
    Critical,
    /// Warnings, divergent answers, an impaired vantage.
    Warning,
    /// Notices that never page (REGIONAL, BLIND).
    Info,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Warning, Severity::Info];

    /// `critical`, `warning`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a severity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a severity (critical, warning, info)")]
pub struct SeverityError(pub String);

impl FromStr for Severity {
    type Err = SeverityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| SeverityError(s.to_owned()))
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The incident is open (first notice, escalation or reminder).
    Firing,
    /// The incident resolved.
    Resolved,
}

/// The idempotency key of a notification: sent to receivers (webhook
/// `Idempotency-Key`, PagerDuty `dedup_key` of tests, email Message-ID) and
/// the outbox's key. At most one notification per key is ever queued.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// Incident `incident` at `severity` to `channel`: the first notice
    /// (`reminder` 0) or the n-th reminder.
    Notice {
        /// Incident id.
        incident: u64,
        /// Its severity at the time.
        severity: Severity,
        /// Channel name.
        channel: String,
        /// 0 for the notice itself, n for the n-th reminder.
        reminder: u64,
    },
    /// The incident resolved.
    Resolved {
        /// Incident id.
        incident: u64,
        /// Channel name.
        channel: String,
    },
    /// A synthetic alert from `vantagectl alerts test`.
    Test {
        /// Channel name.
        channel: String,
        /// When it was asked for.
        at_ms: i64,
    },
}

/// Text that is not an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a notification key")]
pub struct KeyError(pub String);

impl Key {
    /// The first notice of `incident` at `severity` to `channel`.
    pub fn notice(incident: u64, severity: Severity, channel: &str) -> Key {
        Key::Notice {
            incident,
            severity,
            channel: channel.to_owned(),
            reminder: 0,
        }
    }

    /// The channel it goes to.
    pub fn channel(&self) -> &str {
        match self {
            Key::Notice { channel, .. }
            | Key::Resolved { channel, .. }
            | Key::Test { channel, .. } => channel,
        }
    }

    /// Its incident (0 for a test).
    pub fn incident(&self) -> u64 {
        match self {
            Key::Notice { incident, .. } | Key::Resolved { incident, .. } => *incident,
            Key::Test { .. } => 0,
        }
    }

    /// Is it a reminder of a notice already sent?
    pub fn is_reminder(&self) -> bool {
        matches!(self, Key::Notice { reminder, .. } if *reminder > 0)
    }
}

impl fmt::Display for Key {
    /// `7/critical/pager`, `7/critical/pager/remind2`, `7/resolved/pager`,
    /// `test/pager/1764460800000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Notice {
                incident,
                severity,
                channel,
                reminder: 0,
            } => write!(f, "{incident}/{severity}/{channel}"),
            Key::Notice {
                incident,
                severity,
                channel,
                reminder,
            } => write!(f, "{incident}/{severity}/{channel}/remind{reminder}"),
            Key::Resolved { incident, channel } => write!(f, "{incident}/resolved/{channel}"),
            Key::Test { channel, at_ms } => write!(f, "test/{channel}/{at_ms}"),
        }
    }
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || KeyError(s.to_owned());
        let parts: Vec<&str> = s.split('/').collect();
        let channel = |c: &str| (!c.is_empty()).then(|| c.to_owned()).ok_or_else(err);
        match parts.as_slice() {
            ["test", c, at] => Ok(Key::Test {
                channel: channel(c)?,
                at_ms: at.parse().map_err(|_| err())?,
            }),
            [id, "resolved", c] => Ok(Key::Resolved {
                incident: id.parse().map_err(|_| err())?,
                channel: channel(c)?,
            }),
            [id, severity, c, rest @ ..] => {
                let reminder = match rest {
                    [] => 0,
                    [r] => r
                        .strip_prefix("remind")
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(err)?,
                    _ => return Err(err()),
                };
                Ok(Key::Notice {
                    incident: id.parse().map_err(|_| err())?,
                    severity: severity.parse().map_err(|_| err())?,
                    channel: channel(c)?,
                    reminder,
                })
            }
            _ => Err(err()),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One notification, as every sink renders it. Built once when it is queued
/// in the outbox, so a resend after a failover is the same message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Idempotency key: incident id, transition and channel.
    pub key: Key,
    /// Incident id (0 for a synthetic test alert).
    pub incident: u64,
    /// Firing or resolved.
    pub event: Event,
    /// A synthetic alert from `vantagectl alerts test`.
    #[serde(default)]
    pub test: bool,
    /// The check (or `vantage/<region>` for a mesh alert).
    pub check: String,
    /// Routing severity.
    pub severity: Severity,
    /// The verdict at the time: `outage`, `regional`, `blind`, `warning`...
    pub verdict: String,
    /// One line: what is wrong, from where.
    pub summary: String,
    /// The check's labels plus `check`, `severity` and `verdict`.
    pub labels: BTreeMap<String, String>,
    /// When the incident opened (ms since the epoch).
    pub started_ms: i64,
    /// When it resolved.
    pub ended_ms: Option<i64>,
    /// Trace of the result behind it (W3C traceparent), continued by the
    /// delivery; receivers get the delivery's own as a `traceparent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl Message {
    /// `[FIRING critical] mx1: OUTAGE (down from eu, ru)`, marked when synthetic.
    pub fn title(&self) -> String {
        let test = if self.test { "[TEST] " } else { "" };
        match self.event {
            // A change is news, not a fire: `[warning] spf: CHANGED SPF ...`.
            Event::Firing if self.verdict == "changed" => {
                format!("{test}[{}] {}: {}", self.severity, self.check, self.summary)
            }
            Event::Firing => format!(
                "{test}[FIRING {}] {}: {}",
                self.severity, self.check, self.summary
            ),
            Event::Resolved => format!("{test}[RESOLVED] {}: {}", self.check, self.summary),
        }
    }

    /// A few lines for chat and email bodies.
    pub fn body(&self) -> String {
        let mut s = self.title();
        if self.incident > 0 {
            s.push_str(&format!("\nincident #{}", self.incident));
        }
        s.push_str(&format!("\nstarted {}", rfc3339(self.started_ms)));
        if let Some(end) = self.ended_ms {
            s.push_str(&format!("\nresolved {}", rfc3339(end)));
        }
        if self.test {
            s.push_str("\nThis is a synthetic test alert sent by `vantagectl alerts test`; nothing is wrong.");
        }
        s
    }

    /// A synthetic alert for `vantagectl alerts test`.
    pub fn synthetic(channel: &str, now_ms: i64) -> Message {
        Message {
            key: Key::Test {
                channel: channel.to_owned(),
                at_ms: now_ms,
            },
            incident: 0,
            event: Event::Firing,
            test: true,
            check: "vantage-test".into(),
            severity: Severity::Info,
            verdict: "test".into(),
            summary: "synthetic test alert, nothing is wrong".into(),
            labels: BTreeMap::from([
                ("check".into(), "vantage-test".into()),
                ("severity".into(), "info".into()),
                ("test".into(), "true".into()),
            ]),
            started_ms: now_ms,
            ended_ms: None,
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text() {
        let keys = [
            (
                Key::notice(7, Severity::Critical, "pager"),
                "7/critical/pager",
            ),
            (
                Key::Notice {
                    incident: 7,
                    severity: Severity::Info,
                    channel: "chat".into(),
                    reminder: 3,
                },
                "7/info/chat/remind3",
            ),
            (
                Key::Resolved {
                    incident: 12,
                    channel: "boss".into(),
                },
                "12/resolved/boss",
            ),
            (
                Key::Test {
                    channel: "am".into(),
                    at_ms: 1_764_460_800_000,
                },
                "test/am/1764460800000",
            ),
        ];
        for (key, text) in keys {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<Key>(), Ok(key.clone()));
            let json = serde_json::to_string(&key).unwrap_or_default();
            assert_eq!(json, format!("\"{text}\""));
        }
        for bad in [
            "",
            "7",
            "7/urgent/pager",
            "x/critical/pager",
            "7/critical/",
            "7/critical/pager/remind0",
            "7/critical/pager/again",
            "7/critical/pager/remind1/x",
            "test/am/soon",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad:?} accepted");
        }
        let reminder: Key =
            "7/warning/chat/remind2"
                .parse()
                .unwrap_or(Key::notice(0, Severity::Info, "x"));
        assert!(reminder.is_reminder());
        assert_eq!((reminder.incident(), reminder.channel()), (7, "chat"));
    }

    #[test]
    fn titles_mark_tests_and_resolutions() {
        let m = Message::synthetic("chat", 0);
        assert!(m.title().starts_with("[TEST] [FIRING info] vantage-test"));
        assert!(m.body().contains("nothing is wrong"));
        assert_eq!(m.key.to_string(), "test/chat/0");
    }
}
