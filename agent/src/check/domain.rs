//! `domain`: the whole mail audit of a domain. MX → each host `smtp` and
//! `tls` on port 25 (with the acceptance step when recipients are given)
//! → `ptr` and `dnsbl` of every host address → `spf`, `dkim`, `dmarc` →
//! `mta-sts`, `tlsrpt`, `dane` → `dnsbl` of the domain. One outcome per finding.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::future::join_all;
use vantage_common::{FailureClass, Outcome, Status};

use super::dane::DaneCheck;
use super::dkim::DkimCheck;
use super::dmarc::DmarcCheck;
use super::dnsbl::DnsblCheck;
use super::mta_sts::{MtaStsCheck, TlsRptCheck};
use super::mx::MxCheck;
use super::ptr::PtrCheck;
use super::smtp::{SmtpCheck, TlsMode};
use super::spf::SpfCheck;
use super::tls::TlsCheck;
use super::{CheckSpec, execute};
use crate::context::ProbeContext;

/// Selectors tried when the operator names none.
pub const COMMON_SELECTORS: &[&str] = &[
    "default",
    "dkim",
    "mail",
    "selector1",
    "selector2",
    "google",
    "k1",
    "s1",
    "s2",
];

/// Parameters of a domain audit.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainAudit {
    /// Mail domain.
    pub domain: String,
    /// DKIM selectors; common ones are tried when empty.
    pub selectors: Vec<String>,
    /// DNSBL zones for host addresses and the domain; defaults when empty.
    pub zones: Vec<String>,
    /// Trust anchors for the `tls` findings (system roots when `None`).
    pub ca_file: Option<std::path::PathBuf>,
    /// SMTP port of the MX hosts (25 unless testing).
    pub smtp_port: u16,
    /// Certificate thresholds.
    pub warn_days: u32,
    /// Certificate thresholds.
    pub crit_days: u32,
    /// Recipients each MX host's `smtp` finding tries (MAIL/RCPT/RSET).
    pub rcpt: Vec<String>,
    /// Envelope sender for `rcpt` (empty: the null sender).
    pub mail_from: String,
    /// DNSSEC trust anchors for the `dane` finding (the root's when `None`).
    pub trust_anchor: Option<std::path::PathBuf>,
}

impl DomainAudit {
    /// An audit of `domain` with defaults.
    pub fn new(domain: impl Into<String>) -> Self {
        DomainAudit {
            domain: domain.into(),
            selectors: Vec::new(),
            zones: Vec::new(),
            ca_file: None,
            smtp_port: 25,
            warn_days: 30,
            crit_days: 7,
            rcpt: Vec::new(),
            mail_from: String::new(),
            trust_anchor: None,
        }
    }

    /// Runs every check of the audit; outcomes in audit order.
    pub async fn run(&self, ctx: &ProbeContext) -> Vec<Outcome> {
        let domain = self.domain.trim_end_matches('.').to_ascii_lowercase();
        let mx_outcome = execute(&MxCheck::new(domain.clone()), ctx).await;

        // Host names and addresses come from the same (cached) lookups the
        // MX check just made.
        let mut hosts = Vec::new();
        let mut addresses = BTreeSet::<IpAddr>::new();
        if let Ok(resolver) = ctx.resolver() {
            for host in resolver.mx_hosts(&domain).await.unwrap_or_default() {
                addresses.extend(resolver.addresses(&host).await.unwrap_or_default());
                hosts.push(host);
            }
        }

        let mut specs = Vec::new();
        for host in &hosts {
            let mut smtp = SmtpCheck::new(host.clone(), self.smtp_port);
            smtp.rcpt = self.rcpt.clone();
            smtp.mail_from = self.mail_from.clone();
            specs.push(CheckSpec::Smtp(smtp));
            let mut tls = TlsCheck::new(host.clone(), self.smtp_port);
            tls.tls = TlsMode::Starttls;
            tls.ca_file = self.ca_file.clone();
            tls.warn_days = self.warn_days;
            tls.crit_days = self.crit_days;
            specs.push(CheckSpec::Tls(tls));
        }
        for ip in &addresses {
            specs.push(CheckSpec::Ptr(PtrCheck {
                ip: *ip,
                expect: Vec::new(),
            }));
            specs.push(CheckSpec::Dnsbl(DnsblCheck {
                target: ip.to_string(),
                zones: self.zones.clone(),
            }));
        }
        specs.push(CheckSpec::Spf(SpfCheck {
            domain: domain.clone(),
            ip: None,
            expect: None,
            authoritative: false,
        }));
        specs.push(CheckSpec::Dmarc(DmarcCheck {
            domain: domain.clone(),
            require_policy: None,
            expect: None,
            authoritative: false,
        }));
        let mut mta_sts = MtaStsCheck::new(domain.clone());
        mta_sts.ca_file = self.ca_file.clone();
        mta_sts.port = self.smtp_port;
        specs.push(CheckSpec::MtaSts(mta_sts));
        specs.push(CheckSpec::TlsRpt(TlsRptCheck {
            domain: domain.clone(),
            require: false,
        }));
        let mut dane = DaneCheck::new(domain.clone());
        dane.port = self.smtp_port;
        dane.trust_anchor = self.trust_anchor.clone();
        specs.push(CheckSpec::Dane(dane));
        specs.push(CheckSpec::Dnsbl(DnsblCheck {
            target: domain.clone(),
            zones: self.zones.clone(),
        }));

        let (checked, dkim) = tokio::join!(
            join_all(specs.iter().map(|s| super::run(s, ctx))),
            self.dkim(&domain, ctx)
        );
        let mut outcomes = vec![mx_outcome];
        outcomes.extend(checked);
        outcomes.extend(dkim);
        outcomes
    }

    /// DKIM findings: every named selector; without names, the first common
    /// selector that has a key, or one `warn` saying none was found.
    async fn dkim(&self, domain: &str, ctx: &ProbeContext) -> Vec<Outcome> {
        let named = !self.selectors.is_empty();
        let selectors: Vec<String> = if named {
            self.selectors.clone()
        } else {
            COMMON_SELECTORS.iter().map(|s| (*s).to_owned()).collect()
        };
        let checks: Vec<DkimCheck> = selectors
            .iter()
            .map(|s| DkimCheck {
                domain: domain.to_owned(),
                selector: s.clone(),
                expect: None,
                authoritative: false,
            })
            .collect();
        let outcomes = join_all(checks.iter().map(|c| execute(c, ctx))).await;
        if named {
            return outcomes;
        }
        // "no key at this selector" is the expected answer for most guesses.
        let found: Vec<Outcome> = outcomes
            .into_iter()
            .filter(|o| !o.message.starts_with("no DKIM record at"))
            .collect();
        if found.is_empty() {
            let mut o = Outcome::new(
                "dkim",
                domain,
                Status::Warn,
                Some(FailureClass::Policy),
                format!(
                    "no DKIM key at the common selectors ({}); name yours with --selector",
                    COMMON_SELECTORS.join(", ")
                ),
            );
            o.details.insert("selectors_tried".into(), selectors.into());
            return vec![o];
        }
        found
    }
}
