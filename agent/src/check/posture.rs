//! TLS posture of `smtp` and `tls` checks: what the handshake negotiated
//! and what the presented chain is made of (key type and size, signature
//! algorithms), whether the server still accepts TLS 1.0/1.1, and the
//! rules that turn a weakness into a `warn` (class `tls`), each of which a
//! check can switch off ([`Posture`]).
//!
//! rustls will not speak TLS 1.0 or 1.1, so the legacy test writes a TLS
//! 1.1 ClientHello itself on a connection of its own and reads no further
//! than the server's answer: a ServerHello at 1.0 or 1.1 means accepted,
//! an alert or a closed connection means refused.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

pub use vantage_common::spec::smtp::Posture;

/// What the presented chain is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The leaf's key: `RSA 2048`, `EC P-256`, `Ed25519`.
    pub key: String,
    /// RSA key size of the leaf, when RSA.
    pub rsa_bits: Option<usize>,
    /// The leaf's signature algorithm: `ECDSA-SHA256`, `RSA-SHA1`, ...
    pub signature: String,
    /// Subjects of the certificates (self-signed roots aside) signed with
    /// SHA-1 or MD5.
    pub weak_signatures: Vec<String>,
    /// The leaf's expiry (Unix seconds).
    pub not_after: Option<i64>,
}

/// Names a signature algorithm by its OID.
fn signature_name(oid: &str) -> (String, bool) {
    let (name, weak) = match oid {
        "1.2.840.113549.1.1.4" => ("RSA-MD5", true),
        "1.2.840.113549.1.1.5" => ("RSA-SHA1", true),
        "1.2.840.10045.4.1" => ("ECDSA-SHA1", true),
        "1.2.840.10040.4.3" => ("DSA-SHA1", true),
        "1.2.840.113549.1.1.11" => ("RSA-SHA256", false),
        "1.2.840.113549.1.1.12" => ("RSA-SHA384", false),
        "1.2.840.113549.1.1.13" => ("RSA-SHA512", false),
        "1.2.840.113549.1.1.10" => ("RSA-PSS", false),
        "1.2.840.10045.4.3.2" => ("ECDSA-SHA256", false),
        "1.2.840.10045.4.3.3" => ("ECDSA-SHA384", false),
        "1.2.840.10045.4.3.4" => ("ECDSA-SHA512", false),
        "1.3.101.112" => ("Ed25519", false),
        "1.3.101.113" => ("Ed448", false),
        other => return (other.to_owned(), false),
    };
    (name.to_owned(), weak)
}

fn curve_name(oid: &str) -> &str {
    match oid {
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        other => other,
    }
}

/// Reads key and signatures of a presented chain (leaf first).
pub fn chain(chain: &[CertificateDer<'_>]) -> Chain {
    let mut facts = Chain::default();
    for (i, der) in chain.iter().enumerate() {
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            continue;
        };
        let (signature, weak) = signature_name(&cert.signature_algorithm.algorithm.to_id_string());
        let self_signed = cert.subject() == cert.issuer();
        if weak && !self_signed {
            facts.weak_signatures.push(cert.subject().to_string());
        }
        if i > 0 {
            continue;
        }
        facts.signature = signature;
        facts.not_after = Some(cert.validity().not_after.timestamp());
        let spki = cert.public_key();
        facts.key = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                facts.rsa_bits = Some(rsa.key_size());
                format!("RSA {}", rsa.key_size())
            }
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| curve_name(&o.to_id_string()).to_owned())
                    .unwrap_or_default();
                format!("EC {curve}").trim_end().to_owned()
            }
            _ => match spki.algorithm.algorithm.to_id_string().as_str() {
                "1.3.101.112" => "Ed25519".to_owned(),
                "1.3.101.113" => "Ed448".to_owned(),
                other => other.to_owned(),
            },
        };
    }
    facts
}

/// What the rules say about a server: one line per weakness.
pub fn weaknesses(
    rules: &Posture,
    chain: Option<&Chain>,
    legacy: Option<&str>,
    auth_in_clear: bool,
) -> Vec<String> {
    let mut found = Vec::new();
    if rules.legacy_tls
        && let Some(version) = legacy
    {
        found.push(format!("accepts {version} (legacy TLS)"));
    }
    if let Some(chain) = chain {
        if let Some(bits) = chain.rsa_bits
            && rules.min_rsa_bits > 0
            && bits < rules.min_rsa_bits as usize
        {
            found.push(format!("RSA {bits}-bit key (< {})", rules.min_rsa_bits));
        }
        if rules.sha1 && !chain.weak_signatures.is_empty() {
            found.push(format!(
                "signed with SHA-1/MD5: {}",
                chain.weak_signatures.join("; ")
            ));
        }
    }
    if rules.auth_before_starttls && auth_in_clear {
        found.push("AUTH offered before STARTTLS (credentials in clear)".to_owned());
    }
    found
}

/// The records a legacy ClientHello offers: ECDHE and RSA with AES-CBC
/// and 3DES, what TLS 1.0/1.1 servers speak.
const LEGACY_SUITES: [u16; 9] = [
    0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x0033, 0x0039, 0x000a,
];

