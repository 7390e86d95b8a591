//! `dkim`: the public key published at `<selector>._domainkey.<domain>`:
//! present, parseable by mail-auth, not revoked, and strong enough
//! (RSA < 1024 bits fails, < 2048 warns).

use std::time::Duration;

use base64::Engine;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use vantage_common::FailureClass;
use vantage_common::observed::{self, Observed};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use vantage_common::spec::Kind;

use super::{Check, CheckResult, Finding, Probe, single_record};
use crate::authoritative::Question;
use hickory_resolver::proto::rr::RecordType;

pub use vantage_common::spec::dkim::DkimCheck;

/// Value of tag `name` in a `tag=value; ...` record.
fn tag<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The record's tags with the key replaced by its fingerprint (SHA-256 of
/// the `p=` value without whitespace), so a new key reads as
/// `p=sha256:… → p=sha256:…` and a pin may name the key alone.
pub fn observe(record: &str) -> Observed {
    let mut o = Observed::tags(record).unwrap_or_default();
    if let Some(p) = tag(record, "p") {
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, p.as_bytes());
        o.set("p", format!("p={}", observed::fingerprint(digest.as_ref())));
    }
    o
}

/// Key algorithm and size of the record's `p=` key.
fn key_strength(record: &str) -> Result<(&'static str, usize), String> {
    let p: String = tag(record, "p")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(p.as_bytes())
        .map_err(|e| format!("p= is not base64: {e}"))?;
    if tag(record, "k").is_some_and(|k| k.eq_ignore_ascii_case("ed25519")) {
        return Ok(("ed25519", 256));
    }
    // RFC 6376 says SubjectPublicKeyInfo; some publishers put a bare PKCS#1 key.
    if let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&der)
        && let Ok(PublicKey::RSA(rsa)) = spki.parsed()
    {
        return Ok(("rsa", rsa.key_size()));
    }
    match RSAPublicKey::from_der(&der) {
        Ok((_, rsa)) => Ok(("rsa", rsa.key_size())),
        Err(e) => Err(format!("p= is not an RSA public key: {e}")),
    }
}

impl Check for DkimCheck {
    const KIND: Kind = Kind::Dkim;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn target(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    fn authoritative(&self, _probe: &Probe<'_>) -> Option<Question> {
        self.authoritative
            .then(|| Question::all(self.target(), RecordType::TXT))
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        let resolver = probe.resolver()?;
        let name = self.target();
        probe.detail("selector", self.selector.clone());
        let txt = probe.step("txt", async {
            match resolver.txt(&name).await {
                Ok(txt) => Ok(txt),
                Err(e) if e.is_absent() => Ok(Vec::new()),
                Err(e) => Err(e.finding()),
            }
        });
        let records: Vec<String> = txt
            .await?
            .into_iter()
            .filter(|t| t.contains("p=") || t.trim_start().starts_with("v=DKIM1"))
            .collect();
        let record = single_record(probe, records, "DKIM", &name)?;
        if let Err(e) = DomainKey::parse(record.as_bytes()) {
            let msg = match e {
                mail_auth::Error::Dkim(DkimError::RevokedPublicKey) => {
                    format!("DKIM key at {name} is revoked (empty p=)")
                }
                other => format!("DKIM key at {name} does not parse: {other}"),
            };
            return Ok(Finding::fail(FailureClass::Policy, msg));
        }
        let seen = observe(&record);
        let pin = match self.expect.as_deref() {
            None => None,
            // A fingerprint pins the key alone: the rest is as seen.
            Some(fp) if observed::is_fingerprint(fp) => {
                let mut pin = seen.clone();
                pin.set("p", format!("p={fp}"));
                Some(pin)
            }
            Some(record) => Some(observe(record)),
        };
        probe.observed(&format!("DKIM record at {name}"), seen, pin.as_ref())?;
        let (algorithm, bits) = key_strength(&record)
            .map_err(|e| Finding::fail(FailureClass::Policy, format!("{name}: {e}")))?;
        probe.detail("algorithm", algorithm);
        probe.detail("bits", bits);
        if tag(&record, "t")
            .is_some_and(|t| t.split(':').any(|f| f.trim().eq_ignore_ascii_case("y")))
        {
            probe.detail("testing", true);
        }
        let summary = format!("{algorithm} {bits}-bit key at {name}");
        if algorithm == "rsa" && bits < 1024 {
            return Ok(Finding::fail(
                FailureClass::Policy,
                format!("weak {summary} (< 1024 bits)"),
            ));
        }
        if algorithm == "rsa" && bits < 2048 {
            return Ok(Finding::warn(
                FailureClass::Policy,
                format!("{summary} (< 2048 bits recommended)"),
            ));
        }
        Ok(Finding::pass(summary))
    }
}
