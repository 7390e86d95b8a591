//! `coordinator.toml`: node id, listen addresses, data directory, TLS files
//! and Raft timers. Unknown fields are errors; every error names file, line
//! and field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vantage_common::config::{self, ConfigError};
use vantage_common::duration::Period;
use vantage_common::secret::{Secret, SecretError};
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
    /// Where the leader sends every result as Prometheus samples (off when
    /// absent).
    #[serde(default)]
    pub remote_write: Option<RemoteWriteSettings>,
}

/// `[remote_write]`: a Prometheus remote-write 1.0 receiver (Prometheus
/// with `--web.enable-remote-write-receiver`, Mimir, VictoriaMetrics,
/// Thanos Receive).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSettings {
    /// The endpoint (`https://prometheus.example.org/api/v1/write`).
    pub url: String,
    /// Basic auth user (its password by `_env` or `_file`).
    #[serde(default)]
    pub basic_auth_username: Option<String>,
    /// Environment variable holding the basic auth password.
    #[serde(default)]
    pub basic_auth_password_env: Option<String>,
    /// File holding the basic auth password.
    #[serde(default)]
    pub basic_auth_password_file: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// File holding a bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Deadline of one request (default 30 s).
    #[serde(default = "default_remote_timeout")]
    pub timeout: Period,
    /// Samples per request at most (default 2,000).
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
}

fn default_remote_timeout() -> Period {
    Period::from_secs(30)
}

fn default_max_samples() -> usize {
    2000
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

impl RemoteWriteSettings {
    /// Where the basic auth password is read, if set.
    pub fn password(&self) -> Result<Option<Secret>, SecretError> {
        Secret::pick(
            "basic_auth_password",
            &self.basic_auth_password_env,
            &self.basic_auth_password_file,
            false,
        )
    }

    /// Where the bearer token is read, if set.
    pub fn bearer_token(&self) -> Result<Option<Secret>, SecretError> {
        Secret::pick(
            "bearer_token",
            &self.bearer_token_env,
            &self.bearer_token_file,
            false,
        )
    }

    /// The field at fault and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(_) => return Err(("remote_write.url", "only http and https URLs".into())),
            Err(e) => return Err(("remote_write.url", format!("{:?}: {e}", self.url))),
        }
        let password = self
            .password()
            .map_err(|e| ("remote_write.basic_auth_password_file", e.to_string()))?;
        let bearer = self
            .bearer_token()
            .map_err(|e| ("remote_write.bearer_token_file", e.to_string()))?;
        if password.is_some() != self.basic_auth_username.is_some() {
            return Err((
                "remote_write.basic_auth_username",
                "basic auth needs a username and a password (_env or _file)".into(),
            ));
        }
        if password.is_some() && bearer.is_some() {
            return Err((
                "remote_write.bearer_token_env",
                "set basic auth or a bearer token, not both".into(),
            ));
        }
        if !(1..=300).contains(&self.timeout.secs()) {
            return Err(("remote_write.timeout", "must be between 1s and 300s".into()));
        }
        if !(1..=100_000).contains(&self.max_samples_per_send) {
            return Err((
                "remote_write.max_samples_per_send",
                "must be between 1 and 100000".into(),
            ));
        }
        Ok(())
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
        if let Some(w) = &self.remote_write {
            w.validate()
                .map_err(|(field, why)| config::invalid(path, text, field, why))?;
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
    fn remote_write_settings_are_checked() {
        let good = include_str!("../../deploy/examples/coordinator.toml");
        let with = |section: &str| format!("{good}\n[remote_write]\n{section}");
        let (_d, path) = write(&with(
            "url = \"https://p.example/api/v1/write\"\nbearer_token_file = \"/t\"",
        ));
        let c = CoordinatorConfig::load(&path).unwrap();
        let w = c.remote_write.unwrap();
        assert_eq!((w.timeout.secs(), w.max_samples_per_send), (30, 2000));
        let cases = [
            ("url = \"ftp://p/x\"", "remote_write.url"),
            (
                "url = \"https://p/x\"\nbasic_auth_username = \"u\"",
                "remote_write.basic_auth_username",
            ),
            (
                "url = \"https://p/x\"\nbasic_auth_username = \"u\"\nbasic_auth_password_env = \"P\"\nbearer_token_env = \"T\"",
                "remote_write.bearer_token_env",
            ),
            (
                "url = \"https://p/x\"\ntimeout = \"10m\"",
                "remote_write.timeout",
            ),
            (
                "url = \"https://p/x\"\nmax_samples_per_send = 0",
                "remote_write.max_samples_per_send",
            ),
        ];
        for (section, field) in cases {
            let text = with(section);
            let (_d, path) = write(&text);
            let e = CoordinatorConfig::load(&path).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            let key = field.rsplit('.').next().unwrap();
            let line = e.line.unwrap_or(0);
            assert!(
                text.lines()
                    .nth(line.saturating_sub(1))
                    .is_some_and(|l| l.starts_with(key)),
                "{e}"
            );
        }
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
