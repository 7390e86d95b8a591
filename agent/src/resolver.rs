//! DNS for probes: a fresh hickory resolver per probe run, typed lookups,
//! the TTL of every answer, and the mapping of resolver errors to findings.
//!
//! Every query of a probe goes to `--resolver` when set (and nowhere else:
//! no hosts file, no search domains), else to the system's resolvers.
//! `source_address` binds the resolver's sockets too, so a vantage's DNS
//! comes from the same address as its connections.
//!
//! Answers are never served from a cache kept between runs: each run of a
//! check builds its own [`Resolver`] (from settings read once), so a dead
//! resolver or a changed record shows on the very next run, whatever TTL
//! the answer had. Within one run a repeated question is answered once, so
//! the run sees one consistent view.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::TLSA;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use vantage_common::FailureClass;

use crate::check::Finding;

/// Why a DNS lookup gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist.
    #[error("{name} does not exist (NXDOMAIN)")]
    NxDomain {
        /// Queried name.
        name: String,
    },
    /// The name exists but has no records of this type.
    #[error("{name} has no {rtype} records")]
    NoRecords {
        /// Queried name.
        name: String,
        /// Queried type.
        rtype: RecordType,
    },
    /// The server answered with an error code (SERVFAIL, REFUSED...).
    #[error("{name} {rtype}: server answered {}", format!("{code:?}").to_uppercase())]
    Rcode {
        /// Queried name.
        name: String,
        /// Queried type.
        rtype: RecordType,
        /// The response code.
        code: ResponseCode,
    },
    /// No answer in time.
    #[error("{name} {rtype}: no answer from the resolver in time")]
    Timeout {
        /// Queried name.
        name: String,
        /// Queried type.
        rtype: RecordType,
    },
    /// The resolver itself could not be used (socket error, bad config).
    #[error("resolver unusable: {0}")]
    Local(String),
    /// The name is not a valid DNS name.
    #[error("invalid DNS name {0:?}")]
    BadName(String),
}

impl LookupError {
    /// Does this mean "no such record" (as opposed to "could not ask")?
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            LookupError::NxDomain { .. } | LookupError::NoRecords { .. }
        )
    }

    /// The finding this error means for the target: absent records, error
    /// codes and timeouts are facts about the target's DNS; an unusable local
    /// resolver means this vantage cannot tell.
    pub fn finding(&self) -> Finding {
        match self {
            LookupError::Timeout { .. } => Finding::fail(FailureClass::Timeout, self.to_string()),
            LookupError::Local(_) => Finding::error(FailureClass::Dns, self.to_string()),
            _ => Finding::fail(FailureClass::Dns, self.to_string()),
        }
    }
}

/// Resolver settings of a context.
#[derive(Debug, Clone, Default)]
pub struct ResolverSettings {
    /// Send every query to this server only.
    pub server: Option<SocketAddr>,
    /// Bind resolver sockets to this address.
    pub source_address: Option<IpAddr>,
}

impl ResolverSettings {
    /// The hickory configuration these settings describe (also handed to
    /// mail-auth, so SPF evaluation asks the same servers).
    pub fn config(&self) -> Result<(ResolverConfig, ResolverOpts), LookupError> {
        let (config, mut opts) = match self.server {
            Some(server) => {
                let mut opts = ResolverOpts::default();
                opts.use_hosts_file = ResolveHosts::Never;
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = server.port();
                        c
                    })
                    .collect();
                let ns = NameServerConfig::new(server.ip(), true, connections);
                (ResolverConfig::from_name_servers(vec![ns]), opts)
            }
            None => hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| LookupError::Local(format!("reading system resolver config: {e}")))?,
        };
        let (domain, _search, mut servers) = config.into_parts();
        if let Some(source) = self.source_address {
            for ns in &mut servers {
                for c in &mut ns.connections {
                    c.bind_addr = Some(SocketAddr::new(source, 0));
                }
            }
        }
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.try_tcp_on_error = true;
        Ok((
            ResolverConfig::from_parts(domain, Vec::new(), servers),
            opts,
        ))
    }

    /// Builds a resolver.
    pub fn build(&self) -> Result<Resolver, LookupError> {
        let (config, opts) = self.config()?;
        Resolver::new(&config, &opts)
    }

    /// A resolver that validates DNSSEC from `anchors` (a file of DNSKEY
    /// records in zone-file syntax), the root zone's (IANA) when `None`:
    /// for DANE, whose records count only when signed. Kept apart from
    /// [`Resolver`] so no other check's answers depend on DNSSEC.
    pub fn validating(&self, anchors: Option<&Path>) -> Result<Validating, LookupError> {
        let (config, opts) = self.config()?;
        let anchors = match anchors {
            Some(path) => TrustAnchors::from_file(path).map_err(|e| {
                LookupError::Local(format!("trust anchors {}: {e}", path.display()))
            })?,
            None => TrustAnchors::default(),
        };
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .with_trust_anchor(Arc::new(anchors))
            .build()
            .map_err(|e| LookupError::Local(e.to_string()))?;
        Ok(Validating { inner })
    }
}

