//! The one place that builds rustls configurations for vantage's mTLS
//! (ring provider, no OpenSSL). Certificate, key and CA files are re-read
//! when they change on disk, so rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::{Identity, IdentityError};

/// The three files of a node's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Deployment CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file holds no usable PEM content.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// Our own certificate names no identity.
    #[error("{path}: {source}")]
    Identity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: IdentityError,
    },
}

/// The ring provider, shared.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// Configurations built from one reading of the files.
#[derive(Debug)]
struct Loaded {
    stamps: Vec<Stamp>,
    identity: Identity,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        let stamps = stamps(files);
        let mut roots = RootCertStore::empty();
        for ca in certs(&files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Pem {
                path: files.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let chain = certs(&files.cert)?;
        let identity = Identity::from_cert_der(&chain[0]).map_err(|source| TlsError::Identity {
            path: files.cert.clone(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| TlsError::Pem {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(rustls_err)?;
        server.alpn_protocols = vec![b"h2".to_vec()];

        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(rustls_err)?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Loaded {
            stamps,
            identity,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// What identifies a version of a file: modification time, size and inode
/// (a replaced file changes at least one, even within one clock tick).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
        })
        .collect()
}

/// mTLS configurations that follow their files on disk.
#[derive(Debug)]
pub struct ReloadingTls {
    files: TlsFiles,
    loaded: RwLock<Arc<Loaded>>,
}

impl ReloadingTls {
    /// Reads the files; fails if any is missing or invalid.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = Loaded::read(&files)?;
        Ok(Arc::new(ReloadingTls {
            files,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// The current configurations, re-read first if a file changed. A
    /// changed but invalid set of files (say, a certificate copied before
    /// its key) keeps the previous configuration and logs why.
    fn current(&self) -> Arc<Loaded> {
        let cur = match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if stamps(&self.files) == cur.stamps {
            return cur;
        }
        match Loaded::read(&self.files) {
            Ok(fresh) => {
                tracing::info!(identity = %fresh.identity, "TLS files changed; reloaded");
                let fresh = Arc::new(fresh);
                if let Ok(mut l) = self.loaded.write() {
                    *l = fresh.clone();
                }
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous ones");
                cur
            }
        }
    }

    /// Server side: requires a client certificate from the deployment CA.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// Client side: presents our certificate, trusts only the deployment CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// The identity in our own certificate.
    pub fn identity(&self) -> Identity {
        self.current().identity.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, file_stem};

    #[test]
    fn replaced_files_are_picked_up_and_broken_ones_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), 30).unwrap();
        let issue = |name: &str| {
            let id = Identity::Operator { name: name.into() };
            ca.issue(&id, &[], &[], 30)
                .unwrap()
                .write(dir.path(), &file_stem(&id))
                .unwrap()
        };
        let (alice_cert, alice_key) = issue("alice");
        let (bob_cert, bob_key) = issue("bob");
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("live.pem"),
            key: dir.path().join("live.key"),
        };
        std::fs::copy(&alice_cert, &files.cert).unwrap();
        std::fs::copy(&alice_key, &files.key).unwrap();
        let tls = ReloadingTls::load(files.clone()).unwrap();
        assert_eq!(
            tls.identity(),
            Identity::Operator {
                name: "alice".into()
            }
        );

        // Rotation as an operator does it: new files moved into place.
        std::fs::copy(&bob_cert, dir.path().join("new.pem")).unwrap();
        std::fs::copy(&bob_key, dir.path().join("new.key")).unwrap();
        std::fs::rename(dir.path().join("new.pem"), &files.cert).unwrap();
        std::fs::rename(dir.path().join("new.key"), &files.key).unwrap();
        assert_eq!(tls.identity(), Identity::Operator { name: "bob".into() });

        // A half-written rotation (garbage key) keeps the working identity.
        std::fs::write(&files.key, "not a key").unwrap();
        assert_eq!(tls.identity(), Identity::Operator { name: "bob".into() });
        assert!(ReloadingTls::load(files).is_err());
    }
}
