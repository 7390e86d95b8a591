//! The result of one probe: status, failure class, message, timings, details.
//!
//! `fail` is about the target; `error` means the vantage could not tell, and
//! never counts as a vote against the target.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// Overall verdict of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The target answered as it should.
    Pass,
    /// The target works but is degraded (slow, certificate expiring).
    Warn,
    /// The target is broken.
    Fail,
    /// This vantage could not tell (its own resolver or socket failed).
    Error,
}

impl Status {
    /// Exit code after the Nagios/Icinga plugin convention.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Fail => 2,
            Status::Error => 3,
        }
    }

    /// Lower-case name as printed and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FailureClass {
    /// A step did not finish before the deadline.
    Timeout,
    /// The connection was actively refused.
    Refused,
    /// No route to the target, or the local socket could not be set up.
    Unreachable,
    /// A DNS answer was missing, wrong, or the resolver failed.
    Dns,
    /// A TLS handshake or certificate verification failed.
    Tls,
    /// The peer spoke something other than the expected protocol.
    Protocol,
    /// The target works but violates a policy (STARTTLS missing on 587,
    /// weak DMARC policy, SPF over the lookup limit, ...).
    Policy,
    /// The address or domain is on a blocklist.
    Listed,
    /// A certificate expires soon.
    Expiring,
    /// A certificate has expired.
    Expired,
    /// The server refused to log the configured user in (AUTH), or offers
    /// no way to log in safely.
    Auth,
}

impl FailureClass {
    /// Lower-case name as printed and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Timeout => "timeout",
            FailureClass::Refused => "refused",
            FailureClass::Unreachable => "unreachable",
            FailureClass::Dns => "dns",
            FailureClass::Tls => "tls",
            FailureClass::Protocol => "protocol",
            FailureClass::Policy => "policy",
            FailureClass::Listed => "listed",
            FailureClass::Expiring => "expiring",
            FailureClass::Expired => "expired",
            FailureClass::Auth => "auth",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timed steps of a probe, in the order they ran. Serialised as a JSON object
/// `name → milliseconds` (fractional), keeping that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases(Vec<(String, Duration)>);

impl Phases {
    /// Records that `name` took `took`. A repeated name accumulates.
    pub fn record(&mut self, name: &str, took: Duration) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, d)) => *d += took,
            None => self.0.push((name.to_owned(), took)),
        }
    }

    /// Steps in the order they ran.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.0.iter().map(|(n, d)| (n.as_str(), *d))
    }

    /// Duration of one step, if it ran.
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

impl Serialize for Phases {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, took) in &self.0 {
            // Milliseconds with microsecond precision: loopback steps take
            // well under a millisecond and should not all print as 0.
            let ms = (took.as_micros() as f64) / 1000.0;
            map.serialize_entry(name, &ms)?;
        }
        map.end()
    }
}

/// The details key under which `tls` and `smtp` checks report the leaf
/// certificate's expiry, in Unix seconds (the coordinator exports it as
/// `vantage_check_cert_not_after_timestamp_seconds`).
pub const CERT_NOT_AFTER: &str = "cert_not_after";

/// One probe's result, as printed by `vantage-agent probe -o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Check kind (`smtp`, `tls`, `dns`, ...).
    pub kind: String,
    /// What was probed, as given.
    pub target: String,
    /// pass / warn / fail / error.
    pub status: Status,
    /// Why it did not pass; `None` on pass.
    pub class: Option<FailureClass>,
    /// One line for a human.
    pub message: String,
    /// Wall time of the whole probe.
    pub duration_ms: u64,
    /// Timed steps.
    pub phases: Phases,
    /// Small structured facts: banner, extensions, certificate, records seen.
    pub details: BTreeMap<String, Value>,
}

impl Outcome {
    /// A new outcome; `class` is dropped for `pass` so the two never disagree.
    pub fn new(
        kind: &str,
        target: &str,
        status: Status,
        class: Option<FailureClass>,
        message: impl Into<String>,
    ) -> Self {
        Outcome {
            kind: kind.to_owned(),
            target: target.to_owned(),
            status,
            class: if status == Status::Pass { None } else { class },
            message: message.into(),
            duration_ms: 0,
            phases: Phases::default(),
            details: BTreeMap::new(),
        }
    }

    /// One human-readable line: `FAIL smtp mx.example.org:25 [timeout] banner: ...`.
    pub fn summary_line(&self) -> String {
        let status = self.status.as_str().to_uppercase();
        match self.class {
            Some(class) => format!(
                "{status} {} {} [{class}] {} ({} ms)",
                self.kind, self.target, self.message, self.duration_ms
            ),
            None => format!(
                "{status} {} {} {} ({} ms)",
                self.kind, self.target, self.message, self.duration_ms
            ),
        }
    }
}

/// The worst status of a set of outcomes (error ranks above fail for exit
/// codes only when nothing failed: a failure is the more useful answer).
pub fn worst_status<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Status {
    let mut worst = Status::Pass;
    for o in outcomes {
        worst = match (worst, o.status) {
            (Status::Fail, _) | (_, Status::Fail) => Status::Fail,
            (Status::Error, _) | (_, Status::Error) => Status::Error,
            (Status::Warn, _) | (_, Status::Warn) => Status::Warn,
            _ => Status::Pass,
        };
    }
    worst
}
