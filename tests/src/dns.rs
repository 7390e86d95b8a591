//! An authoritative DNS server (hickory-server) on loopback, loaded with
//! zones written in the test in zone-file syntax, plus names that answer
//! SERVFAIL and a resolver address that never answers. A running server's
//! zones can be replaced and it can be told to fall silent, so tests see
//! what a check makes of changed records and a dead server. Zones can be
//! DNSSEC-signed (NSEC, an Ed25519 key made for the server), with their
//! keys given out as trust anchors; a DS question for a zone's apex is
//! answered by its parent zone, as a real delegation does.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{DnssecSigner, SigningKey};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RecordType};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// Errors starting the test DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A zone did not parse.
    #[error("zone {index}: {message}")]
    Zone {
        /// Which zone (0-based) in the list given.
        index: usize,
        /// What was wrong.
        message: String,
    },
    /// Binding sockets failed.
    #[error("binding: {0}")]
    Io(#[from] io::Error),
    /// A signing key could not be made.
    #[error("signing key: {0}")]
    Key(String),
}

/// A zone's signing key, kept for the server's life (re-signing after
/// `set_zones` keeps the anchors valid).
struct ZoneKey {
    origin: Name,
    pkcs8: Vec<u8>,
}

/// A running authoritative server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// UDP and TCP address (same port).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    live: Live,
}

/// What a running server answers from, shared with its handler.
#[derive(Clone, Default)]
struct Live {
    catalog: Arc<RwLock<Arc<Catalog>>>,
    silent: Arc<AtomicBool>,
    keys: Arc<Vec<ZoneKey>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("silent", &self.silent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Handler {
    live: Live,
    servfail: HashSet<LowerName>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        if self.live.silent.load(Ordering::Relaxed) {
            // Nothing is sent: the client times out.
            let mut metadata =
                Metadata::new(request.metadata.id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            return ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            });
        }
        let failing = request
            .queries
            .queries()
            .iter()
            .any(|q| self.servfail.contains(q.name()));
        if !failing {
            let catalog = match self.live.catalog.read() {
                Ok(c) => c.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            // A DS question about a zone's apex is the parent's to answer
            // (the catalog would hand it to the zone itself).
            if let Some(q) = request.queries.queries().first()
                && q.query_type() == RecordType::DS
                && !q.name().is_root()
                && catalog.contains(q.name())
                && let Some(parent) = catalog.find(&q.name().base_name())
                && let Some(origin) = parent.first().map(|h| h.origin().clone())
            {
                let mut only_parent = Catalog::new();
                only_parent.upsert(origin, parent.clone());
                return only_parent
                    .handle_request::<R, T>(request, response_handle)
                    .await;
            }
            return catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        }
        let response = MessageResponseBuilder::new(&request.queries, None)
            .error_msg(&request.metadata, ResponseCode::ServFail);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                let mut metadata =
                    Metadata::new(request.metadata.id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl DnsServer {
    /// Serves `zones` (zone-file text, each with `$ORIGIN` and an SOA) on
    /// 127.0.0.1, UDP and TCP on one OS-chosen port.
    pub async fn start(zones: &[&str]) -> Result<Self, DnsError> {
        Self::start_with(zones, &[]).await
    }

    /// Like [`Self::start`]; queries for names in `servfail` answer SERVFAIL.
    pub async fn start_with(zones: &[&str], servfail: &[&str]) -> Result<Self, DnsError> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), zones, servfail).await
    }

    /// Serves `zones` on `addr` (UDP and TCP; port 0: one the OS chooses),
    /// e.g. an authoritative server on port 53 of its own loopback address.
    pub async fn start_on(addr: SocketAddr, zones: &[&str]) -> Result<Self, DnsError> {
        Self::start_at(addr, zones, &[]).await
    }

    /// Like [`Self::start`], with the zones whose origins are in `signed`
    /// (`"dane.test."`) DNSSEC-signed; [`Self::trust_anchors`] gives their keys.
    pub async fn start_signed(zones: &[&str], signed: &[&str]) -> Result<Self, DnsError> {
        let mut keys = Vec::new();
        for origin in signed {
            let origin = Name::from_ascii(origin).map_err(|e| DnsError::Key(e.to_string()))?;
            let pkcs8 =
                Ed25519SigningKey::generate_pkcs8().map_err(|e| DnsError::Key(e.to_string()))?;
            keys.push(ZoneKey {
                origin,
                pkcs8: pkcs8.secret_pkcs8_der().to_vec(),
            });
        }
        Self::start_keyed(SocketAddr::from(([127, 0, 0, 1], 0)), zones, &[], keys).await
    }

    async fn start_at(
        bind: SocketAddr,
        zones: &[&str],
        servfail: &[&str],
    ) -> Result<Self, DnsError> {
        Self::start_keyed(bind, zones, servfail, Vec::new()).await
    }

    async fn start_keyed(
        bind: SocketAddr,
        zones: &[&str],
        servfail: &[&str],
        keys: Vec<ZoneKey>,
    ) -> Result<Self, DnsError> {
        let live = Live {
            catalog: Arc::new(RwLock::new(Arc::new(catalog(zones, &keys)?))),
            silent: Arc::default(),
            keys: Arc::new(keys),
        };
        let servfail = servfail
            .iter()
            .filter_map(|n| hickory_proto::rr::Name::from_ascii(n).ok())
            .map(|mut n| {
                n.set_fqdn(true);
                LowerName::new(&n)
            })
            .collect();

        // UDP and TCP must share a port; retry if TCP finds it taken.
        let mut last_err = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(bind).await?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let handler = Handler {
                        live: live.clone(),
                        servfail,
                    };
                    let mut server = Server::new(handler);
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
                    let task = tokio::spawn(async move {
                        let _ = server.block_until_done().await;
                    });
                    return Ok(DnsServer { addr, task, live });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(DnsError::Io(
            last_err.unwrap_or_else(|| io::Error::other("no free port")),
        ))
    }
}

impl DnsServer {
    /// Serves `zones` from now on instead of the ones it had (a record
    /// changed at its source, whatever TTL it was served with).
    pub fn set_zones(&self, zones: &[&str]) -> Result<(), DnsError> {
        let new = Arc::new(catalog(zones, &self.live.keys)?);
        match self.live.catalog.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(())
    }

