//! `tls`: the certificate of an SMTP (STARTTLS or implicit) or plain TLS
//! endpoint: chain to trusted roots, name match, days to expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use serde_json::json;
use vantage_common::FailureClass;
use vantage_common::clock::rfc3339;
use vantage_common::observed::{Observed, cert, fingerprint};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use vantage_common::spec::Kind;

use super::posture;
use super::smtp::session::TlsInfo;
use super::smtp::{self, DEFAULT_HELO, Reached, TlsMode, Transport};
use super::{Check, CheckResult, Finding, Probe};
use crate::net;

pub use vantage_common::spec::tls::TlsCheck;

impl Check for TlsCheck {
    const KIND: Kind = Kind::Tls;
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

    fn target(&self) -> String {
        super::host_port(&self.host, self.port)
    }

    async fn run(&self, probe: &mut Probe<'_>) -> CheckResult {
        if self.tls == TlsMode::None {
            return Err(Finding::error(
                FailureClass::Tls,
                "a tls check needs TLS (mode none given)",
            ));
        }
        let sni = smtp::tls_server_name(&self.host, self.tls_name.as_deref())?;
        let roots = net::trust_roots(self.ca_file.as_deref())?;

        let (tls, at) = if self.uses_starttls() {
            let mut d = smtp::open(
                probe,
                &self.host,
                self.port,
                Transport::Required,
                DEFAULT_HELO,
                &sni,
            )
            .await
            .map_err(|f| match f.class {
                // Without STARTTLS there is no certificate to judge.
                Some(FailureClass::Policy) => Finding::fail(FailureClass::Tls, f.message),
                _ => f,
            })?;
            smtp::quit(probe, &mut d).await;
            let tls = d
                .session
                .tls()
                .cloned()
                .ok_or_else(|| Finding::fail(FailureClass::Tls, "TLS was not established"))?;
            (tls, Reached::by(&d, false, DEFAULT_HELO, &sni))
        } else {
            let addr = probe.endpoint(&self.host, self.port).await?;
            let source = probe.ctx.source_address;
            let tcp = probe.step("connect", net::connect(addr, source)).await?;
            let stream = probe.step("tls", net::handshake(tcp, &sni)).await?;
            let tls = TlsInfo::of(stream.get_ref().1);
            probe.detail("tls_version", tls.version.clone());
            probe.detail("tls_cipher", tls.cipher.clone());
            let at = Reached {
                addr,
                implicit: true,
                helo: DEFAULT_HELO,
                sni: &sni,
                auth_before_tls: false,
            };
            (tls, at)
        };
        let TlsInfo {
            chain,
            version,
            cipher,
        } = tls;

        let leaf = describe_leaf(probe, &chain)?;
        probe.detail("chain_length", chain.len());
        let facts = posture::chain(&chain);
        let mut seen = leaf.observed;
        seen.set(cert::KEY, facts.key.clone());
        seen.set(cert::VERSION, version.clone());
        seen.set(cert::CIPHER, cipher);
        let pin = self.expect.as_ref().map(|fp| {
            let mut pin = seen.clone();
            pin.set(cert::FINGERPRINT, fp.clone());
            pin
        });
        let what = format!("certificate of {}", self.target());
        probe.observed(&what, seen, pin.as_ref())?;

        let days = leaf.days_left;
        let expiry = format!("expires in {days} days ({})", leaf.not_after);
        let finding = match net::verify_chain(&chain, &sni, roots) {
            Err(f) => f,
            Ok(()) if days < i64::from(self.crit_days) => {
                Finding::fail(FailureClass::Expiring, expiry)
            }
            Ok(()) if days < i64::from(self.warn_days) => {
                Finding::warn(FailureClass::Expiring, expiry)
            }
            Ok(()) => Finding::pass(format!("valid for {}, {expiry}, {version}", sni.to_str())),
        };
        Ok(smtp::judge_posture(probe, &at, Some(&facts), &self.posture, finding).await)
    }
}

struct Leaf {
    days_left: i64,
    not_after: String,
    /// Fingerprint, subject, issuer, expiry and names, normalised.
    observed: Observed,
}

/// Records subject, issuer, names and expiry of the leaf certificate.
fn describe_leaf(
    probe: &mut Probe<'_>,
    chain: &[CertificateDer<'static>],
) -> Result<Leaf, Finding> {
    let der = chain
        .first()
        .ok_or_else(|| Finding::fail(FailureClass::Tls, "server presented no certificate"))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| Finding::fail(FailureClass::Tls, format!("unparseable certificate: {e}")))?;
    let not_after_ts = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days_left = (not_after_ts - now).div_euclid(86_400);
    let not_after = cert.validity().not_after.to_rfc2822().unwrap_or_else(|e| e);
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    GeneralName::IPAddress(b) => ip_from_bytes(b),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut observed = Observed::new();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    observed.set(cert::FINGERPRINT, fingerprint(digest.as_ref()));
    observed.set(cert::SUBJECT, cert.subject().to_string());
    observed.set(cert::ISSUER, cert.issuer().to_string());
    observed.set(cert::NOT_AFTER, rfc3339(not_after_ts.saturating_mul(1000)));
    let mut sorted = names.clone();
    sorted.sort();
    observed.set(cert::NAMES, sorted.join(" "));
    probe.detail("subject", cert.subject().to_string());
    probe.detail("issuer", cert.issuer().to_string());
    probe.detail("names", json!(names));
    probe.detail(
        "not_before",
        cert.validity()
            .not_before
            .to_rfc2822()
            .unwrap_or_else(|e| e),
    );
    probe.detail("not_after", not_after.clone());
    probe.detail("days_left", days_left);
    Ok(Leaf {
        days_left,
        not_after,
        observed,
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|o| std::net::Ipv4Addr::from(o).to_string()),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|o| std::net::Ipv6Addr::from(o).to_string()),
        _ => None,
    }
}
