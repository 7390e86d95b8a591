//! The `vantage-agent` command line: `probe <kind> <target> [options]`.
//!
//! Exit codes follow the Nagios/Icinga plugin convention: 0 pass, 1 warn,
//! 2 fail, 3 error/unknown, bad arguments included.

pub mod entry;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vantage_common::{Outcome, Status, outcome::worst_status};

use crate::check::CheckSpec;
use crate::check::dkim::DkimCheck;
use crate::check::dmarc::{DmarcCheck, RequiredPolicy};
use crate::check::dns::{DnsCheck, RecordType};
use crate::check::dnsbl::DnsblCheck;
use crate::check::domain::DomainAudit;
use crate::check::mx::MxCheck;
use crate::check::ptr::PtrCheck;
use crate::check::smtp::{DEFAULT_HELO, SmtpCheck, TlsMode};
use crate::check::spf::SpfCheck;
use crate::check::tcp::TcpCheck;
use crate::check::tls::TlsCheck;
use crate::context::ProbeContext;

/// Exit code for bad arguments and "could not tell".
pub const EXIT_UNKNOWN: u8 = 3;

/// vantage agent: mail infrastructure probes.
#[derive(Debug, Parser)]
#[command(name = "vantage-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one check now and print its outcome (exit 0 pass, 1 warn, 2 fail, 3 error).
    Probe(ProbeArgs),
}

/// Check kinds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// SMTP dialogue: banner, EHLO, STARTTLS, QUIT.
    Smtp,
    /// Certificate of an SMTP (STARTTLS/implicit) or TLS endpoint.
    Tls,
    /// One DNS query (--type, --expect).
    Dns,
    /// MX hosts and their addresses (--probe runs smtp on each).
    Mx,
    /// Reverse DNS of an address, forward-confirmed.
    Ptr,
    /// TCP connect (--expect text in the greeting).
    Tcp,
    /// SPF record of a domain (--ip evaluates an address).
    Spf,
    /// DKIM key (--selector).
    Dkim,
    /// DMARC policy (--require-policy).
    Dmarc,
    /// Blocklists for an address or domain (--zone).
    Dnsbl,
    /// The whole mail audit of a domain.
    Domain,
}

/// TLS mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    /// By port: 465 implicit, 587 STARTTLS required, else opportunistic.
    Auto,
    /// No TLS.
    None,
    /// STARTTLS required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One summary line, then phases and details.
    Text,
    /// One JSON object (an array for `domain`).
    Json,
}

/// Options of `vantage-agent probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Check kind.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Host, IP address or domain, as the kind needs.
    pub target: String,
    /// TCP port (smtp, tls, mx --probe and domain: 25; required for tcp).
    #[arg(long)]
    pub port: Option<u16>,
    /// TLS use for smtp and tls.
    #[arg(long, value_enum, default_value = "auto")]
    pub tls: TlsArg,
    /// Name for SNI and certificate matching (needed when the target is an IP).
    #[arg(long)]
    pub tls_name: Option<String>,
    /// PEM trust anchors instead of the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Send every DNS query to this server (IP or IP:PORT).
    #[arg(long, value_parser = parse_resolver)]
    pub resolver: Option<SocketAddr>,
    /// Hard deadline for the whole probe (e.g. 10s, 500ms); default 15s for
    /// SMTP/TLS, 5s for DNS.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Bind outgoing connections and DNS queries to this address.
    #[arg(long)]
    pub source_address: Option<IpAddr>,
    /// dns: a value that must be in the answer; tcp: text the server must send. Repeatable.
    #[arg(long)]
    pub expect: Vec<String>,
    /// dns: record type (A, AAAA, MX, TXT, PTR, CNAME, NS).
    #[arg(long = "type", default_value = "A", value_parser = parse_record_type)]
    pub rtype: RecordType,
    /// dkim: selector (required); domain: selectors to check. Repeatable.
    #[arg(long)]
    pub selector: Vec<String>,
    /// dnsbl, domain: blocklist zone to query. Repeatable; a default set when absent.
    #[arg(long)]
    pub zone: Vec<String>,
    /// tls: warn when the certificate expires within this many days.
    #[arg(long, default_value_t = 30)]
    pub warn_days: u32,
    /// tls: fail when the certificate expires within this many days.
    #[arg(long, default_value_t = 7)]
    pub crit_days: u32,
    /// smtp: a working dialogue slower than this (ms) is a warning.
    #[arg(long, default_value_t = 5000)]
    pub degraded_ms: u64,
    /// mx: also run smtp against every MX host.
    #[arg(long)]
    pub probe: bool,
    /// spf: evaluate whether this address may send for the domain.
    #[arg(long)]
    pub ip: Option<IpAddr>,
    /// dmarc: fail when the policy is weaker (none, quarantine, reject).
    #[arg(long, value_parser = parse_policy)]
    pub require_policy: Option<RequiredPolicy>,
    /// smtp: name sent in EHLO.
    #[arg(long, default_value = DEFAULT_HELO)]
    pub helo: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("'{s}' is not IP or IP:PORT"))
}

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration (e.g. 10s, 500ms, 2m)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("'{s}' must be between 1ms and 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_record_type(s: &str) -> Result<RecordType, String> {
    RecordType::parse(s)
        .ok_or_else(|| format!("'{s}' is not one of A, AAAA, MX, TXT, PTR, CNAME, NS"))
}