/// TLSA records as DNSSEC judged them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tlsa {
    /// From a signed zone, validated: usable for DANE.
    Secure(Vec<TLSA>),
    /// From a zone that is not signed (or not provably so): not usable.
    Insecure(Vec<TLSA>),
    /// The answer failed validation.
    Bogus,
    /// There are none.
    Absent,
}

/// A validating resolver ([`ResolverSettings::validating`]).
#[derive(Clone)]
pub struct Validating {
    inner: TokioResolver,
}

impl std::fmt::Debug for Validating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validating")
    }
}

impl Validating {
    /// The TLSA records at `name` (`_25._tcp.mx.example.org`), judged.
    pub async fn tlsa(&self, name: &str) -> Result<Tlsa, LookupError> {
        let fq = fqdn(name)?;
        let lookup = match self.inner.lookup(fq, RecordType::TLSA).await {
            Ok(lookup) => lookup,
            Err(NetError::Dns(DnsError::DnssecBogus)) => return Ok(Tlsa::Bogus),
            // A denial whose proof is incomplete: no records either way.
            Err(NetError::Dns(DnsError::Nsec { .. })) => return Ok(Tlsa::Absent),
            Err(e) => {
                return match classify(name, RecordType::TLSA, &e) {
                    e if e.is_absent() => Ok(Tlsa::Absent),
                    e => Err(e),
                };
            }
        };
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter(|r| r.data.record_type() == RecordType::TLSA)
            .collect();
        let secure = records.iter().all(|r| r.proof.is_secure());
        let tlsa: Vec<TLSA> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        Ok(match (tlsa.is_empty(), secure) {
            (true, _) => Tlsa::Absent,
            (false, true) => Tlsa::Secure(tlsa),
            (false, false) => Tlsa::Insecure(tlsa),
        })
    }
}

/// Answers one run keeps, so a question asked twice in a run (SPF counting
/// then evaluating) is asked once. A run asks a handful, an SPF tree up to
/// about twenty; more are simply asked again. Small, because a resolver is
/// built per run and its cache's size is part of that cost (256 cost half
/// a point of a core more at 1,000 checks/min).
const RUN_CACHE: u64 = 32;

/// Typed DNS lookups for one probe run.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// Lowest TTL of each answer received, by `name TYPE`.
    ttls: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Parses `name` as an absolute DNS name (a trailing dot is implied).
