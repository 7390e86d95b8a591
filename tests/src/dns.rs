//! An authoritative DNS server (hickory-server) on loopback, loaded with
//! zones written in the test in zone-file syntax, plus names that answer
//! SERVFAIL and a resolver address that never answers.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::LowerName;
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
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
}

/// A running authoritative server; stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    /// UDP and TCP address (same port).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Handler {
    catalog: Catalog,
    servfail: HashSet<LowerName>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let failing = request
            .queries
            .queries()
            .iter()
            .any(|q| self.servfail.contains(q.name()));
        if !failing {
            return self
                .catalog
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
        let mut catalog = Catalog::new();
        for (index, text) in zones.iter().enumerate() {
            let zone_err = |message: String| DnsError::Zone { index, message };
            let (origin, records) = Parser::new(*text, None, None)
                .parse()
                .map_err(|e| zone_err(e.to_string()))?;
            let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .map_err(zone_err)?;
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
        }
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
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let mut server = Server::new(Handler { catalog, servfail });
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
                    let task = tokio::spawn(async move {
                        let _ = server.block_until_done().await;
                    });
                    return Ok(DnsServer { addr, task });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(DnsError::Io(
            last_err.unwrap_or_else(|| io::Error::other("no free port")),
        ))
    }
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