/// A TLS 1.1 ClientHello (offering 1.0 too), with SNI when `sni` is a
/// DNS name.
pub fn legacy_client_hello(sni: Option<&str>, random: [u8; 32]) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let list_len = name.len() + 3;
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list_len as u16).to_be_bytes());
        ext.push(0x00);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
    }
    // supported_groups: x25519, P-256, P-384; ec_point_formats: uncompressed.
    ext.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    ]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // renegotiation_info, empty: what every legacy client sends.
    ext.extend_from_slice(&[0xff, 0x01, 0x00, 0x01, 0x00]);

    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&random);
    body.push(0x00); // no session id
    body.extend_from_slice(&((LEGACY_SUITES.len() * 2) as u16).to_be_bytes());
    for suite in LEGACY_SUITES {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// How long the legacy test waits for the server's answer.
pub const LEGACY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends a legacy ClientHello on `io` (at the point where TLS would
/// start) and reads the server's first record: `Ok(Some("TLSv1.1"))` when
/// it answers with a ServerHello at 1.1 (or 1.0), `Ok(None)` when it
/// refuses (an alert, a closed connection, a ServerHello at 1.2 or more),
/// `Err` when what came back was no TLS at all.
pub async fn accepts_legacy<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    sni: Option<&str>,
) -> Result<Option<&'static str>, String> {
    let random: [u8; 32] = {
        let mut r = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
            .map_err(|_| "no randomness for a ClientHello".to_owned())?;
        r
    };
    io.write_all(&legacy_client_hello(sni, random))
        .await
        .map_err(|e| format!("sending a legacy ClientHello: {e}"))?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut header = [0u8; 5];
    let read = tokio::time::timeout(LEGACY_TIMEOUT, io.read_exact(&mut header)).await;
    match read {
        Err(_) => return Err("no answer to a legacy ClientHello".to_owned()),
        // Closed on us: refused.
        Ok(Err(_)) => return Ok(None),
        Ok(Ok(_)) => {}
    }
    match header[0] {
        0x15 => return Ok(None), // an alert: refused
        0x16 => {}
        other => return Err(format!("not TLS (record type {other:#04x})")),
    }
    // Handshake type (1), length (3), server_version (2).
    let mut start = [0u8; 6];
    tokio::time::timeout(LEGACY_TIMEOUT, io.read_exact(&mut start))
        .await
        .map_err(|_| "a ServerHello cut short".to_owned())?
        .map_err(|_| "a ServerHello cut short".to_owned())?;
    if start[0] != 0x02 {
        return Err(format!("not a ServerHello (handshake type {})", start[0]));
    }
    Ok(match [start[4], start[5]] {
        [0x03, 0x01] => Some("TLSv1.0"),
        [0x03, 0x02] => Some("TLSv1.1"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Finding;
    use vantage_common::FailureClass;

    #[test]
    fn the_legacy_hello_is_well_formed() {
        let hello = legacy_client_hello(Some("mx.example.org"), [7; 32]);
        // Record header: handshake, 1.0, length of the rest.
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
        // ClientHello of the length that follows, offering at most 1.1.
        assert_eq!(hello[5], 0x01);
        let len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(len, hello.len() - 9);
        assert_eq!(&hello[9..11], &[0x03, 0x02]);
        let sni = b"mx.example.org";
        assert!(hello.windows(sni.len()).any(|w| w == sni));
        assert!(
            !legacy_client_hello(None, [7; 32])
                .windows(sni.len())
                .any(|w| w == sni)
        );
    }

    #[test]
    fn rules_warn_and_can_be_switched_off() {
        let weak = Chain {
            key: "RSA 1024".into(),
            rsa_bits: Some(1024),
            signature: "RSA-SHA1".into(),
            weak_signatures: vec!["CN=mx.test".into()],
            not_after: None,
        };
        let all = weaknesses(&Posture::default(), Some(&weak), Some("TLSv1.0"), true);
        assert_eq!(
            all,
            [
                "accepts TLSv1.0 (legacy TLS)",
                "RSA 1024-bit key (< 2048)",
                "signed with SHA-1/MD5: CN=mx.test",
                "AUTH offered before STARTTLS (credentials in clear)",
            ]
        );
        let off = Posture {
            legacy_tls: false,
            min_rsa_bits: 0,
            sha1: false,
            auth_before_starttls: false,
        };
        assert!(weaknesses(&off, Some(&weak), Some("TLSv1.0"), true).is_empty());
        let pass = Finding::pass("ok").weakened(FailureClass::Tls, &all[..1]);
        assert_eq!(
            (pass.status, pass.class, pass.message.as_str()),
            (
                vantage_common::Status::Warn,
                Some(FailureClass::Tls),
                "accepts TLSv1.0 (legacy TLS)"
            )
        );
        let fail = Finding::fail(FailureClass::Tls, "bad").weakened(FailureClass::Tls, &all);
        assert_eq!(fail.message, "bad");
    }
}