pub fn fqdn(name: &str) -> Result<Name, LookupError> {
    let mut n = Name::from_ascii(name).map_err(|_| LookupError::BadName(name.to_owned()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A domain name as printed: lower case, without the trailing dot.
pub fn display_name(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

impl Resolver {
    /// A resolver with nothing cached yet.
    pub fn new(config: &ResolverConfig, opts: &ResolverOpts) -> Result<Self, LookupError> {
        let mut opts = opts.clone();
        opts.cache_size = RUN_CACHE;
        let inner =
            TokioResolver::builder_with_config(config.clone(), TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|e| LookupError::Local(e.to_string()))?;
        Ok(Resolver {
            inner,
            ttls: Arc::default(),
        })
    }

    /// The TTL of every answer this resolver received (the lowest of its
    /// records), by `name TYPE`.
    pub fn ttls(&self) -> BTreeMap<String, u32> {
        match self.ttls.lock() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// mail-auth over the same resolver (same servers, same run).
    pub fn authenticator(&self) -> mail_auth::MessageAuthenticator {
        mail_auth::MessageAuthenticator(self.inner.clone())
    }

    /// All records of `rtype` at `name` (only that type: CNAME chains are
    /// followed by the resolver and not returned).
    pub async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, LookupError> {
        let fq = fqdn(name)?;
        let lookup = self
            .inner
            .lookup(fq, rtype)
            .await
            .map_err(|e| classify(name, rtype, &e))?;
        let answers = lookup
            .answers()
            .iter()
            .filter(|r| r.data.record_type() == rtype);
        if let Some(ttl) = answers.clone().map(|r| r.ttl).min() {
            let key = format!(
                "{} {rtype}",
                name.trim_end_matches('.').to_ascii_lowercase()
            );
            if let Ok(mut ttls) = self.ttls.lock() {
                let slot = ttls.entry(key).or_insert(ttl);
                *slot = (*slot).min(ttl);
            }
        }
        let records: Vec<RData> = answers.map(|r| r.data.clone()).collect();
        if records.is_empty() {
            return Err(LookupError::NoRecords {
                name: name.to_owned(),
                rtype,
            });
        }
        Ok(records)
    }

    /// TXT records at `name`, each with its strings joined.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.lookup(name, RecordType::TXT).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// MX records as (preference, exchange), lowest preference first.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let mut mx: Vec<(u16, String)> = self
            .lookup(name, RecordType::MX)
            .await?
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, display_name(&mx.exchange))),
                _ => None,
            })
            .collect();
        mx.sort();
        Ok(mx)
    }

    /// The MX host names of `name`, lowest preference first, without a
    /// null MX (`.`).
    pub async fn mx_hosts(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .mx(name)
            .await?
            .into_iter()
            .map(|(_, host)| host)
            .filter(|host| !host.is_empty())
            .collect())
    }

    /// A and AAAA addresses of `name`. Fails only when neither type has any.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let (v4, v6) = tokio::join!(
            self.lookup(name, RecordType::A),
            self.lookup(name, RecordType::AAAA)
        );
        let mut out = Vec::new();
        let mut first_err = None;
        for result in [v4, v6] {
            match result {
                Ok(records) => out.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (out.is_empty(), first_err) {
            (true, Some(LookupError::NoRecords { name, .. })) => Err(LookupError::NoRecords {
                name,
                rtype: RecordType::A,
            }),
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// PTR names of `ip`.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        let name = reverse_name(ip);
        let records = self.lookup(&name, RecordType::PTR).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::PTR(p) => Some(display_name(&p.0)),
                _ => None,
            })
            .collect())
    }
}

/// `in-addr.arpa` / `ip6.arpa` name of an address (reversed octets or nibbles).
pub fn reverse_name(ip: IpAddr) -> String {
    format!(
        "{}.{}",
        reversed_labels(ip),
        match ip {
            IpAddr::V4(_) => "in-addr.arpa",
            IpAddr::V6(_) => "ip6.arpa",
        }
    )
}

/// Reversed octets (IPv4) or nibbles (IPv6), dot-separated, as used by
/// reverse DNS and DNSBL queries.
pub fn reversed_labels(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

fn classify(name: &str, rtype: RecordType, err: &NetError) -> LookupError {
    let name = name.to_owned();
    match err {
        e if e.is_nx_domain() => LookupError::NxDomain { name },
        e if e.is_no_records_found() => LookupError::NoRecords { name, rtype },
        NetError::Dns(DnsError::ResponseCode(code)) => LookupError::Rcode {
            name,
            rtype,
            code: *code,
        },
        NetError::Timeout => LookupError::Timeout { name, rtype },
        NetError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            LookupError::Local(format!("resolver refused the connection: {io}"))
        }
        other => LookupError::Local(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34);
    }
}
