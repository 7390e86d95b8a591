//! `agent.toml`: coordinators, TLS files, spool, probing settings. The
//! agent's region and name come from its certificate. Unknown fields are
//! errors naming file, line and field.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vantage_common::config::{self, ConfigError};
use vantage_common::tls::TlsFiles;

use super::scheduler::Assigned;
use vantage_common::duration::Period;
use vantage_common::spec::{CheckSpec, Kind, SpecError};

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
    /// Plain-HTTP port for `/metrics`, `/healthz`, `/readyz` (off when
    /// absent; keep it private).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Results per batch sent to the coordinator.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Checks of this vantage itself (a reference host it must reach, a
    /// name its resolver must answer); reported as `control/<name>` so the
    /// cluster can tell a broken vantage from a broken target.
    #[serde(default)]
    pub control: Vec<ControlCheck>,
}

/// One control check, written like a check in `checks.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCheck {
    /// Unique name.
    pub name: String,
    /// Check kind.
    pub kind: Kind,
    /// Host, domain or address.
    pub target: String,
    /// How often (at least 5s).
    #[serde(default = "default_control_interval")]
    pub interval: Period,
    /// Kind-specific parameters.
    #[serde(default)]
    pub params: toml::Table,
}

fn default_control_interval() -> Period {
    Period::from_secs(60)
}

/// Shortest interval of a control check.
const MIN_CONTROL_INTERVAL: Period = Period::from_secs(5);

/// Why a control check cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Kind, target or params do not make a check.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Runs too often.
    #[error("interval {0} must be at least {MIN_CONTROL_INTERVAL}")]
    Interval(Period),
}

impl ControlCheck {
    /// The scheduled form, named `control/<name>`.
    pub fn assigned(&self) -> Result<Assigned, ControlError> {
        let spec = CheckSpec::from_parts(self.kind, &self.target, &self.params)?;
        if self.interval < MIN_CONTROL_INTERVAL {
            return Err(ControlError::Interval(self.interval));
        }
        Ok(Assigned {
            name: format!("control/{}", self.name),
            spec,
            interval: self.interval.duration(),
            timeout: None,
        })
    }
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
        let mut names = std::collections::BTreeSet::new();
        for ctl in &c.control {
            if !vantage_common::identity::valid_label(&ctl.name) || !names.insert(ctl.name.as_str())
            {
                let msg = format!("{:?} is invalid or repeated", ctl.name);
                return Err(config::invalid(path, &text, "control.name", msg));
            }
            if let Err(e) = ctl.assigned() {
                let msg = format!("control check {}: {e}", ctl.name);
                return Err(config::invalid(path, &text, "control", msg));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_agent_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, include_str!("../../../deploy/examples/agent.toml")).unwrap();
        let c = AgentConfig::load(&path).unwrap();
        assert_eq!(
            (c.coordinators.len(), c.control.len(), c.spool_max_mb),
            (3, 2, 64)
        );
        assert!(c.control.iter().all(|ctl| ctl.assigned().is_ok()));
    }
}
