//! The `vantage-coordinator` process: `run --config` and `dev`. This is the
//! composition root: it starts a [`Coordinator`], hands each service and
//! loop the handles it needs, and serves them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use vantage_common::identity::Identity;
use vantage_common::logging::{self, LogFormat};
use vantage_common::pki::{self, CA_DAYS, Ca, LEAF_DAYS};
use vantage_common::transport;
use vantage_proto::v1::agent_service_server::AgentServiceServer;
use vantage_proto::v1::operator_service_server::OperatorServiceServer;
use vantage_proto::v1::raft_service_server::RaftServiceServer;

use crate::config::CoordinatorConfig;
use crate::grpc::{AgentApi, OperatorApi, PeerApi};
use crate::node::{Coordinator, delivery, housekeeping, remote_write};

/// vantage coordinator node.
#[derive(Debug, Parser)]
#[command(name = "vantage-coordinator", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogArg,
    /// Export OpenTelemetry traces over OTLP/gRPC to this collector
    /// (e.g. http://127.0.0.1:4317): agents' probe traces are continued
    /// through result ingestion to the notifications they cause.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node from its config file.
    Run {
        /// coordinator.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// A single-node cluster on this machine with a self-made PKI in DIR
    /// (operator and agent certificates included): the quickest way to try vantage.
    Dev {
        /// Where the PKI, config and data live (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// gRPC listener.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
    },
}

/// What to start, its configuration read.
enum Start {
    Node(Box<CoordinatorConfig>),
    Dev { data_dir: PathBuf, listen: String },
}

/// Entry point of `vantage-coordinator`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogArg::Text => LogFormat::Text,
        LogArg::Json => LogFormat::Json,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vantage-coordinator: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // The config first: its node id names this process in traces.
        let start = match cli.command {
            Command::Run { config } => Start::Node(Box::new(CoordinatorConfig::load(&config)?)),
            Command::Dev { data_dir, listen } => Start::Dev { data_dir, listen },
        };
        let id = match &start {
            Start::Node(config) => config.node_id,
            Start::Dev { .. } => 1,
        };
        // The trace exporter sends on this runtime, so it starts inside it.
        let telemetry = logging::init_traced(
            format,
            "info,openraft=warn,sled=warn,h2=warn,tower=warn",
            cli.otlp_endpoint.as_deref(),
            "vantage-coordinator",
            Some(&Identity::Coordinator { id }),
        )?;
        let result = match start {
            Start::Node(config) => run(*config, false, |_| {}).await,
            Start::Dev { data_dir, listen } => dev(&data_dir, &listen).await,
        };
        telemetry.flush().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vantage-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, starts the node, calls `announce` with the bound address, and
/// serves until interrupted. `init_alone` bootstraps a one-node cluster on
/// first start.
async fn run(
    config: CoordinatorConfig,
    init_alone: bool,
    announce: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let nofile = vantage_common::limits::raise_nofile();
    tracing::debug!(
        nofile,
        grpc_connections = vantage_common::limits::grpc_connections(),
        "file descriptor limits"
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr()?;
    let mut config = config;
    if config.advertise.is_none() {
        config.advertise = Some(bound.to_string());
    }
    let node = Coordinator::start(&config).await?;
    if let Some(addr) = config.http_listen {
        let router = crate::metrics::routes(
            node.metrics.clone(),
            node.raft.clone(),
            node.sessions.clone(),
            node.applied.clone(),
        )
        .merge(crate::web::routes(node.applied.clone(), {
            let raft = node.raft.clone();
            move || raft.metrics().borrow().current_leader
        }));
        let http = vantage_common::metrics::serve(addr, router)
            .await
            .with_context(|| format!("binding the HTTP port {addr}"))?;
        println!("vantage-coordinator node {} http on {}", node.id, http);
    }
    // Scripts and the test harness read this line to learn the bound port.
    println!(
        "vantage-coordinator node {} listening on {}",
        node.id, bound
    );
    if init_alone && node.proposer.voters().is_empty() {
        node.proposer.initialize(Default::default()).await?;
    }
    if init_alone {
        // Announce only once writes can be served.
        node.raft
            .wait(Some(std::time::Duration::from_secs(30)))
            .current_leader(node.id, "single-node cluster elects itself")
            .await?;
    }
    announce(bound);
    if let Some(settings) = config.remote_write.clone() {
        tokio::spawn(remote_write::run(
            settings,
            node.log.clone(),
            node.proposer.clone(),
            node.applied.clone(),
            node.metrics.clone(),
        ));
    }
    tokio::select! {
        r = serve(&node, listener) => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            node.raft.shutdown().await.ok();
            Ok(())
        }
    }
}

