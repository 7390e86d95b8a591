//! `vantagectl cluster` and `vantagectl agents`: membership, status,
//! revocation, through any coordinator.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use vantage_proto::v1::{
    AddMemberRequest, ClusterMember, ClusterStatusRequest, InitClusterRequest, ListAgentsRequest,
    ListRevokedRequest, MembershipReply, RemoveMemberRequest, RevokeRequest, UnrevokeRequest,
};

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
    /// Refuse an agent's (or operator's) certificate from now on.
    Revoke {
        /// Agent or operator name.
        name: String,
    },
    /// Accept a revoked certificate name again.
    Unrevoke {
        /// Agent or operator name.
        name: String,
    },
    /// List revoked names.
    Revoked,
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
        AgentsCommand::Revoke { name } => {
            if name.is_empty() {
                bail!("a name is required");
            }
            let reply = client
                .operator
                .revoke(RevokeRequest { name: name.clone() })
                .await
                .map_err(fail)?;
            println!(
                "{name}: {}",
                if reply.get_ref().newly_revoked {
                    "revoked"
                } else {
                    "was already revoked"
                }
            );
        }
        AgentsCommand::Unrevoke { name } => {
            let reply = client
                .operator
                .unrevoke(UnrevokeRequest { name: name.clone() })
                .await
                .map_err(fail)?;
            println!(
                "{name}: {}",
                if reply.get_ref().was_revoked {
                    "accepted again"
                } else {
                    "was not revoked"
                }
            );
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
                Format::Text => names.iter().for_each(|n| println!("{n}")),
            }
        }
    }
    Ok(())
}
