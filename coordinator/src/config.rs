//! `coordinator.toml`: node id, listen addresses, data directory, TLS files
//! and Raft timers. Unknown fields are errors; every error names file, line
//! and field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vantage_common::config::{self, ConfigError};
use vantage_common::tls::TlsFiles;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Raft node id; must match the id in this node's certificate.
    pub node_id: u64,
    /// gRPC listener (agents, operators, peers).
    pub listen: SocketAddr,
    /// `host:port` the other nodes and clients dial; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Plain-HTTP port for `/metrics`, `/healthz` and `/readyz` (off when
    /// absent). It serves nothing that changes state; keep it private.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Where Raft keeps its log, vote, state and snapshots.
    pub data_dir: PathBuf,
    /// This node's mTLS identity.
    pub tls: TlsFiles,
    /// Raft timers and compaction.
    #[serde(default)]
    pub raft: RaftSettings,
    /// Agent sessions.
    #[serde(default)]
    pub agents: AgentSettings,
}

/// Agent session settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Agents send a heartbeat this often; after 3 missed ones their checks
    /// move to another agent of the region.
    pub heartbeat_ms: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings { heartbeat_ms: 5000 }
    }
}

/// Raft tuning. Defaults suit nodes in different regions (WAN latencies).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout range, lower bound.
    pub election_min_ms: u64,
    /// Election timeout range, upper bound.
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log before it) after this many entries.
    pub snapshot_every: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 500,
            election_min_ms: 3000,
            election_max_ms: 6000,
            snapshot_every: 5000,
        }
    }
}

impl RaftSettings {
    /// The openraft configuration, validated.
    pub fn openraft(&self) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        openraft::Config {
            cluster_name: "vantage".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            // openraft drops an AppendEntries that takes longer than one
            // heartbeat: at most 64 entries (result batches of up to 1,000
            // results each) per request, not 300, so a follower catching
            // up is not stuck retrying one request that cannot make it.
            max_payload_entries: 64,
            // Snapshot chunks of 1 MiB (about 4 MiB framed), each given
            // four heartbeats and at least 2 s rather than 200 ms.
            snapshot_max_chunk_size: 1 << 20,
            install_snapshot_timeout: (self.heartbeat_ms * 4).max(2000),
            ..Default::default()
        }
        .validate()
        .map_err(Box::new)
    }
}

impl CoordinatorConfig {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (config, text): (CoordinatorConfig, String) = config::load(path)?;
        config.validate(path, &text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(config::invalid(path, text, "node_id", "must be 1 or more"));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 {
            return Err(config::invalid(
                path,
                text,
                "raft.heartbeat_ms",
                "must be more than 0",
            ));
        }
        if r.election_min_ms <= r.heartbeat_ms {
            return Err(config::invalid(
                path,
                text,
                "raft.election_min_ms",
                "must be larger than raft.heartbeat_ms",
            ));
        }
        if r.election_max_ms <= r.election_min_ms {
            return Err(config::invalid(
                path,
                text,
                "raft.election_max_ms",
                "must be larger than raft.election_min_ms",
            ));
        }
        if self.agents.heartbeat_ms < 100 {
            return Err(config::invalid(
                path,
                text,
                "agents.heartbeat_ms",
                "must be 100 or more",
            ));
        }
        if r.snapshot_every == 0 {
            return Err(config::invalid(
                path,
                text,
                "raft.snapshot_every",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    /// The address others dial.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn example_config_loads() {
        let text = include_str!("../../deploy/examples/coordinator.toml");
        let (_d, path) = write(text);
        let c = CoordinatorConfig::load(&path).unwrap();
        assert_eq!((c.node_id, c.raft.heartbeat_ms), (1, 500));
        assert_eq!(c.advertised(), "coord-eu.example.org:7400");
        assert!(c.raft.openraft().is_ok());
    }

    #[test]
    fn bad_configs_name_file_line_and_field() {
        let good = include_str!("../../deploy/examples/coordinator.toml");
        let cases = [
            (good.replace("node_id = 1 ", "nod_id = 1 "), "nod_id"),
            (good.replace("node_id = 1 ", "node_id = 0 "), "node_id"),
            (
                good.replace("listen = \"0.0.0.0:7400\"", "listen = \"nowhere\""),
                "listen",
            ),
            (
                good.replace("heartbeat_ms = 500", "heartbeat_ms = 5000"),
                "raft.election_min_ms",
            ),
            (
                good.replace("election_max_ms = 6000", "election_max_ms = 2000"),
                "raft.election_max_ms",
            ),
            (good.replace("key = ", "kee = "), "kee"),
        ];
        for (text, field) in cases {
            let (_d, path) = write(&text);
            let e = CoordinatorConfig::load(&path).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            let line = e.line.unwrap_or(0);
            assert!(
                text.lines()
                    .nth(line.saturating_sub(1))
                    .is_some_and(|l| l.contains(field.rsplit('.').next().unwrap())),
                "{e}"
            );
            assert!(
                e.to_string().starts_with(&path.display().to_string()),
                "{e}"
            );
        }
    }
}
