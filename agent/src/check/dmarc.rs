//! `dmarc`: the policy at `_dmarc.<domain>`, or, when the domain has none,
//! the one it inherits from its organisational domain (found by walking up
//! the name, as DMARCbis does), reported as inherited. Parsed by mail-auth.

use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};
use vantage_common::FailureClass;
use vantage_common::observed::Observed;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe, single_record};
use crate::authoritative::Question;
use crate::resolver::Resolver;
use hickory_resolver::proto::rr::RecordType;

/// Most names tried while walking up to the organisational domain.
const MAX_WALK: usize = 8;

use vantage_common::spec::dmarc::is_dmarc;
pub use vantage_common::spec::dmarc::{DmarcCheck, RequiredPolicy};

fn policy_name(p: &Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "unspecified",
    }
}

fn strength(p: &Policy) -> RequiredPolicy {
    match p {
        Policy::Reject => RequiredPolicy::Reject,
        Policy::Quarantine => RequiredPolicy::Quarantine,
        Policy::None | Policy::Unspecified => RequiredPolicy::None,
    }
}

fn alignment(a: &Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "relaxed",
        Alignment::Strict => "strict",
    }
}

/// Where the policy was found and its DMARC records there.
struct Found {
    at: String,
    records: Vec<String>,
}

/// `_dmarc.<domain>`, then each parent domain above it (not the TLD).
async fn discover(resolver: &Resolver, domain: &str) -> Result<Option<Found>, Finding> {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    let candidates = (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .take(MAX_WALK);
    for at in candidates {
        let records = match resolver.txt(&format!("_dmarc.{at}")).await {
            Ok(txt) => txt,
            Err(e) if e.is_absent() => continue,
            Err(e) => return Err(e.finding()),
        };
        let records: Vec<String> = records.into_iter().filter(|t| is_dmarc(t)).collect();
        if !records.is_empty() {
            return Ok(Some(Found { at, records }));
        }
    }
    Ok(None)
}

impl Check for DmarcCheck {
    const KIND: Kind = Kind::Dmarc;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn target(&self) -> String {
        self.domain.clone()
    }

    /// Where the record was found (the organisational domain's when
    /// inherited), else where it should be.
    fn authoritative(&self, probe: &Probe<'_>) -> Option<Question> {
        if !self.authoritative {
            return None;
        }
        let name = probe
            .detail_str("found_at")
            .unwrap_or_else(|| format!("_dmarc.{}", self.domain.trim_end_matches('.')));
        Some(Question {
            name,
            rtype: RecordType::TXT,
            keep: is_dmarc,
        })
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let domain = self.domain.trim_end_matches('.').to_ascii_lowercase();
        let found = probe.step("txt", discover(&resolver, &domain)).await?;
        let Some(Found { at, records }) = found else {
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!("{domain} has no DMARC record"),
            ));
        };
        let inherited = at != domain;
        probe.detail("found_at", format!("_dmarc.{at}"));
        probe.detail("inherited", inherited);
        let record = single_record(probe, records, "DMARC", &format!("_dmarc.{at}"))?;
        let dmarc = Dmarc::parse(record.as_bytes()).map_err(|e| {
            Finding::fail(
                FailureClass::Policy,
                format!("DMARC syntax error at _dmarc.{at} ({e}): {record}"),
            )
        })?;
        let pin = self
            .pin()
            .map_err(|e| Finding::error(FailureClass::Policy, e))?;
        let seen = Observed::tags(&record).unwrap_or_default();
        probe.observed(&format!("DMARC _dmarc.{at}"), seen, pin.as_ref())?;
        // A subdomain without its own record gets the organisational domain's
        // subdomain policy (sp=, defaulting to p=).
        let effective = match (&dmarc.sp, inherited) {
            (Policy::Unspecified, _) | (_, false) => &dmarc.p,
            (sp, true) => sp,
        };
        probe.detail("p", policy_name(&dmarc.p));
        probe.detail("sp", policy_name(&dmarc.sp));
        probe.detail("policy", policy_name(effective));
        probe.detail("adkim", alignment(&dmarc.adkim));
        probe.detail("aspf", alignment(&dmarc.aspf));
        probe.detail(
            "rua",
            dmarc
                .rua
                .iter()
                .map(|u| u.uri().to_owned())
                .collect::<Vec<_>>(),
        );

        let source = if inherited {
            format!("inherited from organisational domain {at}")
        } else {
            format!("at _dmarc.{domain}")
        };
        let summary = format!("policy {} {source}", policy_name(effective));
        if let Some(required) = self.require_policy
            && strength(effective) < required
        {
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!("{summary}, weaker than the required {required:?}").to_lowercase(),
            ));
        }
        Ok(Finding::pass(summary))
    }
}
