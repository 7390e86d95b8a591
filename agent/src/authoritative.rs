//! The authoritative view of a DNS question: what every name server of
//! the zone says, asked directly (recursion off, port 53), not what a
//! resolver passes on. It finds the zone (the closest enclosing name with
//! NS records, through the probe's resolver), looks up every NS server's
//! addresses, and asks each address the question and the zone's SOA.
//!
//! Servers that disagree, lame delegations (a server that does not answer
//! authoritatively, refuses, or does not answer) and SOA serials out of
//! step are the "propagation problems" a `warn` (class `dns`) names, with
//! what each server said. Fan-out is bounded ([`MAX_SERVERS`] names, each
//! at most [`MAX_ADDRESSES`] addresses, [`PARALLEL`] at a time) and every
//! server has its own timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, RecordType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vantage_common::FailureClass;

use crate::check::{Finding, Probe};
use crate::resolver::{LookupError, Resolver, fqdn};

/// NS names asked at most.
pub const MAX_SERVERS: usize = 8;
/// Addresses per NS name asked at most.
pub const MAX_ADDRESSES: usize = 4;
/// Servers asked at once.
pub const PARALLEL: usize = 8;
/// How long one server has to answer one question.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// The DNS port servers are asked on.
pub const PORT: u16 = 53;

/// A question to put to every authoritative server.
#[derive(Debug, Clone)]
pub struct Question {
    /// The name asked.
    pub name: String,
    /// The type asked.
    pub rtype: RecordType,
    /// Which records of the answer matter (SPF strings among TXT, ...).
    pub keep: fn(&str) -> bool,
}

impl Question {
    /// Every record of `rtype` at `name`.
    pub fn all(name: impl Into<String>, rtype: RecordType) -> Self {
        Question {
            name: name.into(),
            rtype,
            keep: |_| true,
        }
    }
}

/// What one server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Its NS name.
    pub ns: String,
    /// The address asked (`None`: the name has none).
    pub address: Option<IpAddr>,
    /// The records kept, sorted (`NXDOMAIN`: the name does not exist
    /// there); `Err` when it gave no authoritative answer.
    pub answer: Result<Vec<String>, String>,
    /// The zone's SOA serial there.
    pub serial: Option<u32>,
}

impl ServerView {
    fn who(&self) -> String {
        match self.address {
            Some(a) => format!("{} ({a})", self.ns),
            None => self.ns.clone(),
        }
    }
}

/// Every server's view of one question.
#[derive(Debug, Clone)]
pub struct View {
    /// The zone asked about.
    pub zone: String,
    /// One entry per (NS name, address).
    pub servers: Vec<ServerView>,
}

impl View {
    /// The problems found, one line each: lame servers, disagreeing
    /// answers, serials out of step.
    pub fn problems(&self) -> Vec<String> {
        let mut found = Vec::new();
        for s in &self.servers {
            if let Err(e) = &s.answer {
                found.push(format!("lame delegation: {} {e}", s.who()));
            }
        }
        let answers: BTreeMap<&Vec<String>, Vec<String>> =
            self.servers.iter().fold(BTreeMap::new(), |mut m, s| {
                if let Ok(a) = &s.answer {
                    m.entry(a).or_insert_with(Vec::new).push(s.who());
                }
                m
            });
        if answers.len() > 1 {
            let said: Vec<String> = answers
                .iter()
                .map(|(answer, who)| format!("{} say [{}]", who.join(", "), answer.join(", ")))
                .collect();
            found.push(format!(
                "authoritative servers disagree: {}",
                said.join("; ")
            ));
        }
        let serials: BTreeSet<u32> = self.servers.iter().filter_map(|s| s.serial).collect();
        if serials.len() > 1 {
            let said: Vec<String> = self
                .servers
                .iter()
                .filter_map(|s| Some(format!("{} {}", s.who(), s.serial?)))
                .collect();
            found.push(format!("SOA serials out of step: {}", said.join(", ")));
        }
        found
    }

    /// As `details.authoritative`.
    pub fn to_json(&self) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                let (answer, error) = match &s.answer {
                    Ok(a) => (Some(a.clone()), None),
                    Err(e) => (None, Some(e.clone())),
                };
                json!({"ns": s.ns, "address": s.address.map(|a| a.to_string()),
                    "answer": answer, "error": error, "serial": s.serial})
            })
            .collect();
        json!({"zone": self.zone, "servers": servers})
    }
}

/// The closest enclosing name of `name` (itself included) with NS
/// records, and those NS names, sorted.
async fn zone_of(resolver: &Resolver, name: &str) -> Result<(String, Vec<String>), LookupError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut candidate = name.as_str();
    loop {
        match resolver.lookup(candidate, RecordType::NS).await {
            Ok(records) => {
                let mut ns: Vec<String> = records
                    .iter()
                    .filter_map(|r| match r {
                        RData::NS(n) => Some(crate::resolver::display_name(&n.0)),
                        _ => None,
                    })
                    .collect();
                ns.sort();
                ns.dedup();
                return Ok((candidate.to_owned(), ns));
            }
            Err(e) if e.is_absent() => {}
            Err(e) => return Err(e),
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => {
                return Err(LookupError::NoRecords {
                    name,
                    rtype: RecordType::NS,
                });
            }
        }
    }
}

