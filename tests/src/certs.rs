//! Test PKI made with rcgen: a CA, and leaf certificates that are valid,
//! expired, expiring, for the wrong name, or from an untrusted CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Errors building test certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// Writing a PEM file failed.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// A certificate authority for tests.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
}

/// A leaf certificate with its chain and key.
#[derive(Debug)]
pub struct TestCert {
    /// Leaf first, then the issuing CA.
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    /// The chain as PEM, for servers that read files.
    pub chain_pem: String,
    /// The key as PEM (PKCS#8).
    pub key_pem: String,
}

/// Validity window relative to now, in days (negative = in the past).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start, days from now.
    pub from_days: i64,
    /// End, days from now.
    pub until_days: i64,
}

impl Validity {
    /// Valid for a year from yesterday.
    pub const GOOD: Validity = Validity {
        from_days: -1,
        until_days: 365,
    };
    /// Expired yesterday.
    pub const EXPIRED: Validity = Validity {
        from_days: -90,
        until_days: -1,
    };

    /// Valid from yesterday until `days` from now.
    pub fn expiring_in(days: i64) -> Validity {
        Validity {
            from_days: -1,
            until_days: days,
        }
    }
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            pem,
        })
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate as `ca.pem` into `dir`.
    pub fn write_pem(&self, dir: &Path) -> Result<PathBuf, CertError> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).map_err(|e| CertError::Io(path.clone(), e))?;
        Ok(path)
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str], validity: Validity) -> Result<TestCert, CertError> {
        self.issue_for(KeyPair::generate()?, names, validity)
    }

    /// A server certificate for `names` whose key is the fixture
    /// `tests/data/tls/<key>.key.pem` (an RSA key, which ring cannot make).
    pub fn issue_with_fixture_key(
        &self,
        key: &str,
        names: &[&str],
        validity: Validity,
    ) -> Result<TestCert, CertError> {
        let pem = read_fixture(&format!("{key}.key.pem"))?;
        self.issue_for(KeyPair::from_pem(&pem)?, names, validity)
    }

    fn issue_for(
        &self,
        key: KeyPair,
        names: &[&str],
        validity: Validity,
    ) -> Result<TestCert, CertError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(validity.from_days);
        params.not_after = now + Duration::days(validity.until_days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(TestCert {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: key.serialize_der(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        })
    }
}

impl TestCert {
    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, CertError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), key)?;
        Ok(Arc::new(config))
    }
}

fn read_fixture(name: &str) -> Result<String, CertError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/tls")
        .join(name);
    std::fs::read_to_string(&path).map_err(|e| CertError::Io(path, e))
}

/// A server configuration presenting the fixture chain
/// `tests/data/tls/<name>.chain.pem` with its key `<name>.key.pem`
/// (chains rcgen cannot sign, such as SHA-1 ones).
pub fn fixture_config(name: &str) -> Result<Arc<ServerConfig>, CertError> {
    let chain_pem = read_fixture(&format!("{name}.chain.pem"))?;
    let key_pem = read_fixture(&format!("{name}.key.pem"))?;
    let chain = rustls_pki_types::pem::PemObject::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|e| CertError::Io(name.into(), std::io::Error::other(e.to_string())))?;
    let key = <PrivateKeyDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(
        key_pem.as_bytes(),
    )
    .map_err(|e| CertError::Io(name.into(), std::io::Error::other(e.to_string())))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A server configuration for `names`, valid for a year, issued by a fresh
/// CA that nothing trusts: for tests that need TLS but not verification.
pub fn server_tls(names: &[&str]) -> Result<Arc<ServerConfig>, CertError> {
    TestCa::new("vantage testkit CA")?
        .issue(names, Validity::GOOD)?
        .server_config()
}

/// A test CA whose certificate is written to a directory of its own, for
/// probes' `--ca-file` (and `ca_file` params).
#[derive(Debug)]
pub struct CaFile {
    ca: TestCa,
    path: String,
    _dir: tempfile::TempDir,
}

impl CaFile {
    /// A new CA named `name`, written to `ca.pem` in a temporary directory.
    pub fn new(name: &str) -> Result<Self, CertError> {
        let dir = tempfile::tempdir().map_err(|e| CertError::Io(PathBuf::from("tempdir"), e))?;
        let ca = TestCa::new(name)?;
        let path = ca.write_pem(dir.path())?.display().to_string();
        Ok(CaFile {
            ca,
            path,
            _dir: dir,
        })
    }

    /// Where its PEM is.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::ops::Deref for CaFile {
    type Target = TestCa;

    fn deref(&self) -> &TestCa {
        &self.ca
    }
}
