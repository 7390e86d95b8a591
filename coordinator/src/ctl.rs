//! `vantagectl`: the operator CLI. Talks gRPC over mTLS to any coordinator
//! (writes reach the leader through it).
//!
//! - `ctl.rs` — arguments, where endpoints and credentials come from, the
//!   connection with a clear error per endpoint.
//! - `ctl/certs.rs` — `certs init|issue|inspect` (local files, no server).
//! - `ctl/cluster.rs` — `cluster init|status|add|remove`, `agents list|revoke|unrevoke|revoked`, `operators revoke|unrevoke`.
//! - `ctl/checks.rs` — `apply -f checks.toml [--dry-run]`, `checks list|get`,
//!   `results CHECK`, `status`, `incidents`.
//! - `ctl/alerts.rs` — `alerts test`, `silence`, `maintenance`.

pub mod alerts;
pub mod certs;
pub mod checks;
pub mod cluster;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tonic::transport::Channel;
use vantage_common::identity::Identity;
use vantage_common::tls::{ReloadingTls, TlsFiles};
use vantage_common::transport;
use vantage_proto::v1::ClusterStatusRequest;
use vantage_proto::v1::operator_service_client::OperatorServiceClient;

/// vantagectl: operate a vantage deployment.
#[derive(Debug, Parser)]
#[command(name = "vantagectl", version, about)]
pub struct Cli {
    /// Connection settings.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text", global = true)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable tables.
    Text,
    /// JSON for scripts.
    Json,
}

/// Where the coordinators are and who we are. Flags override `VANTAGE_*`
/// variables, which override the config file.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Coordinator address (host:port); repeat or comma-separate for several.
    #[arg(
        long = "endpoint",
        env = "VANTAGE_ENDPOINTS",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// Deployment CA certificate.
    #[arg(long, env = "VANTAGE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Operator certificate.
    #[arg(long, env = "VANTAGE_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Operator key.
    #[arg(long, env = "VANTAGE_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Config file with `endpoints = [...]` and a `[tls]` table (ca, cert, key).
    #[arg(long, env = "VANTAGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CtlFile {
    #[serde(default)]
    endpoints: Vec<String>,
    tls: Option<TlsFiles>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the deployment CA and issue certificates.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Bootstrap the cluster, show its state, change its membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Agents: list them, revoke and accept their certificates.
    #[command(subcommand)]
    Agents(cluster::AgentsCommand),
    /// Operators: revoke and accept their certificates.
    #[command(subcommand)]
    Operators(cluster::OperatorsCommand),
    /// Declare the full set of checks, channels and routes from a TOML file
    /// (validated first, applied atomically; prints created/changed/deleted).
    Apply {
        /// checks.toml
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Validate and show the diff; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Checks: verdict across regions (OK, REGIONAL, OUTAGE, BLIND...) and
    /// per-region state, in name order; filters narrow it down.
    Status(checks::StatusArgs),
    /// Uptime of a check over a window (REGIONAL counts as degraded, not
    /// down), per region, its incidents and its changes.
    History {
        /// Check name.
        check: String,
        /// Window, e.g. 24h, 7d, 30d: to the hour within the last 24 hours,
        /// beyond that to the day (30 days are kept).
        #[arg(long, default_value = "7d")]
        since: String,
    },
    /// Changes of what checks observe (records, certificates) that a quorum
    /// of regions agreed on, old → new, with the CHANGED incident each raised.
    Changes {
        /// One check (every check when absent).
        check: Option<String>,
        /// Window, e.g. 24h, 7d, 30d.
        #[arg(long, default_value = "7d")]
        since: String,
    },
    /// Incidents: list, show with timeline, acknowledge.
    #[command(subcommand)]
    Incidents(checks::IncidentsCommand),
    /// Alert channels: send a synthetic test alert.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Silences: hold back notifications (never results or verdicts) for a while.
    #[command(subcommand)]
    Silence(alerts::SilenceCommand),
    /// Maintenance windows: planned silences, one-off or weekly.
    #[command(subcommand)]
    Maintenance(alerts::MaintenanceCommand),
    /// Show declared checks.
    #[command(subcommand)]
    Checks(checks::ChecksCommand),
    /// Latest result of a check per region (status, class, message, age).
    Results {
        /// Check name.
        check: String,
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
        /// Also show this many recent results (the cluster keeps the last
        /// 30 of each check, all regions together).
        #[arg(long, default_value_t = 0)]
        recent: u32,
    },
}

/// A connected operator client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The gRPC client.
    pub operator: OperatorServiceClient<Channel>,
    /// Which endpoint answered.
    pub endpoint: String,
}

