//! `vantagectl cluster` and `vantagectl agents`: membership, status,
//! revocation, through any coordinator.

use anyhow::{Context, Result};
use clap::Subcommand;
use vantage_proto::v1::{
    AddMemberRequest, ClusterMember, ClusterStatusRequest, InitClusterRequest, ListAgentsRequest,
    ListRevokedRequest, MembershipReply, RemoveMemberRequest, RevokeRequest, UnrevokeRequest,
};

use vantage_common::identity::{Identity, valid_label};

use super::{ConnArgs, Format, explain};

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Bootstrap a new cluster on the node reached (once, ever).
    Init {
        /// Initial voters as ID=HOST:PORT (repeatable); default: the node reached alone.
        #[arg(long = "member", value_parser = parse_member)]
        members: Vec<ClusterMember>,
    },
    /// Leader, term, indexes and per-node replication.
    Status,
    /// Add a node: as learner, then voter once caught up.
    Add {
        /// Node id (as in its certificate).
        #[arg(long)]
        id: u64,
        /// Its gRPC address as the others dial it.
        #[arg(long)]
        addr: String,
        /// Leave it a learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node.
    Remove {
        /// Node id.
        #[arg(long)]
        id: u64,
    },
}

/// Agent commands.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Agents with region, version, last seen and assigned check count.
    List,
    /// Refuse one agent's certificates from now on: its live session ends
    /// at its next heartbeat, its results in flight are not applied.
    Revoke {
        /// The agent, as REGION/NAME (as in its certificate).
        #[arg(value_parser = agent_key)]
        agent: String,
    },
    /// Accept a revoked agent again.
    Unrevoke {
        /// The agent, as REGION/NAME (or an entry as `agents revoked` lists it).
        agent: String,
    },
    /// The deny-list: revoked agents and operators.
    Revoked,
}

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Refuse an operator's certificates from now on.
    Revoke {
        /// Operator name (as in its certificate).
        #[arg(value_parser = operator_key)]
        name: String,
    },
    /// Accept a revoked operator again.
    Unrevoke {
        /// Operator name.
        #[arg(value_parser = operator_key)]
        name: String,
    },
}

/// `REGION/NAME` → the deny-list key `agent/REGION/NAME`.
fn agent_key(s: &str) -> Result<String, String> {
    if let Some(id) = s
        .strip_prefix("coordinator")
        .and_then(|rest| rest.strip_prefix(['-', '/']))
    {
        return Err(format!(
            "{s} is a coordinator: remove it with `vantagectl cluster remove --id {id}`, not revoke"
        ));
    }
    match s.split_once('/') {
        Some((region, name)) if valid_label(region) && valid_label(name) => {
            Ok(format!("agent/{region}/{name}"))
        }
        _ => Err(format!(
            "'{s}' is not REGION/NAME (lowercase letters, digits and '-', as in the agent's certificate)"
        )),
    }
}

/// `NAME` → the deny-list key `operator/NAME`.
fn operator_key(s: &str) -> Result<String, String> {
    if valid_label(s) {
        Ok(format!("operator/{s}"))
    } else {
        Err(format!(
            "'{s}' is not an operator name (lowercase letters, digits and '-')"
        ))
    }
}

/// A deny-list entry in words.
fn describe_key(key: &str) -> String {
    match Identity::from_key(key) {
        Ok(Identity::Agent { region, name }) => format!("agent {region}/{name}"),
        Ok(Identity::Operator { name }) => format!("operator {name}"),
        _ => format!("{key} (any agent or operator of that name: revoked before 0.6)"),
    }
}

fn parse_member(s: &str) -> Result<ClusterMember, String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ID=HOST:PORT"))?;
    let id: u64 = id.parse().map_err(|_| format!("'{id}' is not a node id"))?;
    if id == 0 || addr.is_empty() {
        return Err(format!("'{s}' is not ID=HOST:PORT"));
    }
    Ok(ClusterMember {
        id,
        addr: addr.to_owned(),
    })
}

fn print_membership(m: &MembershipReply, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"voters": m.voters, "learners": m.learners})
        ),
        Format::Text => println!("voters: {:?}  learners: {:?}", m.voters, m.learners),
    }
}

