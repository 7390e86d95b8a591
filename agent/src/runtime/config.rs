//! `agent.toml`: coordinators, TLS files, spool, probing settings. The
//! agent's region and name come from its certificate. Unknown fields are
//! errors naming file, line and field.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vantage_common::config::{self, ConfigError};
use vantage_common::tls::TlsFiles;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Coordinator addresses (`host:port`); any subset will do, the agent
    /// finds the leader.
    pub coordinators: Vec<String>,
    /// This agent's mTLS identity.
    pub tls: TlsFiles,
    /// Where unacknowledged results wait.
    pub spool_dir: PathBuf,
    /// Spool size limit in MiB; beyond it the oldest results are dropped.
    #[serde(default = "default_spool_mb")]
    pub spool_max_mb: u64,
    /// Probes running at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Bind probes (and their DNS) to this address.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
    /// Send probe DNS queries to this resolver instead of the system's.
    #[serde(default)]
    pub resolver: Option<SocketAddr>,
    /// Results per batch sent to the coordinator.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_spool_mb() -> u64 {
    64
}
fn default_concurrency() -> usize {
    64
}
fn default_batch() -> usize {
    100
}

impl AgentConfig {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (c, text): (AgentConfig, String) = config::load(path)?;
        if c.coordinators.is_empty() || c.coordinators.iter().any(|a| !a.contains(':')) {
            return Err(config::invalid(
                path,
                &text,
                "coordinators",
                "list at least one host:port",
            ));
        }
        if c.spool_max_mb == 0 {
            return Err(config::invalid(
                path,
                &text,
                "spool_max_mb",
                "must be 1 or more",
            ));
        }
        if c.concurrency == 0 || c.concurrency > 4096 {
            return Err(config::invalid(
                path,
                &text,
                "concurrency",
                "must be between 1 and 4096",
            ));
        }
        if c.batch_size == 0 || c.batch_size > 1000 {
            return Err(config::invalid(
                path,
                &text,
                "batch_size",
                "must be between 1 and 1000",
            ));
        }
        Ok(c)
    }
}