    /// The signed zones' keys as trust anchors, one DNSKEY record a line
    /// (`dane.test. 3600 IN DNSKEY 257 3 15 ...`), for a validating
    /// resolver's anchor file.
    pub fn trust_anchors(&self) -> Result<String, DnsError> {
        let mut text = String::new();
        for key in self.live.keys.iter() {
            let public = signing_key(key)?
                .to_public_key()
                .map_err(|e| DnsError::Key(e.to_string()))?;
            text.push_str(&format!(
                "{} 3600 IN DNSKEY {}\n",
                key.origin,
                DNSKEY::from_key(&public)
            ));
        }
        Ok(text)
    }

    /// Stops answering anything (`true`) or answers again (`false`).
    pub fn set_silent(&self, silent: bool) {
        self.live.silent.store(silent, Ordering::Relaxed);
    }
}

fn signing_key(key: &ZoneKey) -> Result<Ed25519SigningKey, DnsError> {
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.pkcs8.clone());
    Ed25519SigningKey::from_pkcs8(&der).map_err(|e| DnsError::Key(e.to_string()))
}

/// The zones (zone-file text) as a catalog, those with a key signed.
fn catalog(zones: &[&str], keys: &[ZoneKey]) -> Result<Catalog, DnsError> {
    let mut catalog = Catalog::new();
    for (index, text) in zones.iter().enumerate() {
        let zone_err = |message: String| DnsError::Zone { index, message };
        let (origin, records) = Parser::new(*text, None, None)
            .parse()
            .map_err(|e| zone_err(e.to_string()))?;
        let key = keys.iter().find(|k| k.origin == origin);
        let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin.clone(),
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
            key.map(|_| NxProofKind::Nsec),
        )
        .map_err(zone_err)?;
        if let Some(key) = key {
            let signer = signing_key(key)?;
            let public = signer
                .to_public_key()
                .map_err(|e| zone_err(e.to_string()))?;
            handler
                .add_zone_signing_key_mut(DnssecSigner::new(
                    DNSKEY::from_key(&public),
                    Box::new(signer),
                    origin.clone(),
                    Duration::from_secs(86_400),
                ))
                .map_err(|e| zone_err(e.to_string()))?;
            handler
                .secure_zone_mut()
                .map_err(|e| zone_err(e.to_string()))?;
        }
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
    }
    Ok(catalog)
}

/// A UDP socket that reads queries and never answers: a resolver address
/// that times out. Stops when dropped.
#[derive(Debug)]
pub struct BlackHole {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    /// Binds on 127.0.0.1.
    pub async fn start() -> io::Result<Self> {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await.ok();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    r = udp.recv_from(&mut buf) => if r.is_err() { return },
                    Some(Ok((s, _))) = async { match &tcp { Some(t) => Some(t.accept().await), None => None } } => held.push(s),
                }
            }
        });
        Ok(BlackHole { addr, task })
    }
}