fn parse_policy(s: &str) -> Result<RequiredPolicy, String> {
    RequiredPolicy::parse(s).ok_or_else(|| format!("'{s}' is not one of none, quarantine, reject"))
}

/// Is `s` a syntactically valid DNS name? `underscore` allows `_dmarc`-style labels.
pub fn is_domain_name(s: &str, underscore: bool) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        })
}

/// What the arguments ask to run.
#[derive(Debug)]
pub enum Plan {
    /// One check.
    Single(CheckSpec),
    /// The domain audit.
    Audit(DomainAudit),
}

impl ProbeArgs {
    /// Validates the target and options for the kind and builds the plan.
    /// The error is one line naming the bad value.
    pub fn plan(&self) -> Result<Plan, String> {
        let t = self.target.trim();
        let kind = format!("{:?}", self.kind).to_lowercase();
        let bad = |want: &str| format!("invalid target '{t}' for {kind}: expected {want}");
        let host = || -> Result<String, String> {
            let bare = t.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<IpAddr>().is_ok() || is_domain_name(t, false) {
                Ok(bare.to_owned())
            } else {
                Err(bad("an IP address or host name"))
            }
        };
        let domain = || -> Result<String, String> {
            if is_domain_name(t, false) && t.parse::<IpAddr>().is_err() {
                Ok(t.trim_end_matches('.').to_owned())
            } else {
                Err(bad("a domain name"))
            }
        };
        let ip = || t.parse::<IpAddr>().map_err(|_| bad("an IP address"));
        let tls = match self.tls {
            TlsArg::Auto => TlsMode::Auto,
            TlsArg::None => TlsMode::None,
            TlsArg::Starttls => TlsMode::Starttls,
            TlsArg::Implicit => TlsMode::Implicit,
        };
        let spec = match self.kind {
            Kind::Smtp => CheckSpec::Smtp(SmtpCheck {
                host: host()?,
                port: self.port.unwrap_or(25),
                tls,
                tls_name: self.tls_name.clone(),
                helo: self.helo.clone(),
                degraded_ms: self.degraded_ms,
            }),
            Kind::Tls => {
                if tls == TlsMode::None {
                    return Err("invalid value 'none' for --tls: a tls check needs TLS".into());
                }
                CheckSpec::Tls(TlsCheck {
                    host: host()?,
                    port: self.port.unwrap_or(25),
                    tls,
                    tls_name: self.tls_name.clone(),
                    ca_file: self.ca_file.clone(),
                    warn_days: self.warn_days,
                    crit_days: self.crit_days,
                })
            }
            Kind::Dns => {
                let name_ok =
                    is_domain_name(t, true) || (self.rtype == RecordType::Ptr && ip().is_ok());
                if !name_ok {
                    return Err(bad("a DNS name (or an IP address with --type PTR)"));
                }
                CheckSpec::Dns(DnsCheck {
                    name: t.to_owned(),
                    rtype: self.rtype,
                    expect: self.expect.clone(),
                })
            }
            Kind::Mx => CheckSpec::Mx(MxCheck {
                domain: domain()?,
                probe: self.probe,
                port: self.port.unwrap_or(25),
            }),
            Kind::Ptr => CheckSpec::Ptr(PtrCheck { ip: ip()? }),
            Kind::Tcp => {
                let port = self.port.ok_or("tcp needs --port")?;
                CheckSpec::Tcp(TcpCheck {
                    host: host()?,
                    port,
                    expect: self.expect.clone(),
                })
            }
            Kind::Spf => CheckSpec::Spf(SpfCheck {
                domain: domain()?,
                ip: self.ip,
            }),
            Kind::Dkim => {
                let selector = match self.selector.as_slice() {
                    [one] if is_domain_name(one, true) => one.clone(),
                    [one] => return Err(format!("invalid value '{one}' for --selector")),
                    [] => return Err("dkim needs --selector".into()),
                    _ => return Err("dkim takes one --selector".into()),
                };
                CheckSpec::Dkim(DkimCheck {
                    domain: domain()?,
                    selector,
                })
            }
            Kind::Dmarc => CheckSpec::Dmarc(DmarcCheck {
                domain: domain()?,
                require_policy: self.require_policy,
            }),
            Kind::Dnsbl => {
                let target = if ip().is_ok() {
                    t.to_owned()
                } else {
                    domain().map_err(|_| bad("an IP address or domain name"))?
                };
                CheckSpec::Dnsbl(DnsblCheck {
                    target,
                    zones: self.zones()?,
                })
            }
            Kind::Domain => {
                for s in &self.selector {
                    if !is_domain_name(s, true) {
                        return Err(format!("invalid value '{s}' for --selector"));
                    }
                }
                return Ok(Plan::Audit(DomainAudit {
                    domain: domain()?,
                    selectors: self.selector.clone(),
                    zones: self.zones()?,
                    ca_file: self.ca_file.clone(),
                    smtp_port: self.port.unwrap_or(25),
                    warn_days: self.warn_days,
                    crit_days: self.crit_days,
                }));
            }
        };
        Ok(Plan::Single(spec))
    }

