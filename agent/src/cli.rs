//! The `vantage-agent` command line: `probe <kind> <target> [options]`.
//!
//! Exit codes follow the Nagios/Icinga plugin convention: 0 pass, 1 warn,
//! 2 fail, 3 error/unknown, bad arguments included.

pub mod entry;
pub mod output;
pub mod plan;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use vantage_common::spec;
pub use vantage_common::spec::is_domain_name;

use crate::check::dmarc::RequiredPolicy;
use crate::check::dns::RecordType;
use crate::check::smtp::DEFAULT_HELO;

pub use self::output::{exit_code, render, run};
pub use self::plan::Plan;

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
    Probe(Box<ProbeArgs>),
    /// Run as a long-lived agent: take assignments from the coordinators,
    /// probe on schedule, stream results (spooled until acknowledged).
    Run {
        /// agent.toml
        #[arg(long)]
        config: std::path::PathBuf,
        /// Log line format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
        /// Export OpenTelemetry traces over OTLP/gRPC to this collector
        /// (e.g. http://127.0.0.1:4317): a span per probe, continued by the
        /// coordinator that receives its result.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
        otlp_endpoint: Option<String>,
    },
}

/// Log format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// What `probe` runs: a check of a kind from the registry
/// (`vantage_common::spec::Kind`), or the whole audit of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One check.
    Check(spec::Kind),
    /// The whole mail audit of a domain.
    Domain,
}

/// Every kind the command line takes, in the registry's order.
static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    spec::Kind::ALL
        .into_iter()
        .map(Kind::Check)
        .chain([Kind::Domain])
        .collect()
});

/// `probe --help` for a kind: what it checks and the options it takes.
fn kind_help(kind: spec::Kind) -> &'static str {
    match kind {
        spec::Kind::Smtp => "SMTP dialogue: banner, EHLO, STARTTLS, AUTH, MAIL/RCPT, QUIT",
        spec::Kind::Tls => "Certificate of an SMTP (STARTTLS/implicit) or TLS endpoint",
        spec::Kind::Dns => "One DNS query (--type, --expect)",
        spec::Kind::Mx => "MX hosts and their addresses (--probe runs smtp on each)",
        spec::Kind::Ptr => "Reverse DNS of an address, forward-confirmed",
        spec::Kind::Tcp => "TCP connect (--expect text in the greeting)",
        spec::Kind::Spf => "SPF record of a domain (--ip evaluates an address)",
        spec::Kind::Dkim => "DKIM key (--selector)",
        spec::Kind::Dmarc => "DMARC policy (--require-policy)",
        spec::Kind::Dnsbl => "Blocklists for an address or domain (--zone)",
        spec::Kind::MtaSts => "MTA-STS: record, policy over HTTPS, every MX host held to it",
        spec::Kind::TlsRpt => "TLS-RPT record (_smtp._tls): one, v=TLSRPTv1, valid rua URIs",
        spec::Kind::Dane => {
            "DANE: TLSA of each MX host (DNSSEC-validated) against its certificates"
        }
        spec::Kind::Delivery => {
            "Round trip: submit a message (--submit), watch for it over IMAP (--imap)"
        }
    }
}

impl Kind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Check(k) => k.name(),
            Kind::Domain => "domain",
        }
    }
}

impl ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        &KINDS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Kind::Check(k) => kind_help(*k),
            Kind::Domain => "The whole mail audit of a domain",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
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