/// Every authoritative server's view of `q`.
pub async fn view(
    resolver: &Resolver,
    q: &Question,
    source: Option<IpAddr>,
) -> Result<View, LookupError> {
    let (zone, names) = zone_of(resolver, &q.name).await?;
    let mut targets: Vec<(String, Option<IpAddr>)> = Vec::new();
    for ns in names.into_iter().take(MAX_SERVERS) {
        match resolver.addresses(&ns).await {
            Ok(addrs) => targets.extend(
                addrs
                    .into_iter()
                    .take(MAX_ADDRESSES)
                    .map(|a| (ns.clone(), Some(a))),
            ),
            Err(_) => targets.push((ns, None)),
        }
    }
    let servers = stream::iter(targets)
        .map(|(ns, address)| {
            let zone = zone.clone();
            async move {
                let Some(ip) = address else {
                    return ServerView {
                        ns,
                        address,
                        answer: Err("has no address".into()),
                        serial: None,
                    };
                };
                let server = SocketAddr::new(ip, PORT);
                let answer = ask(server, source, &q.name, q.rtype)
                    .await
                    .map(|r| match r {
                        None => vec!["NXDOMAIN".to_owned()],
                        Some(records) => {
                            let mut kept: Vec<String> = records
                                .iter()
                                .filter_map(crate::check::dns::render)
                                .filter(|s| (q.keep)(s))
                                .collect();
                            kept.sort();
                            kept
                        }
                    });
                let serial = ask(server, source, &zone, RecordType::SOA)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| {
                        r.iter().find_map(|d| match d {
                            RData::SOA(soa) => Some(soa.serial),
                            _ => None,
                        })
                    });
                ServerView {
                    ns,
                    address,
                    answer,
                    serial,
                }
            }
        })
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    Ok(View { zone, servers })
}

/// Asks `server` one question with recursion off: the records of `rtype`
/// in an authoritative answer (`None` when the name does not exist
/// there); `Err` for a refusal, a non-authoritative answer, or no answer
/// in time.
async fn ask(
    server: SocketAddr,
    source: Option<IpAddr>,
    name: &str,
    rtype: RecordType,
) -> Result<Option<Vec<RData>>, String> {
    let mut query = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = false;
    query.add_query(Query::query(fqdn(name).map_err(|e| e.to_string())?, rtype));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let exchange = async {
        let mut reply = over_udp(server, source, &bytes, query.metadata.id).await?;
        if reply.metadata.truncation {
            reply = over_tcp(server, &bytes).await?;
        }
        Ok::<Message, String>(reply)
    };
    let reply = tokio::time::timeout(SERVER_TIMEOUT, exchange)
        .await
        .map_err(|_| "did not answer in time".to_owned())??;
    match reply.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain if reply.metadata.authoritative => return Ok(None),
        code => return Err(format!("answered {}", format!("{code:?}").to_uppercase())),
    }
    if !reply.metadata.authoritative {
        return Err("answered without authority (no AA flag)".to_owned());
    }
    Ok(Some(
        reply
            .answers
            .into_iter()
            .filter(|r| r.data.record_type() == rtype)
            .map(|r| r.data)
            .collect(),
    ))
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // An id that does not repeat often is all a direct query needs.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

async fn over_udp(
    server: SocketAddr,
    source: Option<IpAddr>,
    bytes: &[u8],
    id: u16,
) -> Result<Message, String> {
    let bind = match (source, server) {
        (Some(s), _) => SocketAddr::new(s, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Anything but the answer to this query (a stray datagram) is skipped.
        if let Ok(reply) = Message::from_vec(&buf[..n])
            && reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
        {
            return Ok(reply);
        }
    }
}

/// Largest answer read over TCP.
const MAX_TCP_ANSWER: usize = 65_535;

async fn over_tcp(server: SocketAddr, bytes: &[u8]) -> Result<Message, String> {
    let mut tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    // The length and the query in one segment (RFC 7766 §8).
    let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = usize::from(u16::from_be_bytes(len)).min(MAX_TCP_ANSWER);
    let mut buf = vec![0u8; len];
    tcp.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| e.to_string())
}

/// Adds the authoritative view of `q` to a probe (`details.authoritative`)
/// and judges `finding` by it: a pass with problems becomes a `warn`
/// (class `dns`) naming them; other findings keep their verdict.
pub async fn judge(probe: &mut Probe<'_>, q: Question, finding: Finding) -> Finding {
    let resolver = match probe.resolver() {
        Ok(r) => r,
        Err(_) => return finding,
    };
    let source = probe.ctx.source_address;
    let seen = probe
        .step("authoritative", async {
            view(&resolver, &q, source).await.map_err(|e| e.finding())
        })
        .await;
    let view = match seen {
        Ok(v) => v,
        Err(f) => {
            probe.detail("authoritative", json!({"error": f.message}));
            return finding;
        }
    };
    let problems = view.problems();
    let mut details = view.to_json();
    details["problems"] = json!(problems);
    probe.detail("authoritative", details);
    finding.weakened(FailureClass::Dns, &problems)
}