    fn zones(&self) -> Result<Vec<String>, String> {
        for z in &self.zone {
            if !is_domain_name(z, false) {
                return Err(format!(
                    "invalid value '{z}' for --zone: expected a DNS zone"
                ));
            }
        }
        Ok(self
            .zone
            .iter()
            .map(|z| z.trim_end_matches('.').to_owned())
            .collect())
    }

    /// The context these options describe.
    pub fn context(&self) -> ProbeContext {
        ProbeContext::new(self.timeout, self.source_address, self.resolver)
    }
}

/// Runs the plan and returns the outcomes in order.
pub async fn run(plan: &Plan, ctx: &ProbeContext) -> Vec<Outcome> {
    match plan {
        Plan::Single(spec) => vec![spec.run(ctx).await],
        Plan::Audit(audit) => audit.run(ctx).await,
    }
}

/// Renders outcomes for stdout.
pub fn render(outcomes: &[Outcome], format: Format, array: bool) -> String {
    match format {
        Format::Json if array => serde_json::to_string(outcomes).unwrap_or_else(|e| json_error(&e)),
        Format::Json => outcomes
            .first()
            .map(|o| serde_json::to_string(o).unwrap_or_else(|e| json_error(&e)))
            .unwrap_or_default(),
        Format::Text if array => outcomes
            .iter()
            .map(Outcome::summary_line)
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Text => outcomes
            .iter()
            .map(text_block)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn json_error(e: &serde_json::Error) -> String {
    serde_json::json!({"status": "error", "message": format!("serialising outcome: {e}")})
        .to_string()
}

fn text_block(o: &Outcome) -> String {
    let mut out = o.summary_line();
    let phases: Vec<String> = o
        .phases
        .iter()
        .map(|(n, d)| format!("{n} {:.1}ms", d.as_secs_f64() * 1000.0))
        .collect();
    if !phases.is_empty() {
        out.push_str(&format!("\n  phases: {}", phases.join(", ")));
    }
    for (k, v) in &o.details {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("\n  {k}: {v}"));
    }
    out
}

/// Exit code for a set of outcomes.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.is_empty() {
        return Status::Error.exit_code();
    }
    worst_status(outcomes).exit_code()
}
