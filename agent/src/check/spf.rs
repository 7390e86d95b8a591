//! `spf`: the domain's SPF record (RFC 7208): exactly one, valid syntax
//! (parsed by mail-auth), within the 10-DNS-lookup limit, its `all`
//! qualifier; with `ip`, whether that address may send for the domain.

use std::collections::HashSet;
use std::time::Duration;

use mail_auth::SpfResult;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};
use vantage_common::FailureClass;
use vantage_common::observed::Observed;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe, single_record};
use crate::authoritative::Question;
use crate::resolver::{LookupError, Resolver};
use hickory_resolver::proto::rr::RecordType;

/// RFC 7208 §4.6.4: at most 10 mechanisms and modifiers that query DNS.
pub const LOOKUP_LIMIT: u32 = 10;

pub use vantage_common::spec::spf::SpfCheck;

/// Finds the domain's SPF record(s) among its TXT records.
pub async fn fetch_records(resolver: &Resolver, domain: &str) -> Result<Vec<String>, LookupError> {
    let txt = match resolver.txt(domain).await {
        Ok(txt) => txt,
        Err(LookupError::NoRecords { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(txt.into_iter().filter(|t| is_spf(t)).collect())
}

fn is_spf(txt: &str) -> bool {
    let t = txt.trim_start().as_bytes();
    t.len() >= 6 && t[..6].eq_ignore_ascii_case(b"v=spf1") && t.get(6).is_none_or(|c| *c == b' ')
}

/// RFC 7208 §4.6/§5 checks that mail-auth's (deliberately lenient) parser
/// lets through: unknown mechanisms are a permerror, and `ip4:`/`ip6:` must
/// hold real networks. Returns the first offending term.
fn strict_terms(record: &str) -> Result<(), String> {
    for term in record.split_whitespace().skip(1) {
        let body = term.trim_start_matches(['+', '-', '~', '?']);
        let split = body.find([':', '/', '=']).unwrap_or(body.len());
        let (name, rest) = body.split_at(split);
        if rest.starts_with('=') {
            continue; // a modifier; unknown ones are allowed
        }
        let network = |max: u8, ok: fn(&str) -> bool| {
            let value = rest.strip_prefix(':').unwrap_or("");
            let (addr, len) = value.split_once('/').unwrap_or((value, "0"));
            ok(addr) && len.parse::<u8>().is_ok_and(|l| l <= max)
        };
        let valid = match name.to_ascii_lowercase().as_str() {
            "all" | "include" | "a" | "mx" | "ptr" | "exists" => true,
            "ip4" => network(32, |a| a.parse::<std::net::Ipv4Addr>().is_ok()),
            "ip6" => network(128, |a| a.parse::<std::net::Ipv6Addr>().is_ok()),
            _ => return Err(format!("unknown mechanism in {term:?}")),
        };
        if !valid {
            return Err(format!("invalid network in {term:?}"));
        }
    }
    Ok(())
}

fn literal(m: &Macro) -> Option<String> {
    match m {
        Macro::Literal(bytes) => Some(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('.')
                .to_owned(),
        ),
        _ => None,
    }
}

/// Counts DNS-querying terms across the record and everything it includes
/// or redirects to. Stops as soon as the limit is passed.
async fn count_lookups(resolver: &Resolver, domain: &str, top: &Spf) -> Result<u32, String> {
    let mut count = 0u32;
    let mut visited: HashSet<String> = HashSet::from([domain.to_ascii_lowercase()]);
    let mut pending: Vec<Spf> = vec![top.clone()];
    while let Some(record) = pending.pop() {
        let mut next = Vec::new();
        for d in record.directives.iter() {
            match &d.mechanism {
                Mechanism::Include { macro_string } => {
                    count += 1;
                    next.extend(literal(macro_string));
                }
                Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr { .. }
                | Mechanism::Exists { .. } => count += 1,
                Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => {}
            }
        }
        if let Some(redirect) = &record.redirect {
            count += 1;
            next.extend(literal(redirect));
        }
        if count > LOOKUP_LIMIT {
            return Ok(count);
        }
        for target in next {
            if !visited.insert(target.to_ascii_lowercase()) {
                return Err(format!("include loop through {target}"));
            }
            let records = fetch_records(resolver, &target)
                .await
                .map_err(|e| format!("include:{target}: {e}"))?;
            let [one] = records.as_slice() else {
                return Err(format!(
                    "include:{target} has {} SPF records, needs exactly one",
                    records.len()
                ));
            };
            pending.push(
                Spf::parse(one.as_bytes())
                    .map_err(|e| format!("include:{target}: syntax error ({e})"))?,
            );
        }
    }
    Ok(count)
}

fn qualifier(q: &Qualifier) -> &'static str {
    match q {
        Qualifier::Pass => "+all",
        Qualifier::Fail => "-all",
        Qualifier::SoftFail => "~all",
        Qualifier::Neutral => "?all",
    }
}

impl Check for SpfCheck {
    const KIND: Kind = Kind::Spf;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn target(&self) -> String {
        self.domain.clone()
    }

    fn authoritative(&self, _probe: &Probe<'_>) -> Option<Question> {
        self.authoritative.then(|| Question {
            name: self.domain.clone(),
            rtype: RecordType::TXT,
            keep: is_spf,
        })
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let domain = self.domain.as_str();
        let records = probe
            .step("txt", async {
                fetch_records(&resolver, domain)
                    .await
                    .map_err(|e| e.finding())
            })
            .await?;
        let record = single_record(probe, records, "SPF", domain)?;
        let spf = strict_terms(&record)
            .and_then(|()| Spf::parse(record.as_bytes()).map_err(|e| e.to_string()))
            .map_err(|e| {
                Finding::fail(
                    FailureClass::Policy,
                    format!("SPF syntax error ({e}): {record}"),
                )
            })?;
        let pin = self
            .pin()
            .map_err(|e| Finding::error(FailureClass::Policy, e))?;
        let seen = Observed::spf(&record).unwrap_or_default();
        probe.observed(&format!("SPF {domain}"), seen, pin.as_ref())?;
        let all = spf
            .directives
            .iter()
            .find(|d| d.mechanism == Mechanism::All);
        probe.detail("all", all.map(|d| qualifier(&d.qualifier)));
        if let Some(redirect) = spf.redirect.as_ref().and_then(literal) {
            probe.detail("redirect", redirect);
        }

        let lookups = probe
            .step("lookups", async {
                count_lookups(&resolver, domain, &spf)
                    .await
                    .map_err(|e| Finding::fail(FailureClass::Policy, e))
            })
            .await?;
        probe.detail("lookups", lookups);
        if lookups > LOOKUP_LIMIT {
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!(
                    "SPF needs more than {LOOKUP_LIMIT} DNS lookups ({lookups} counted): receivers return permerror"
                ),
            ));
        }
        if all.is_some_and(|d| d.qualifier == Qualifier::Pass) {
            return Ok(Finding::fail(
                FailureClass::Policy,
                "SPF ends in +all: every host on the internet may send",
            ));
        }

        let Some(ip) = self.ip else {
            let all = all.map(|d| qualifier(&d.qualifier)).unwrap_or("no all");
            return Ok(Finding::pass(format!(
                "SPF valid, {lookups} lookups, {all}"
            )));
        };
        let sender = format!("postmaster@{domain}");
        let authenticator = resolver.authenticator();
        let result = probe
            .step("evaluate", async {
                let params =
                    SpfParameters::verify_mail_from(ip, domain, "vantage.invalid", &sender);
                Ok(authenticator.verify_spf(params).await.result())
            })
            .await?;
        let name = format!("{result:?}").to_ascii_lowercase();
        probe.detail("ip_result", name.clone());
        match result {
            SpfResult::Pass => Ok(Finding::pass(format!(
                "{ip} may send for {domain} (spf pass)"
            ))),
            SpfResult::TempError => Ok(Finding::error(
                FailureClass::Dns,
                format!("evaluating SPF for {ip}: temporary DNS error"),
            )),
            _ => Ok(Finding::fail(
                FailureClass::Policy,
                format!("{ip} may not send for {domain} (spf {name})"),
            )),
        }
    }
}