/// Runs a cluster command.
pub async fn run_cluster(command: ClusterCommand, conn: &ConnArgs, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!("{at}: {}", explain(&s));
    match command {
        ClusterCommand::Init { members } => {
            client
                .operator
                .init_cluster(InitClusterRequest { members })
                .await
                .map_err(fail)?;
            println!("cluster initialised through {}", client.endpoint);
        }
        ClusterCommand::Add { id, addr, learner } => {
            let req = AddMemberRequest {
                member: Some(ClusterMember { id, addr }),
                learner_only: learner,
            };
            let reply = client.operator.add_member(req).await.map_err(fail)?;
            print_membership(reply.get_ref(), format);
        }
        ClusterCommand::Remove { id } => {
            let reply = client
                .operator
                .remove_member(RemoveMemberRequest { id })
                .await
                .map_err(fail)?;
            print_membership(reply.get_ref(), format);
        }
        ClusterCommand::Status => {
            let s = client
                .operator
                .cluster_status(ClusterStatusRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
            match format {
                Format::Json => {
                    let nodes: Vec<_> = s
                        .nodes
                        .iter()
                        .map(|n| {
                            serde_json::json!({"id": n.id, "addr": n.addr, "voter": n.voter,
                                "matched_index": n.matched_index, "lag": n.lag, "last_contact_ms": n.last_contact_ms})
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"node_id": s.node_id, "leader_id": s.leader_id, "term": s.term,
                            "state": s.state, "last_log_index": s.last_log_index, "commit_index": s.commit_index,
                            "applied_index": s.applied_index, "snapshot_index": s.snapshot_index, "nodes": nodes})
                    );
                }
                Format::Text => {
                    println!(
                        "node {} ({}), leader {}, term {}, last log {}, applied {}, snapshot {}",
                        s.node_id,
                        s.state,
                        opt(s.leader_id),
                        s.term,
                        opt(s.last_log_index),
                        opt(s.applied_index),
                        opt(s.snapshot_index)
                    );
                    println!(
                        "{:<4} {:<24} {:<8} {:>8} {:>6} {:>12}",
                        "ID", "ADDRESS", "ROLE", "MATCHED", "LAG", "CONTACT(ms)"
                    );
                    for n in &s.nodes {
                        println!(
                            "{:<4} {:<24} {:<8} {:>8} {:>6} {:>12}",
                            n.id,
                            n.addr,
                            if n.voter { "voter" } else { "learner" },
                            opt(n.matched_index),
                            opt(n.lag),
                            opt(n.last_contact_ms)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs an agents command.
pub async fn run_agents(command: AgentsCommand, conn: &ConnArgs, format: Format) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!("{at}: {}", explain(&s));
    match command {
        AgentsCommand::List => {
            let reply = client
                .operator
                .list_agents(ListAgentsRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            match format {
                Format::Json => {
                    let agents: Vec<_> = reply
                        .agents
                        .iter()
                        .map(|a| {
                            serde_json::json!({"name": a.name, "region": a.region, "version": a.version,
                                "address": a.address, "connected": a.connected, "last_seen_ms": a.last_seen_ms,
                                "age_s": (reply.now_ms - a.last_seen_ms) / 1000, "assigned_checks": a.assigned_checks,
                                "applied_seq": a.applied_seq, "applied_results": a.applied_results, "controls": a.controls})
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(agents));
                }
                Format::Text => {
                    println!(
                        "{:<20} {:<8} {:<10} {:<10} {:>10} {:>8}",
                        "NAME", "REGION", "VERSION", "STATE", "LAST SEEN", "CHECKS"
                    );
                    for a in &reply.agents {
                        println!(
                            "{:<20} {:<8} {:<10} {:<10} {:>9}s {:>8}",
                            a.name,
                            a.region,
                            a.version,
                            if a.connected { "connected" } else { "gone" },
                            (reply.now_ms - a.last_seen_ms).max(0) / 1000,
                            a.assigned_checks
                        );
                    }
                }
            }
        }
        AgentsCommand::Revoke { agent } => deny(&mut client, &agent, true, fail).await?,
        AgentsCommand::Unrevoke { agent } => {
            // A bare entry (from before 0.6) is passed as listed.
            let key = agent_key(&agent).unwrap_or(agent);
            deny(&mut client, &key, false, fail).await?
        }
        AgentsCommand::Revoked => {
            let names = client
                .operator
                .list_revoked(ListRevokedRequest {})
                .await
                .map_err(fail)?
                .into_inner()
                .names;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&names).context("json")?),
                Format::Text => names.iter().for_each(|n| println!("{}", describe_key(n))),
            }
        }
    }
    Ok(())
}

/// Runs an operators command.
pub async fn run_operators(command: OperatorsCommand, conn: &ConnArgs) -> Result<()> {
    let mut client = conn.connect().await?;
    let at = client.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!("{at}: {}", explain(&s));
    match command {
        OperatorsCommand::Revoke { name } => deny(&mut client, &name, true, fail).await,
        OperatorsCommand::Unrevoke { name } => deny(&mut client, &name, false, fail).await,
    }
}

/// Puts `key` on the deny-list (`refuse`) or takes it off, and says so.
async fn deny(
    client: &mut super::Client,
    key: &str,
    refuse: bool,
    fail: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<()> {
    let name = key.to_owned();
    let done = if refuse {
        let reply = client.operator.revoke(RevokeRequest { name }).await;
        match reply.map_err(fail)?.get_ref().newly_revoked {
            true => "revoked",
            false => "was already revoked",
        }
    } else {
        let reply = client.operator.unrevoke(UnrevokeRequest { name }).await;
        match reply.map_err(fail)?.get_ref().was_revoked {
            true => "accepted again",
            false => "was not revoked",
        }
    };
    println!("{}: {done}", describe_key(key));
    Ok(())
}
