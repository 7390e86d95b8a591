//! The deployment's certificate authority: create it, issue role
//! certificates (rcgen), inspect them (x509-parser).
//!
//! Files: `ca.pem` + `ca.key` in the CA directory; each issued pair as
//! `<role>-<name>.pem` + `.key` (`coordinator-1`, `agent-msk-1`,
//! `operator-alice`). Keys are written mode 0600 and never overwritten.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{Identity, IdentityError};

/// Default CA lifetime.
pub const CA_DAYS: u32 = 3650;
/// Default lifetime of issued certificates.
pub const LEAF_DAYS: u32 = 90;

/// PKI failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file to be written exists already.
    #[error("{0} exists already; refusing to overwrite it")]
    Exists(PathBuf),
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file holds no usable certificate.
    #[error("{path}: {reason}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate names no valid identity.
    #[error("{path}: {source}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: IdentityError,
    },
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a new file (never overwriting), with `mode`.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => PkiError::Exists(path.to_owned()),
            _ => PkiError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The deployment CA.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A freshly issued certificate and key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf certificate followed by the CA certificate (PEM).
    pub cert_pem: String,
    /// PKCS#8 private key (PEM).
    pub key_pem: String,
}

impl Ca {
    /// Creates a CA valid for `days` and writes `ca.pem`/`ca.key` into `dir`.
    pub fn create(dir: &Path, days: u32) -> Result<Ca, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "vantage deployment CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(i64::from(days));
        let cert = params.self_signed(&key)?;
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(PkiError::Exists(p.clone()));
            }
        }
        write_new(&key_path, &key.serialize_pem(), 0o600)?;
        write_new(&cert_path, &cert.pem(), 0o644)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem`/`ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| PkiError::BadCertificate {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Ca { issuer, cert_pem })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `identity`, valid `days`, with extra DNS and
    /// IP names (coordinators need the names clients dial).
    pub fn issue(
        &self,
        identity: &Identity,
        dns: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, identity.name());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, identity.role());
        params
            .subject_alt_names
            .push(SanType::URI(identity.uri().try_into()?));
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match identity {
            Identity::Coordinator { .. } => {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            }
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(i64::from(days));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        for p in [&cert, &key] {
            if p.exists() {
                return Err(PkiError::Exists(p.clone()));
            }
        }
        write_new(&key, &self.key_pem, 0o600)?;
        write_new(&cert, &self.cert_pem, 0o644)?;
        Ok((cert, key))
    }
}

/// File stem for an identity's certificate: `coordinator-1`, `agent-msk-1`,
/// `operator-alice`.
pub fn file_stem(identity: &Identity) -> String {
    match identity {
        Identity::Coordinator { id } => format!("coordinator-{id}"),
        other => format!("{}-{}", other.role(), other.name()),
    }
}

/// What `vantagectl certs inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The identity in the certificate.
    pub identity: Identity,
    /// Subject DN.
    pub subject: String,
    /// Expiry (RFC 2822).
    pub not_after: String,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
}

/// Reads the first certificate of a PEM file and describes it.
pub fn inspect(path: &Path) -> Result<CertInfo, PkiError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |reason: String| PkiError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let pem = read(path)?;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| bad("no PEM certificate in the file".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let identity = Identity::from_cert_der(&der).map_err(|source| PkiError::Identity {
        path: path.to_owned(),
        source,
    })?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let not_after = cert.validity().not_after;
    let days_left =
        (not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp()).div_euclid(86_400);
    Ok(CertInfo {
        identity,
        subject: cert.subject().to_string(),
        not_after: not_after.to_rfc2822().unwrap_or_else(|e| e),
        days_left,
    })
}