/// TLS mode of an IMAP connection on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImapTlsArg {
    /// By port: 993 implicit, else STARTTLS.
    Auto,
    /// STARTTLS.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// A TLS posture rule of smtp and tls checks, each a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PostureRule {
    /// The server still accepts TLS 1.0 or 1.1 (also skips that test).
    LegacyTls,
    /// The leaf key is RSA below --min-rsa-bits.
    WeakRsa,
    /// A certificate of the chain is signed with SHA-1 or MD5.
    Sha1,
    /// AUTH is offered before STARTTLS.
    AuthBeforeStarttls,
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
    /// PEM trust anchors instead of the system roots (tls; smtp with
    /// --username: the certificate a password goes to).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Send every DNS query to this server (IP or IP:PORT).
    #[arg(long, value_parser = parse_resolver)]
    pub resolver: Option<SocketAddr>,
    /// Hard deadline for the whole probe (e.g. 10s, 500ms); default 15s for
    /// SMTP/TLS/MX, 5-10s for DNS checks, 300s for delivery (a message not
    /// in the mailbox by then fails). For `domain`, per finding.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Bind outgoing connections and DNS queries to this address.
    #[arg(long)]
    pub source_address: Option<IpAddr>,
    /// dns: a value that must be in the answer; tcp: text the server must
    /// send; mx, ptr: the pinned set (`10 mx.example.org`; repeatable);
    /// spf, dmarc, dkim: the pinned record (dkim also `sha256:...` of its
    /// key); tls: the pinned certificate (`sha256:...`). A pinned value
    /// that differs fails with class policy.
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
    /// smtp, tls: a TLS posture rule that does not warn. Repeatable.
    #[arg(long, value_enum)]
    pub allow: Vec<PostureRule>,
    /// smtp, tls: an RSA leaf key with fewer bits warns.
    #[arg(long, default_value_t = 2048)]
    pub min_rsa_bits: u32,
    /// dns, mx, spf, dkim, dmarc: also ask every authoritative server of
    /// the zone directly (port 53, recursion off); servers that disagree,
    /// lame ones and SOA serials out of step warn.
    #[arg(long)]
    pub authoritative: bool,
    /// dane: DNSSEC trust anchors, a file of DNSKEY records (zone-file
    /// syntax); the root zone's (IANA) by default.
    #[arg(long)]
    pub trust_anchor: Option<PathBuf>,
    /// mta-sts, tlsrpt: no record at all fails (else it passes, saying so).
    #[arg(long)]
    pub require: bool,
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
    /// smtp: try this recipient after EHLO (and TLS): MAIL FROM, RCPT TO,
    /// then RSET, never DATA. 250/251 pass, 4xx warn, 5xx fail (class
    /// policy, the reply quoted). Repeatable.
    #[arg(long)]
    pub rcpt: Vec<String>,
    /// smtp: envelope sender for --rcpt (default: the null sender <>).
    #[arg(long)]
    pub mail_from: Option<String>,
    /// smtp: log in as this user (AUTH, after TLS only, to a server whose
    /// certificate is trusted and valid for its name) with the strongest
    /// mechanism both sides speak: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, LOGIN.
    /// 235 passes; a refusal fails with class auth.
    #[arg(long)]
    pub username: Option<String>,
    /// smtp: the password for --username is in this environment variable.
    #[arg(long)]
    pub password_env: Option<String>,
    /// smtp: the password for --username is in this file.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// delivery: submit through this server, HOST:PORT (TLS by --tls,
    /// its certificate name --tls-name, login by --username).
    #[arg(long)]
    pub submit: Option<String>,
    /// delivery: the mailbox's IMAP server, HOST:PORT.
    #[arg(long)]
    pub imap: Option<String>,
    /// delivery: TLS on the IMAP connection (never without).
    #[arg(long, value_enum, default_value = "auto")]
    pub imap_tls: ImapTlsArg,
    /// delivery: name the IMAP server's certificate must be valid for.
    #[arg(long)]
    pub imap_tls_name: Option<String>,
    /// delivery: the IMAP user.
    #[arg(long)]
    pub imap_username: Option<String>,
    /// delivery: the IMAP password is in this environment variable.
    #[arg(long)]
    pub imap_password_env: Option<String>,
    /// delivery: the IMAP password is in this file.
    #[arg(long)]
    pub imap_password_file: Option<PathBuf>,
    /// delivery: the IMAP folder watched.
    #[arg(long, default_value = "INBOX")]
    pub mailbox: String,
    /// delivery: arriving later than this after submission warns (e.g. 60s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub warn_after: Duration,
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
