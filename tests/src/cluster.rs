//! Cluster harness: N real `vantage-coordinator` processes on loopback
//! (OS-chosen ports), a test PKI, an operator client, and kill -9 /
//! restart. Every wait polls a condition under a generous deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tonic::transport::Channel;
use vantage_common::identity::Identity;
use vantage_common::pki::{self, Ca};
use vantage_common::tls::{ReloadingTls, TlsFiles};
use vantage_common::transport;
use vantage_proto::v1::operator_service_client::OperatorServiceClient;
use vantage_proto::v1::{
    ApplyRequest, ClusterMember, ClusterStatusReply, ClusterStatusRequest, IncidentInfo,
    InitClusterRequest, ListIncidentsRequest, RevokeRequest, StatusReply, StatusRequest,
};

/// Generous deadline for cluster conditions (elections, catch-up).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Agents of the three test regions: (name, region, loopback source), so a
/// target can fail for some regions only.
pub const REGIONS: [(&str, &str, &str); 3] = [
    ("ru-1", "ru", "127.0.0.11"),
    ("eu-1", "eu", "127.0.0.12"),
    ("us-1", "us", "127.0.0.13"),
];

/// Raft settings for tests: fast timers on loopback.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout range.
    pub election_ms: (u64, u64),
    /// Snapshot after this many entries.
    pub snapshot_every: u64,
    /// Agent heartbeat interval.
    pub agent_heartbeat_ms: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heartbeat_ms: 100,
            election_ms: (1000, 2000),
            snapshot_every: 5000,
            agent_heartbeat_ms: 300,
        }
    }
}

impl Timers {
    /// The coordinator's own Raft timers (coordinator.toml `[raft]`
    /// defaults), for benchmarks: tests use shorter ones to run fast.
    pub fn production(snapshot_every: u64) -> Self {
        Timers {
            heartbeat_ms: 500,
            election_ms: (3000, 6000),
            snapshot_every,
            agent_heartbeat_ms: 1000,
        }
    }
}

/// One coordinator process.
#[derive(Debug)]
pub struct NodeProc {
    /// Node id.
    pub id: u64,
    /// Bound address (kept across restarts).
    pub addr: SocketAddr,
    /// Its HTTP port (`/metrics`, `/healthz`, `/readyz`).
    pub http: Option<SocketAddr>,
    child: Option<Child>,
}

/// One agent process.
#[derive(Debug)]
pub struct AgentProc {
    /// Agent name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Address its probes come from.
    pub source: String,
    child: Option<Child>,
}

/// A cluster of coordinator processes (and agents); killed when dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    ca: Ca,
    timers: Timers,
    /// The nodes by id.
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Agents by name.
    pub agents: BTreeMap<String, AgentProc>,
    operator: Arc<ReloadingTls>,
    env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft and hard) for the nodes.
    node_nofile: Option<u64>,
    /// Nodes placed in a network namespace: (namespace, address).
    node_places: BTreeMap<u64, (String, IpAddr)>,
    /// Agents placed in a network namespace.
    agent_places: BTreeMap<String, String>,
    /// Appended to every coordinator's `coordinator.toml`.
    node_extra: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes = self.nodes.values_mut().filter_map(|n| n.child.as_mut());
        let agents = self.agents.values_mut().filter_map(|a| a.child.as_mut());
        for child in nodes.chain(agents) {
            let _ = child.start_kill();
        }
    }
}