/// Serves the gRPC services on `listener`, with the leader's loops, until
/// the process ends.
async fn serve(node: &Coordinator, listener: TcpListener) -> Result<()> {
    let incoming = transport::incoming(listener, node.tls.clone());
    tokio::spawn(housekeeping::run(
        node.proposer.clone(),
        node.applied.clone(),
        node.sessions.clone(),
        node.heartbeat,
    ));
    tokio::spawn(delivery::run(
        node.proposer.clone(),
        node.applied.clone(),
        node.metrics.clone(),
    ));
    let peers = PeerApi::new(
        node.raft.clone(),
        node.proposer.clone(),
        node.applied.clone(),
    );
    let operators = OperatorApi::new(
        node.applied.clone(),
        node.proposer.clone(),
        node.last_contact.clone(),
    );
    let agents = AgentApi {
        proposer: node.proposer.clone(),
        applied: node.applied.clone(),
        sessions: node.sessions.clone(),
        confirmations: node.confirmations.clone(),
        results: node.metrics.results.clone(),
        heartbeat: node.heartbeat,
    };
    tonic::transport::Server::builder()
        .add_service(RaftServiceServer::new(peers).max_decoding_message_size(64 << 20))
        // A declaration of 50,000 checks is about 6 MiB of TOML.
        .add_service(OperatorServiceServer::new(operators).max_decoding_message_size(64 << 20))
        .add_service(
            AgentServiceServer::new(agents)
                .max_decoding_message_size(crate::grpc::agent_service::MAX_FRAME),
        )
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

async fn dev(dir: &Path, listen: &str) -> Result<()> {
    let pki_dir = dir.join("pki");
    let ca = if pki_dir.join("ca.pem").exists() {
        Ca::load(&pki_dir)?
    } else {
        Ca::create(&pki_dir, CA_DAYS)?
    };
    let ids = [
        (
            Identity::Coordinator { id: 1 },
            vec!["localhost".to_owned()],
            vec!["127.0.0.1".parse()?, "::1".parse()?],
        ),
        (Identity::Operator { name: "dev".into() }, vec![], vec![]),
        (
            Identity::Agent {
                region: "local".into(),
                name: "dev-1".into(),
            },
            vec![],
            vec![],
        ),
    ];
    for (identity, dns, ips) in &ids {
        let stem = pki::file_stem(identity);
        if !pki_dir.join(format!("{stem}.pem")).exists() {
            ca.issue(identity, dns, ips, LEAF_DAYS)?
                .write(&pki_dir, &stem)?;
        }
    }
    let config_path = dir.join("coordinator.toml");
    if !config_path.exists() {
        let p = |name: &str| pki_dir.join(name).display().to_string();
        let text = format!(
            "# Written by `vantage-coordinator dev`.\nnode_id = 1\nlisten = \"{listen}\"\ndata_dir = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[raft]\n# One node on one machine: no WAN timers needed.\nheartbeat_ms = 100\nelection_min_ms = 300\nelection_max_ms = 600\n",
            dir.join("data").display(),
            p("ca.pem"),
            p("coordinator-1.pem"),
            p("coordinator-1.key"),
        );
        std::fs::write(&config_path, text).with_context(|| config_path.display().to_string())?;
    }
    let config = CoordinatorConfig::load(&config_path)?;
    let p = |name: &str| pki_dir.join(name).display().to_string();
    let (ca, cert, key, agent_cert, agent_key) = (
        p("ca.pem"),
        p("operator-dev.pem"),
        p("operator-dev.key"),
        p("agent-dev-1.pem"),
        p("agent-dev-1.key"),
    );
    let config_shown = config_path.display().to_string();
    run(config, true, move |bound| {
        println!("vantage dev coordinator ready: config {config_shown}");
        println!("point vantagectl at it:");
        println!("  export VANTAGE_ENDPOINTS={bound} VANTAGE_CA={ca} VANTAGE_CERT={cert} VANTAGE_KEY={key}");
        println!("  vantagectl cluster status");
        println!("agent certificate (region local): {agent_cert} {agent_key}");
    })
    .await
}
