//! `dns`: one query (A, AAAA, MX, TXT, PTR, CNAME, NS) with optional
//! expectations: every expected value must be in the answer.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::proto::rr::{RData, RecordType as HickoryType};
use vantage_common::FailureClass;
use vantage_common::observed::Observed;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe};
use crate::authoritative::Question;
use crate::resolver::{display_name, reverse_name};

pub use vantage_common::spec::dns::{DnsCheck, RecordType};

/// The hickory record type a `dns` check asks for.
fn hickory(rtype: RecordType) -> HickoryType {
    match rtype {
        RecordType::A => HickoryType::A,
        RecordType::Aaaa => HickoryType::AAAA,
        RecordType::Mx => HickoryType::MX,
        RecordType::Txt => HickoryType::TXT,
        RecordType::Ptr => HickoryType::PTR,
        RecordType::Cname => HickoryType::CNAME,
        RecordType::Ns => HickoryType::NS,
    }
}

/// The name a check asks: for PTR an address becomes its reverse name.
fn qname(c: &DnsCheck) -> String {
    match (c.rtype, c.name.parse::<IpAddr>()) {
        (RecordType::Ptr, Ok(ip)) => reverse_name(ip),
        _ => c.name.clone(),
    }
}

impl Check for DnsCheck {
    const KIND: Kind = Kind::Dns;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn target(&self) -> String {
        self.name.clone()
    }

    fn authoritative(&self, _probe: &Probe<'_>) -> Option<Question> {
        self.authoritative
            .then(|| Question::all(qname(self), hickory(self.rtype)))
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let qname = qname(self);
        let rtype = hickory(self.rtype);
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
        let seen = match self.rtype {
            RecordType::Txt => Observed::records(&values),
            _ => Observed::names(&values),
        };
        probe.observed(&format!("{rtype} {qname}"), seen, None)?;

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