impl ConnArgs {
    fn resolve(&self) -> Result<(Vec<String>, TlsFiles)> {
        let file = match &self.config {
            Some(path) => Some(vantage_common::config::load::<CtlFile>(path).map(|(f, _)| f)?),
            None => None,
        };
        let endpoints = if self.endpoints.is_empty() {
            file.as_ref()
                .map(|f| f.endpoints.clone())
                .unwrap_or_default()
        } else {
            self.endpoints.clone()
        };
        if endpoints.is_empty() {
            bail!(
                "no coordinator endpoint: pass --endpoint, set VANTAGE_ENDPOINTS or a config file"
            );
        }
        let from_file = file.and_then(|f| f.tls);
        let pick = |flag: &Option<PathBuf>, file: Option<PathBuf>, what: &str, var: &str| {
            flag.clone()
                .or(file)
                .with_context(|| format!("no {what}: pass --{what}, set {var} or a config file"))
        };
        let tls = TlsFiles {
            ca: pick(
                &self.ca,
                from_file.as_ref().map(|t| t.ca.clone()),
                "ca",
                "VANTAGE_CA",
            )?,
            cert: pick(
                &self.cert,
                from_file.as_ref().map(|t| t.cert.clone()),
                "cert",
                "VANTAGE_CERT",
            )?,
            key: pick(
                &self.key,
                from_file.as_ref().map(|t| t.key.clone()),
                "key",
                "VANTAGE_KEY",
            )?,
        };
        Ok((endpoints, tls))
    }

    /// Connects to the first endpoint that answers; the error lists every
    /// endpoint and why it failed.
    pub async fn connect(&self) -> Result<Client> {
        let (endpoints, files) = self.resolve()?;
        let cert = files.cert.clone();
        let tls: Arc<ReloadingTls> = ReloadingTls::load(files)?;
        let me = tls.identity();
        if !matches!(me, Identity::Operator { .. }) {
            bail!(
                "{}: this is the certificate of {me}; vantagectl needs an operator certificate \
                 (vantagectl certs issue operator NAME)",
                cert.display()
            );
        }
        let mut failures = Vec::new();
        for endpoint in &endpoints {
            let channel = match transport::channel(endpoint, tls.clone()) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{endpoint}: invalid address ({e})"));
                    continue;
                }
            };
            let mut operator = OperatorServiceClient::new(channel);
            // A cheap call proves the connection, the TLS handshake and our role.
            match operator.cluster_status(ClusterStatusRequest {}).await {
                Ok(_) => {
                    return Ok(Client {
                        operator,
                        endpoint: endpoint.clone(),
                    });
                }
                // The server answered: another endpoint would say the same.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    ) =>
                {
                    bail!("{endpoint}: {}", explain(&status))
                }
                Err(status) => {
                    // Below gRPC, tonic says only "transport error": ask TLS.
                    let why = match transport::diagnose(endpoint, &tls).await {
                        Some(why) => why,
                        None => explain(&status),
                    };
                    failures.push(format!("{endpoint}: {why}"));
                }
            }
        }
        bail!("no coordinator reachable:\n  {}", failures.join("\n  "))
    }
}

/// A gRPC failure in words: refused, TLS, permission.
pub fn explain(status: &tonic::Status) -> String {
    let mut text = format!("{status}");
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    match status.code() {
        tonic::Code::PermissionDenied => format!("permission denied: {}", status.message()),
        tonic::Code::Unauthenticated => format!("not authenticated: {}", status.message()),
        tonic::Code::Unavailable if text.contains("refused") => {
            format!("connection refused ({text})")
        }
        tonic::Code::Unavailable
            if text.to_lowercase().contains("certificate")
                || text.contains("tls")
                || text.contains("TLS") =>
        {
            format!("TLS failure: {text}")
        }
        tonic::Code::Unavailable => format!("unavailable: {text}"),
        _ => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Entry point of `vantagectl`.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs(c) => certs::run(c, cli.output),
        Command::Cluster(c) => cluster::run_cluster(c, &cli.conn, cli.output).await,
        Command::Agents(c) => cluster::run_agents(c, &cli.conn, cli.output).await,
        Command::Operators(c) => cluster::run_operators(c, &cli.conn).await,
        Command::Apply { file, dry_run } => {
            checks::apply(file, dry_run, &cli.conn, cli.output).await
        }
        Command::Checks(c) => checks::run(c, &cli.conn, cli.output).await,
        Command::Status(args) => checks::status(&args, &cli.conn, cli.output).await,
        Command::Incidents(c) => checks::incidents(c, &cli.conn, cli.output).await,
        Command::History { check, since } => {
            checks::history(check, since, &cli.conn, cli.output).await
        }
        Command::Changes { check, since } => {
            checks::changes(check, since, &cli.conn, cli.output).await
        }
        Command::Alerts(c) => alerts::alerts(c, &cli.conn).await,
        Command::Silence(c) => alerts::silence(c, &cli.conn, cli.output).await,
        Command::Maintenance(c) => alerts::maintenance(c, &cli.conn, cli.output).await,
        Command::Results {
            check,
            region,
            recent,
        } => checks::results(check, region, recent, &cli.conn, cli.output).await,
    }
}

/// Entry point of `vantagectl`.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    let cli = Cli::parse();
    vantage_common::logging::init(vantage_common::logging::LogFormat::Text, "warn");
    vantage_common::logging::quiet_on_closed_stdout();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vantagectl: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vantagectl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
