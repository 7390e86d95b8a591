//! The replicated agent registry: who is connected, from where, and how far
//! each agent's results have been applied (for exactly-once application of
//! resent results).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::StoredResult;

/// One agent as the cluster knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Region from its certificate.
    pub region: String,
    /// Software version it reported.
    pub version: String,
    /// Address it connected from.
    pub address: String,
    /// Whether it holds a session with the leader.
    pub connected: bool,
    /// First time seen (leader clock, ms since the epoch, from the log).
    pub first_seen_ms: i64,
    /// Last sign of life (hello, heartbeat refresh, results).
    pub last_seen_ms: i64,
    /// Identity of its spool.
    pub spool_id: u64,
    /// Highest result seq of that spool applied.
    pub applied_seq: u64,
    /// Results of that spool applied (each exactly once).
    pub applied_results: u64,
    /// Latest result of each of its control checks.
    #[serde(default)]
    pub controls: BTreeMap<String, StoredResult>,
}

/// An agent came (back): registers it, or updates where it is. A new spool
/// (the agent lost its disk) restarts its sequence numbers.
pub fn hello(
    record: Option<&mut AgentRecord>,
    region: &str,
    version: &str,
    address: &str,
    spool_id: u64,
    at_ms: i64,
) -> Option<AgentRecord> {
    match record {
        Some(r) => {
            if r.spool_id != spool_id {
                r.spool_id = spool_id;
                r.applied_seq = 0;
                r.applied_results = 0;
            }
            r.region = region.to_owned();
            r.version = version.to_owned();
            r.address = address.to_owned();
            r.connected = true;
            r.last_seen_ms = r.last_seen_ms.max(at_ms);
            None
        }
        None => Some(AgentRecord {
            region: region.to_owned(),
            version: version.to_owned(),
            address: address.to_owned(),
            connected: true,
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            spool_id,
            applied_seq: 0,
            applied_results: 0,
            controls: BTreeMap::new(),
        }),
    }
}