/// Polls `check` until it yields a value or `DEADLINE` passes.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// A PKI and an empty cluster directory.
    pub fn new(timers: Timers) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = Ca::create(&dir.path().join("pki"), 30)?;
        let operator = Identity::Operator {
            name: "tester".into(),
        };
        let files = Self::issue_in(&ca, &dir.path().join("pki"), &operator, &[])?;
        Ok(Cluster {
            operator: ReloadingTls::load(files)?,
            dir,
            ca,
            timers,
            nodes: BTreeMap::new(),
            agents: BTreeMap::new(),
            env: Vec::new(),
            node_nofile: None,
            node_places: BTreeMap::new(),
            agent_places: BTreeMap::new(),
            node_extra: String::new(),
        })
    }

    /// Issues once a certificate for `identity` naming localhost,
    /// 127.0.0.1 and `ips`.
    fn issue_in(
        ca: &Ca,
        pki_dir: &std::path::Path,
        identity: &Identity,
        ips: &[IpAddr],
    ) -> Result<TlsFiles> {
        let stem = pki::file_stem(identity);
        let (cert, key) = (
            pki_dir.join(format!("{stem}.pem")),
            pki_dir.join(format!("{stem}.key")),
        );
        if !cert.exists() {
            let mut all: Vec<IpAddr> = vec!["127.0.0.1".parse()?];
            all.extend_from_slice(ips);
            ca.issue(identity, &["localhost".into()], &all, 30)?
                .write(pki_dir, &stem)?;
        }
        Ok(TlsFiles {
            ca: pki_dir.join("ca.pem"),
            cert,
            key,
        })
    }

    /// Appends `toml` (a table such as `[remote_write]`) to the
    /// configuration of every coordinator started from now on.
    pub fn with_coordinator_config(mut self, toml: &str) -> Self {
        self.node_extra.push_str(toml);
        self
    }

    /// Sets `key=value` in the environment of every coordinator and agent
    /// started from now on.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Issues (once) a certificate for `identity` in the cluster's PKI.
    pub fn issue(&self, identity: &Identity) -> Result<TlsFiles> {
        let ips: Vec<IpAddr> = match identity {
            Identity::Coordinator { id } => {
                self.node_places.get(id).map(|p| p.1).into_iter().collect()
            }
            _ => Vec::new(),
        };
        Self::issue_in(&self.ca, &self.pki_dir(), identity, &ips)
    }

    /// Starts the nodes with at most `n` open files (soft and hard limit).
    pub fn with_nofile(mut self, n: u64) -> Self {
        self.node_nofile = Some(n);
        self
    }

    /// Runs node `id` inside network namespace `netns`, listening on
    /// `ip:7400` (its certificate names `ip`).
    pub fn place_node(mut self, id: u64, netns: &str, ip: IpAddr) -> Self {
        self.node_places.insert(id, (netns.to_owned(), ip));
        self
    }

    /// Runs agent `name` inside network namespace `netns`.
    pub fn place_agent(mut self, name: &str, netns: &str) -> Self {
        self.agent_places.insert(name.to_owned(), netns.to_owned());
        self
    }

    /// The PKI directory (ca.pem, ca.key and issued pairs).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Starts `n` nodes (ids 1..=n), initialises them as one cluster and
    /// waits for a leader.
    pub async fn start(n: u64, timers: Timers) -> Result<Self> {
        Self::new(timers)?.started(n).await
    }

    /// Starts nodes 1..=`n` of this (new) cluster, initialises them as one
    /// cluster and waits for a leader.
    pub async fn started(self, n: u64) -> Result<Self> {
        let mut cluster = self;
        for id in 1..=n {
            cluster.spawn(id).await?;
        }
        let members = cluster
            .nodes
            .values()
            .map(|n| ClusterMember {
                id: n.id,
                addr: n.addr.to_string(),
            })
            .collect();
        cluster
            .operator(1)?
            .init_cluster(InitClusterRequest { members })
            .await?;
        cluster.wait_for_leader(&cluster.ids()).await?;
        Ok(cluster)
    }

    /// Ids of nodes currently running.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Starts node `id` (again, on its previous address if it ran before).
    pub async fn spawn(&mut self, id: u64) -> Result<SocketAddr> {
        let tls = self.issue(&Identity::Coordinator { id })?;
        let place = self.node_places.get(&id);
        let listen = match (self.nodes.get(&id), place) {
            (Some(n), _) => n.addr.to_string(),
            (None, Some((_, ip))) => SocketAddr::new(*ip, 7400).to_string(),
            (None, None) => "127.0.0.1:0".to_owned(),
        };
        let node_dir = self.dir.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let t = self.timers;
        let config = format!(
            "node_id = {id}\nlisten = \"{listen}\"\nhttp_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n[raft]\nheartbeat_ms = {}\nelection_min_ms = {}\nelection_max_ms = {}\nsnapshot_every = {}\n[agents]\nheartbeat_ms = {}\n",
            node_dir.join("data").display(),
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display(),
            t.heartbeat_ms,
            t.election_ms.0,
            t.election_ms.1,
            t.snapshot_every,
            t.agent_heartbeat_ms,
        ) + &self.node_extra;
        let config_path = node_dir.join("coordinator.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_dir.join("stderr.log"))?;
        let mut prefix: Vec<String> = Vec::new();
        if let Some(n) = self.node_nofile {
            prefix.extend(["prlimit".into(), format!("--nofile={n}:{n}"), "--".into()]);
        }
        if let Some((ns, _)) = place {
            prefix.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        let mut child =
            crate::role_command_after(&prefix, "coordinator", "vantage-coordinator-under-test")
                .envs(self.env.iter().cloned())
                .args(["run", "--config"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .context("starting vantage-coordinator")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        // "... http on ADDR", then "... listening on ADDR".
        let mut http = None;
        let addr = loop {
            let line = tokio::time::timeout(DEADLINE, lines.next_line())
                .await
                .map_err(|_| anyhow!("node {id} did not start in time"))??
                .ok_or_else(|| {
                    anyhow!(
                        "node {id} exited at start-up; see {}",
                        node_dir.join("stderr.log").display()
                    )
                })?;
            let last: Option<SocketAddr> = line.rsplit(' ').next().and_then(|a| a.parse().ok());
            match last {
                Some(a) if line.contains(" http on ") => http = Some(a),
                Some(a) if line.contains(" listening on ") => break a,
                _ => bail!("unexpected start-up line {line:?}"),
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.nodes.insert(
            id,
            NodeProc {
                id,
                addr,
                http,
                child: Some(child),
            },
        );
        Ok(addr)
    }

    /// Starts (or restarts, keeping its spool) agent `name` in `region`,
    /// probing from `source` (a loopback address), talking to `endpoints`
    /// (all nodes when empty).
    pub async fn spawn_agent(
        &mut self,
        name: &str,
        region: &str,
        source: &str,
        endpoints: &[u64],
    ) -> Result<()> {
        self.spawn_agent_with(name, region, source, endpoints, "")
            .await
    }

    /// Like [`Cluster::spawn_agent`], with `extra` TOML in the agent's
    /// config before its `[tls]` table (top-level keys such as `resolver`,
    /// `[[control]]` checks).
    pub async fn spawn_agent_with(
        &mut self,
        name: &str,
        region: &str,
        source: &str,
        endpoints: &[u64],
        extra: &str,
    ) -> Result<()> {
        let tls = self.issue(&Identity::Agent {
            region: region.into(),
            name: name.into(),
        })?;
        let dir = self.dir.path().join(format!("agent-{name}"));
        std::fs::create_dir_all(&dir)?;
        let ids: Vec<u64> = if endpoints.is_empty() {
            self.nodes.keys().copied().collect()
        } else {
            endpoints.to_vec()
        };
        let coordinators: Vec<String> = ids
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|n| format!("\"{}\"", n.addr))
            .collect();
        let config = format!(
            "coordinators = [{}]\nspool_dir = \"{}\"\nsource_address = \"{source}\"\nbatch_size = 50\n{extra}\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            coordinators.join(", "),
            dir.join("spool").display(),
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        );
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))?;
        let netns = self.agent_places.get(name).map(String::as_str);
        let child = crate::role_command_in(netns, "agent", "vantage-agent-under-test")
            .envs(self.env.iter().cloned())
            .args(["run", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting vantage-agent")?;
        self.agents.insert(
            name.to_owned(),
            AgentProc {
                name: name.into(),
                region: region.into(),
                source: source.into(),
                child: Some(child),
            },
        );
        Ok(())
    }

    /// Applies `toml` as checks.toml through node 1.
    pub async fn apply(&self, toml: &str) -> Result<()> {
        self.operator(1)?
            .apply(ApplyRequest {
                source_name: "checks.toml".into(),
                toml: toml.into(),
                dry_run: false,
            })
            .await
            .map_err(|s| anyhow!("apply: {}", s.message()))?;
        Ok(())
    }

    /// Starts one agent in each of [`REGIONS`].
    pub async fn spawn_regions(&mut self) -> Result<()> {
        for (name, region, source) in REGIONS {
            self.spawn_agent(name, region, source, &[]).await?;
        }
        Ok(())
    }

    /// Kills agent `name` with SIGKILL and reaps it.
    pub async fn kill_agent(&mut self, name: &str) -> Result<()> {
        let agent = self
            .agents
            .get_mut(name)
            .ok_or_else(|| anyhow!("no agent {name}"))?;
        if let Some(mut child) = agent.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) agent `name`: a frozen agent
    /// keeps its connections open but sends nothing, like one behind a
    /// dead network path.
    pub fn freeze_agent(&self, name: &str, frozen: bool) -> Result<()> {
        let pid = self
            .agents
            .get(name)
            .and_then(|a| a.child.as_ref())
            .and_then(Child::id)
            .ok_or_else(|| anyhow!("agent {name} is not running"))?;
        crate::measure::signal(pid, if frozen { libc::SIGSTOP } else { libc::SIGCONT })?;
        Ok(())
    }

    /// Process id of agent `name`, while it runs.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.agents
            .get(name)
            .and_then(|a| a.child.as_ref())
            .and_then(Child::id)
    }

    /// Agent `name`'s spool directory.
    pub fn agent_spool(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("agent-{name}/spool"))
    }

    /// What agent `name` logged.
    pub fn agent_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-{name}/stderr.log")))
            .unwrap_or_default()
    }

    /// Process id of node `id`, while it runs.
    pub fn node_pid(&self, id: u64) -> Option<u32> {
        self.nodes
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .and_then(Child::id)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) node `id`: a frozen node keeps
    /// its sockets open and answers nothing, like one cut off by the network.
    pub fn freeze(&self, id: u64, frozen: bool) -> Result<()> {
        let pid = self
            .node_pid(id)
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        crate::measure::signal(pid, if frozen { libc::SIGSTOP } else { libc::SIGCONT })?;
        Ok(())
    }

    /// Kills node `id` with SIGKILL (no graceful shutdown) and reaps it.
    pub async fn kill(&mut self, id: u64) -> Result<()> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no node {id}"))?;
        if let Some(mut child) = node.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Runs `vantagectl <args>` as the test operator against `endpoints`;
    /// returns (exit code, stdout, stderr).
    pub async fn vantagectl(&self, endpoints: &[u64], args: &[&str]) -> (i32, String, String) {
        let output = self
            .vantagectl_command(endpoints, args)
            .stdin(Stdio::null())
            .output()
            .await;
        match output {
            Ok(o) => (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (-1, String::new(), e.to_string()),
        }
    }

    /// `vantagectl` with `args` as the operator, talking to `endpoints`,
    /// not started yet.
    pub fn vantagectl_command(&self, endpoints: &[u64], args: &[&str]) -> tokio::process::Command {
        let endpoints: Vec<String> = endpoints
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|n| n.addr.to_string())
            .collect();
        let pki = self.pki_dir();
        let mut command = crate::role_command("ctl", "vantagectl-under-test");
        command
            .args(args)
            .env("VANTAGE_ENDPOINTS", endpoints.join(","))
            .env("VANTAGE_CA", pki.join("ca.pem"))
            .env("VANTAGE_CERT", pki.join("operator-tester.pem"))
            .env("VANTAGE_KEY", pki.join("operator-tester.key"));
        command
    }

    /// Node `id`'s data directory (Raft log, vote, snapshots).
    pub fn node_data(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}")).join("data")
    }

    /// What node `id` logged (stderr), across restarts.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}/stderr.log")))
            .unwrap_or_default()
    }

    /// A Raft-service client for node `id` with the given credentials.
    pub fn raft_client_as(
        &self,
        id: u64,
        tls: Arc<ReloadingTls>,
    ) -> Result<vantage_proto::v1::raft_service_client::RaftServiceClient<Channel>> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        Ok(
            vantage_proto::v1::raft_service_client::RaftServiceClient::new(transport::channel(
                &node.addr.to_string(),
                tls,
            )?),
        )
    }

    /// An operator client for node `id`.
    pub fn operator(&self, id: u64) -> Result<OperatorServiceClient<Channel>> {
        self.client_as(id, self.operator.clone())
    }

    /// An operator-service client for node `id` using other credentials.
    pub fn client_as(
        &self,
        id: u64,
        tls: Arc<ReloadingTls>,
    ) -> Result<OperatorServiceClient<Channel>> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        Ok(OperatorServiceClient::new(transport::channel(
            &node.addr.to_string(),
            tls,
        )?))
    }

    /// Puts `key` (`agent/REGION/NAME`, `operator/NAME`) on the deny-list
    /// through node `via`.
    pub async fn revoke(&self, via: u64, key: &str) -> Result<()> {
        self.operator(via)?
            .revoke(RevokeRequest { name: key.into() })
            .await
            .with_context(|| format!("revoking {key} through node {via}"))?;
        Ok(())
    }

    /// Node `id`'s view of the cluster, if it answers.
    pub async fn status(&self, id: u64) -> Option<ClusterStatusReply> {
        let mut client = self.operator(id).ok()?;
        let fut = client.cluster_status(ClusterStatusRequest {});
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    /// Node `via`'s incidents: the open ones, or with `all` resolved ones too.
    pub async fn incidents(&self, via: u64, all: bool) -> Option<Vec<IncidentInfo>> {
        let mut client = self.operator(via).ok()?;
        let reply = client
            .list_incidents(ListIncidentsRequest { all })
            .await
            .ok()?;
        Some(reply.into_inner().incidents)
    }

    /// Node `via`'s view of every check (`vantagectl status`).
    pub async fn checks_status(&self, via: u64) -> Option<StatusReply> {
        let mut client = self.operator(via).ok()?;
        Some(
            client
                .status(StatusRequest::default())
                .await
                .ok()?
                .into_inner(),
        )
    }

    /// (verdict, down regions) of `check` as node `via` sees it.
    pub async fn verdict(&self, via: u64, check: &str) -> Option<(String, Vec<String>)> {
        let status = self.checks_status(via).await?;
        let c = status.checks.into_iter().find(|c| c.name == check)?;
        Some((c.verdict, c.down))
    }

    /// Waits until each node in `nodes` sees `check` as `expected`, down
    /// from exactly `down`.
    pub async fn wait_verdict(
        &self,
        nodes: &[u64],
        check: &str,
        expected: &str,
        down: &[&str],
    ) -> Result<()> {
        for via in nodes {
            wait_for(
                &format!("{check} {expected} {down:?} on node {via}"),
                || async {
                    let (v, d) = self.verdict(*via, check).await?;
                    (v == expected && d == down).then_some(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Waits until every node in `ids` names the same leader, itself among
    /// `ids`; returns it.
    pub async fn wait_for_leader(&self, ids: &[u64]) -> Result<u64> {
        wait_for("a leader all nodes agree on", || async {
            let mut leader = None;
            for id in ids {
                let l = self.status(*id).await?.leader_id?;
                if leader.is_some_and(|x| x != l) || !ids.contains(&l) {
                    return None;
                }
                leader = Some(l);
            }
            leader
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) -> Result<()> {
        wait_for(&format!("node {id} to apply index {index}"), || async {
            (self.status(id).await?.applied_index? >= index).then_some(())
        })
        .await
    }
}
