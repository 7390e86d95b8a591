//! Outgoing connections of probes: TCP from an optional source address, and
//! the TLS client used by every check.
//!
//! The handshake itself accepts any certificate chain (but still checks the
//! handshake signatures), so a check can always see what the server presents;
//! the `tls` check then verifies that chain separately with [`verify_chain`]
//! and reports *why* it is bad instead of a bare handshake error.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use vantage_common::FailureClass;

use crate::check::Finding;

/// Opens a TCP connection to `addr`, bound to `source` when given.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Finding> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Finding::error(FailureClass::Unreachable, format!("socket: {e}")))?;
    if let Some(source) = source {
        // The port is chosen at connect time, per destination, instead of
        // by bind: a bound port is reserved against every destination, so
        // thousands of probes a minute (and their TIME_WAIT) would exhaust
        // the ephemeral range and make each bind a longer search.
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .ok();
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| {
            Finding::error(
                FailureClass::Unreachable,
                format!("cannot bind source address {source}: {e}"),
            )
        })?;
    }
    socket.set_nodelay(true).ok();
    socket
        .connect(addr)
        .await
        .map_err(|e| connect_error(addr, &e))
}

fn connect_error(addr: SocketAddr, e: &io::Error) -> Finding {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Finding::fail(
            FailureClass::Refused,
            format!("{addr} refused the connection"),
        ),
        TimedOut => Finding::fail(FailureClass::Timeout, format!("{addr}: connect timed out")),
        HostUnreachable | NetworkUnreachable | ConnectionReset | ConnectionAborted => {
            Finding::fail(FailureClass::Unreachable, format!("{addr}: {e}"))
        }
        AddrNotAvailable | AddrInUse | PermissionDenied => Finding::error(
            FailureClass::Unreachable,
            format!("{addr}: local socket error: {e}"),
        ),
        _ => Finding::fail(FailureClass::Unreachable, format!("{addr}: {e}")),
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // SHA-256 suites first: their key schedule runs on the CPU's
            // SHA extensions where SHA-384 runs in software (most servers
            // follow the client's order; none loses a suite by it).
            let mut provider = rustls::crypto::ring::default_provider();
            provider
                .cipher_suites
                .sort_by_key(|suite| suite_hash(suite) != HashAlgorithm::SHA256);
            Arc::new(provider)
        })
        .clone()
}

fn suite_hash(suite: &rustls::SupportedCipherSuite) -> HashAlgorithm {
    match suite {
        rustls::SupportedCipherSuite::Tls12(s) => s.common.hash_provider.algorithm(),
        rustls::SupportedCipherSuite::Tls13(s) => s.common.hash_provider.algorithm(),
    }
}

/// Accepts any certificate chain, but verifies the handshake signatures
/// against the presented key, so the session is still authentic to whoever
/// holds that key.
#[derive(Debug)]
struct PresentedChain {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PresentedChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client configuration shared by all probes of this process.
pub fn client_config() -> Result<Arc<ClientConfig>, Finding> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = Arc::new(PresentedChain {
                algorithms: provider.signature_verification_algorithms,
            });
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    let mut config = b
                        .dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth();
                    // Every probe does a full handshake: a resumed session
                    // carries the chain of the handshake it came from, not
                    // the one the server (or another node behind the same
                    // name) presents now.
                    config.resumption = rustls::client::Resumption::disabled();
                    Arc::new(config)
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Finding::error(FailureClass::Tls, format!("TLS client setup: {e}")))
}

/// TLS handshake over `stream`, sending `sni` (omitted for IP addresses).
pub async fn handshake<S>(stream: S, sni: &ServerName<'static>) -> Result<TlsStream<S>, Finding>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let connector = TlsConnector::from(client_config()?);
    connector
        .connect(sni.clone(), stream)
        .await
        .map_err(|e| handshake_error(&e))
}

/// A handshake that did not complete: garbage or a closed connection is a
/// protocol failure; a TLS-level refusal (alert, no common cipher) is `tls`.
fn handshake_error(e: &io::Error) -> Finding {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(m)) => Finding::fail(
            FailureClass::Protocol,
            format!("TLS handshake: peer sent garbage ({m:?})"),
        ),
        Some(rustls::Error::InappropriateMessage { .. })
        | Some(rustls::Error::InappropriateHandshakeMessage { .. }) => Finding::fail(
            FailureClass::Protocol,
            format!("TLS handshake: unexpected message ({e})"),
        ),
        Some(other) => Finding::fail(FailureClass::Tls, format!("TLS handshake: {other}")),
        None if e.kind() == io::ErrorKind::UnexpectedEof => Finding::fail(
            FailureClass::Protocol,
            "TLS handshake: connection closed by peer",
        ),
        None => Finding::fail(FailureClass::Tls, format!("TLS handshake: {e}")),
    }
}

/// The name a certificate must match: `--tls-name`, else the target itself.
pub fn server_name(name: &str) -> Result<ServerName<'static>, Finding> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        Finding::error(
            FailureClass::Tls,
            format!("invalid TLS server name {name:?}"),
        )
    })
}

/// Trust anchors: the PEM file given, else the system's roots.
pub fn trust_roots(ca_file: Option<&std::path::Path>) -> Result<RootCertStore, Finding> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Finding::error(
                    FailureClass::Tls,
                    format!("reading CA file {}: {e}", path.display()),
                )
            })?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    Finding::error(
                        FailureClass::Tls,
                        format!("CA file {}: {e}", path.display()),
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    Finding::error(
                        FailureClass::Tls,
                        format!("CA file {}: {e}", path.display()),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(Finding::error(
                    FailureClass::Tls,
                    format!("CA file {} holds no PEM certificate", path.display()),
                ));
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(loaded.certs);
            if roots.is_empty() {
                return Err(Finding::error(
                    FailureClass::Tls,
                    "no system trust roots found (install ca-certificates or pass --ca-file)",
                ));
            }
        }
    }
    Ok(roots)
}

/// Verifies a presented chain against `roots` for `name`. `Err` is the
/// finding: `expired`, or `tls` for an untrusted chain or a name mismatch.
pub fn verify_chain(
    chain: &[CertificateDer<'static>],
    name: &ServerName<'static>,
    roots: RootCertStore,
) -> Result<(), Finding> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(Finding::fail(
            FailureClass::Tls,
            "server presented no certificate",
        ));
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| Finding::error(FailureClass::Tls, format!("verifier setup: {e}")))?;
    match verifier.verify_server_cert(leaf, intermediates, name, &[], UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(err)) => Err(certificate_error(&err, name)),
        Err(other) => Err(Finding::fail(FailureClass::Tls, other.to_string())),
    }
}

fn certificate_error(err: &CertificateError, name: &ServerName<'_>) -> Finding {
    match err {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => Finding::fail(
            FailureClass::Expired,
            format!("certificate expired ({err})"),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Finding::fail(
                FailureClass::Tls,
                format!("certificate does not match {} ({err})", name.to_str()),
            )
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. } => Finding::fail(
            FailureClass::Tls,
            "certificate chain is signed with an algorithm no longer accepted (SHA-1 or weaker)",
        ),
        CertificateError::UnknownIssuer => Finding::fail(
            FailureClass::Tls,
            "certificate chain is not trusted (unknown issuer)",
        ),
        other => Finding::fail(FailureClass::Tls, format!("certificate rejected: {other}")),
    }
}
