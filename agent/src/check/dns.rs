//! `dns`: one query (A, AAAA, MX, TXT, PTR, CNAME, NS) with optional
//! expectations: every expected value must be in the answer.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::proto::rr::{RData, RecordType as HickoryType};
use serde::{Deserialize, Serialize};
use vantage_common::FailureClass;

use super::{Check, CheckResult, Finding, Probe};
use crate::resolver::{display_name, reverse_name};

/// Record types a `dns` check can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    /// IPv4 address.
    #[default]
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
    /// Reverse pointer.
    Ptr,
    /// Alias.
    Cname,
    /// Name server.
    Ns,
}

impl RecordType {
    /// Parses `A`, `aaaa`, `MX`, ...
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            "MX" => RecordType::Mx,
            "TXT" => RecordType::Txt,
            "PTR" => RecordType::Ptr,
            "CNAME" => RecordType::Cname,
            "NS" => RecordType::Ns,
            _ => return None,
        })
    }

    fn hickory(self) -> HickoryType {
        match self {
            RecordType::A => HickoryType::A,
            RecordType::Aaaa => HickoryType::AAAA,
            RecordType::Mx => HickoryType::MX,
            RecordType::Txt => HickoryType::TXT,
            RecordType::Ptr => HickoryType::PTR,
            RecordType::Cname => HickoryType::CNAME,
            RecordType::Ns => HickoryType::NS,
        }
    }
}

/// Parameters of a `dns` check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsCheck {
    /// Name to query (for PTR, an IP address is turned into its reverse name).
    pub name: String,
    /// Record type.
    #[serde(default, rename = "type")]
    pub rtype: RecordType,
    /// Values that must all be present. MX values match `10 mx.example.org`
    /// or just `mx.example.org`; TXT values match when the record contains
    /// them; names are compared without case or trailing dot.
    #[serde(default)]
    pub expect: Vec<String>,
}

impl Check for DnsCheck {
    const KIND: &'static str = "dns";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let qname = match (self.rtype, self.name.parse::<IpAddr>()) {
            (RecordType::Ptr, Ok(ip)) => reverse_name(ip),
            _ => self.name.clone(),
        };
        let rtype = self.rtype.hickory();
        probe.detail("type", rtype.to_string());
        let resolver = probe.resolver()?;
        let answer = probe
            .step("query", async {
                resolver
                    .lookup(&qname, rtype)
                    .await
                    .map_err(|e| e.finding())
            })
            .await?;
        let values: Vec<String> = answer.iter().filter_map(render).collect();
        probe.detail("records", values.clone());

        let missing: Vec<&String> = self
            .expect
            .iter()
            .filter(|e| !values.iter().any(|v| matches(self.rtype, v, e)))
            .collect();
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Ok(Finding::fail(
                FailureClass::Dns,
                format!(
                    "{rtype} {qname}: expected {} not in answer [{}]",
                    missing.join(", "),
                    values.join(", ")
                ),
            ));
        }
        Ok(Finding::pass(format!(
            "{rtype} {qname}: {}",
            values.join(", ")
        )))
    }
}

/// One record as text: addresses, `10 mx.example.org`, TXT strings joined,
/// names without the trailing dot.
pub fn render(r: &RData) -> Option<String> {
    Some(match r {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference, display_name(&mx.exchange)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
        RData::PTR(p) => display_name(&p.0),
        RData::CNAME(c) => display_name(&c.0),
        RData::NS(n) => display_name(&n.0),
        _ => return None,
    })
}

fn normalise(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn matches(rtype: RecordType, value: &str, expected: &str) -> bool {
    match rtype {
        RecordType::Txt => value.contains(expected),
        RecordType::A | RecordType::Aaaa => {
            match (value.parse::<IpAddr>(), expected.trim().parse::<IpAddr>()) {
                (Ok(v), Ok(e)) => v == e,
                _ => false,
            }
        }
        RecordType::Mx => {
            let (v, e) = (normalise(value), normalise(expected));
            v == e || v.split_once(' ').is_some_and(|(_, host)| host == e)
        }
        _ => normalise(value) == normalise(expected),
    }
}
