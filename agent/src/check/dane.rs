//! `dane` (RFC 7672): the TLSA records at `_25._tcp.<host>` of every MX
//! host of a domain (or of one host), fetched with DNSSEC validation,
//! against the certificate chain each host presents after STARTTLS.
//!
//! Only DANE-TA(2) and DANE-EE(3) records count for SMTP (RFC 7672
//! §3.1.3). DANE-EE: the leaf matches (name and dates are not checked,
//! §3.1.1). DANE-TA: a certificate of the chain matches, and the chain
//! verifies up to it for the host's name. Selectors: whole certificate
//! (0) or its public key (1); matching: exact (0), SHA-256 (1), SHA-512
//! (2). No host matching its records fails (class `tls`); records in a
//! zone that is not signed, or that fail validation, cannot be used and
//! warn (class `dns`); no TLSA at all passes with "no DANE". Whether
//! there are records is asked of the run's resolver; records that exist
//! are asked again of a validating one (the IANA root's trust anchor, or
//! the check's `trust_anchor` file).

use std::time::Duration;

use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::proto::rr::rdata::TLSA;
use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use rustls::pki_types::CertificateDer;
use serde_json::json;
use vantage_common::FailureClass;
use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe, smtp};
use crate::net;
use crate::resolver::Tlsa;

pub use vantage_common::spec::dane::DaneCheck;

/// What `record` selects of `cert`, digested as it says; `None` for
/// selectors and matching types it does not know.
fn association(record: &TLSA, cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let selected = match record.selector {
        Selector::Full => cert.as_ref().to_vec(),
        Selector::Spki => x509_parser::parse_x509_certificate(cert.as_ref())
            .ok()?
            .1
            .tbs_certificate
            .subject_pki
            .raw
            .to_vec(),
        _ => return None,
    };
    let digest = |alg| ring::digest::digest(alg, &selected).as_ref().to_vec();
    match record.matching {
        Matching::Raw => Some(selected.clone()),
        Matching::Sha256 => Some(digest(&ring::digest::SHA256)),
        Matching::Sha512 => Some(digest(&ring::digest::SHA512)),
        _ => None,
    }
}

fn matches(record: &TLSA, cert: &CertificateDer<'_>) -> bool {
    association(record, cert).is_some_and(|a| a == record.cert_data)
}

/// `3 1 1 ab12…` as a record is written.
fn shown(record: &TLSA) -> String {
    let data: String = record
        .cert_data
        .iter()
        .take(32)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if record.cert_data.len() > 32 {
        "…"
    } else {
        ""
    };
    format!(
        "{} {} {} {data}{more}",
        u8::from(record.cert_usage),
        u8::from(record.selector),
        u8::from(record.matching)
    )
}

/// Does the presented `chain` (leaf first) satisfy one of `records` for
/// `host`? The usage that matched, if any.
fn satisfied(
    records: &[TLSA],
    chain: &[CertificateDer<'static>],
    host: &str,
) -> Option<&'static str> {
    let leaf = chain.first()?;
    if records
        .iter()
        .any(|r| r.cert_usage == CertUsage::DaneEe && matches(r, leaf))
    {
        return Some("DANE-EE");
    }
    let sni = net::server_name(host).ok()?;
    for anchor in chain.iter().skip(1) {
        let anchored = records
            .iter()
            .any(|r| r.cert_usage == CertUsage::DaneTa && matches(r, anchor));
        if !anchored {
            continue;
        }
        let mut roots = rustls::RootCertStore::empty();
        if roots.add(anchor.clone()).is_ok() && net::verify_chain(chain, &sni, roots).is_ok() {
            return Some("DANE-TA");
        }
    }
    None
}

impl Check for DaneCheck {
    const KIND: Kind = Kind::Dane;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn target(&self) -> String {
        self.target.clone()
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let target = self.target.trim_end_matches('.').to_ascii_lowercase();
        let resolver = probe.resolver()?;
        let mx = probe
            .step("mx", async {
                match resolver.mx_hosts(&target).await {
                    Err(e) if e.is_absent() => Ok(Vec::new()),
                    found => found.map_err(|e| e.finding()),
                }
            })
            .await?;
        // A domain's MX hosts; a name without MX records is the host.
        let hosts = if mx.is_empty() {
            vec![target.clone()]
        } else {
            mx
        };
        let validating = probe
            .ctx
            .resolver_settings()
            .validating(self.trust_anchor.as_deref())
            .map_err(|e| e.finding())?;

        let (mut secured, mut unusable, mut mismatched) = (0, Vec::new(), Vec::new());
        let mut seen = Vec::new();
        for host in &hosts {
            let name = format!("_{}._tcp.{host}", self.port);
            // Whether there are any is a plain question; only records
            // that exist need DNSSEC to be believed.
            let tlsa = probe
                .step("tlsa", async {
                    match resolver.lookup(&name, RecordType::TLSA).await {
                        Err(e) if e.is_absent() => Ok(Tlsa::Absent),
                        Err(e) => Err(e.finding()),
                        Ok(_) => validating.tlsa(&name).await.map_err(|e| e.finding()),
                    }
                })
                .await?;
            let records = match tlsa {
                Tlsa::Absent => {
                    seen.push(json!({"host": host, "tlsa": "none"}));
                    continue;
                }
                Tlsa::Bogus => {
                    seen.push(json!({"host": host, "tlsa": "bogus"}));
                    unusable.push(format!("{name}: DNSSEC validation failed (bogus)"));
                    continue;
                }
                Tlsa::Insecure(records) => {
                    let shown: Vec<String> = records.iter().map(shown).collect();
                    seen.push(json!({"host": host, "tlsa": "insecure", "records": shown}));
                    unusable.push(format!(
                        "{name}: {} TLSA record(s) in a zone that is not signed: not usable",
                        records.len()
                    ));
                    continue;
                }
                Tlsa::Secure(records) => records,
            };
            let shown_records: Vec<String> = records.iter().map(shown).collect();
            let usable: Vec<TLSA> = records
                .into_iter()
                .filter(|r| matches!(r.cert_usage, CertUsage::DaneTa | CertUsage::DaneEe))
                .collect();
            if usable.is_empty() {
                seen.push(json!({"host": host, "tlsa": "secure", "records": shown_records}));
                unusable.push(format!(
                    "{name}: only PKIX usages (0, 1), which SMTP ignores (RFC 7672 §3.1.3)"
                ));
                continue;
            }
            secured += 1;
            let presented = smtp::presented_chain(probe, host, self.port).await;
            let verdict = match presented {
                Ok(chain) => match satisfied(&usable, &chain, host) {
                    Some(usage) => usage.to_owned(),
                    None => {
                        mismatched.push(format!(
                            "{host}: no TLSA record at {name} matches the certificates presented"
                        ));
                        "mismatch".to_owned()
                    }
                },
                Err(f) => {
                    mismatched.push(format!("{host}: {}", f.message));
                    f.message
                }
            };
            seen.push(json!({
                "host": host, "tlsa": "secure", "records": shown_records, "match": verdict
            }));
        }
        probe.rename_detail("address", "last_mx_address");
        probe.detail("hosts", seen);

        Ok(if !mismatched.is_empty() {
            Finding::fail(FailureClass::Tls, mismatched.join("; "))
        } else if !unusable.is_empty() {
            Finding::warn(FailureClass::Dns, unusable.join("; "))
        } else if secured == 0 {
            Finding::pass(format!(
                "no DANE (no TLSA records for {} host(s))",
                hosts.len()
            ))
        } else {
            Finding::pass(format!(
                "DANE: {secured} host(s) present certificates their TLSA records match"
            ))
        })
    }
}
