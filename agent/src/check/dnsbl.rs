//! `dnsbl`: an address (reversed octets / nibbles) or a domain looked up in
//! blocklist zones. 127.0.0.x answers are listings, decoded where the zone's
//! codes are known, with the TXT reason; 127.255.255.x means the list refused
//! to answer (public resolver, rate limit): that is `error`, not `listed`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::future::join_all;
use hickory_resolver::proto::rr::{RData, RecordType};
use serde_json::{Map, Value, json};
use vantage_common::FailureClass;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe};
use crate::resolver::{LookupError, Resolver, reversed_labels};

/// Zones used for addresses when none are given.
pub const DEFAULT_IP_ZONES: &[&str] = &[
    "zen.spamhaus.org",
    "bl.spamcop.net",
    "b.barracudacentral.org",
    "psbl.surriel.com",
];
/// Zones used for domains when none are given.
pub const DEFAULT_DOMAIN_ZONES: &[&str] =
    &["dbl.spamhaus.org", "multi.surbl.org", "multi.uribl.com"];

pub use vantage_common::spec::dnsbl::DnsblCheck;
/// What one zone said.
#[derive(Debug, Clone, PartialEq)]
enum ZoneAnswer {
    Clear,
    Listed {
        codes: Vec<Ipv4Addr>,
        reason: Option<String>,
    },
    Refused(Ipv4Addr),
    Unexpected(Vec<Ipv4Addr>),
    Failed(LookupError),
}

/// Meaning of a return code where the zone documents it.
fn meaning(zone: &str, code: Ipv4Addr) -> Option<&'static str> {
    let [_, _, third, last] = code.octets();
    match (zone, third, last) {
        (z, 0, 2) if z.ends_with("spamhaus.org") && !z.starts_with("dbl.") => {
            Some("SBL: spam source")
        }
        (z, 0, 3) if z.ends_with("spamhaus.org") && !z.starts_with("dbl.") => {
            Some("SBL CSS: snowshoe spam")
        }
        (z, 0, 4..=7) if z.ends_with("spamhaus.org") && !z.starts_with("dbl.") => {
            Some("XBL: exploited host")
        }
        (z, 0, 9) if z.ends_with("spamhaus.org") => Some("DROP: hijacked netblock"),
        (z, 0, 10..=11) if z.ends_with("spamhaus.org") => Some("PBL: end-user address range"),
        (z, 1, 2) if z.starts_with("dbl.") => Some("DBL: spam domain"),
        (z, 1, 4) if z.starts_with("dbl.") => Some("DBL: phishing domain"),
        (z, 1, 5) if z.starts_with("dbl.") => Some("DBL: malware domain"),
        (z, 1, 6) if z.starts_with("dbl.") => Some("DBL: botnet C&C domain"),
        (z, 1, 102..=106) if z.starts_with("dbl.") => Some("DBL: abused legitimate domain"),
        (_, 0, 2) => Some("listed"),
        _ => None,
    }
}

async fn query(resolver: &Resolver, name: &str) -> ZoneAnswer {
    let codes: Vec<Ipv4Addr> = match resolver.lookup(name, RecordType::A).await {
        Ok(records) => records
            .iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_absent() => return ZoneAnswer::Clear,
        Err(e) => return ZoneAnswer::Failed(e),
    };
    if let Some(refusal) = codes.iter().find(|c| c.octets()[..3] == [127, 255, 255]) {
        return ZoneAnswer::Refused(*refusal);
    }
    if codes.iter().any(|c| c.octets()[0] != 127) {
        return ZoneAnswer::Unexpected(codes);
    }
    let reason = resolver
        .txt(name)
        .await
        .ok()
        .and_then(|t| t.into_iter().next());
    ZoneAnswer::Listed { codes, reason }
}

impl Check for DnsblCheck {
    const KIND: Kind = Kind::Dnsbl;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn target(&self) -> String {
        self.target.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let (prefix, defaults) = match self.target.parse::<IpAddr>() {
            Ok(ip) => (reversed_labels(ip), DEFAULT_IP_ZONES),
            Err(_) => (
                self.target.trim_end_matches('.').to_owned(),
                DEFAULT_DOMAIN_ZONES,
            ),
        };
        let zones: Vec<String> = if self.zones.is_empty() {
            defaults.iter().map(|z| (*z).to_owned()).collect()
        } else {
            self.zones.clone()
        };
        let answers = probe
            .step("lookups", async {
                let names: Vec<String> = zones.iter().map(|z| format!("{prefix}.{z}")).collect();
                Ok(join_all(names.iter().map(|n| query(&resolver, n))).await)
            })
            .await?;

        let mut report = Map::new();
        let (mut listed, mut refused, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for (zone, answer) in zones.iter().zip(&answers) {
            let entry = match answer {
                ZoneAnswer::Clear => json!({"listed": false}),
                ZoneAnswer::Listed { codes, reason } => {
                    let meanings: Vec<&str> =
                        codes.iter().filter_map(|c| meaning(zone, *c)).collect();
                    listed.push(match meanings.first() {
                        Some(m) => format!("{zone} ({m})"),
                        None => format!(
                            "{zone} ({})",
                            codes
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                    json!({"listed": true, "codes": codes, "meaning": meanings, "reason": reason})
                }
                ZoneAnswer::Refused(code) => {
                    refused.push(format!("{zone} ({code})"));
                    json!({"listed": false, "refused": code.to_string()})
                }
                ZoneAnswer::Unexpected(codes) => {
                    failed.push(format!("{zone}: unexpected answer {codes:?}"));
                    json!({"listed": false, "unexpected": codes})
                }
                ZoneAnswer::Failed(e) => {
                    failed.push(format!("{zone}: {e}"));
                    json!({"listed": false, "error": e.to_string()})
                }
            };
            report.insert(zone.clone(), entry);
        }
        probe.detail("zones", Value::Object(report));

        if !listed.is_empty() {
            return Ok(Finding::fail(
                FailureClass::Listed,
                format!("{} listed on {}", self.target, listed.join(", ")),
            ));
        }
        if !refused.is_empty() {
            return Ok(Finding::error(
                FailureClass::Dns,
                format!(
                    "list refused the query (resolver blocked or rate-limited): {}",
                    refused.join(", ")
                ),
            ));
        }
        if !failed.is_empty() {
            return Ok(Finding::error(
                FailureClass::Dns,
                format!("could not query {}", failed.join("; ")),
            ));
        }
        Ok(Finding::pass(format!(
            "{} not listed on {} zones",
            self.target,
            zones.len()
        )))
    }
}
