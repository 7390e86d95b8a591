//! openraft type configuration of the coordinator cluster.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

/// Raft node id (the `<node-id>` of `spiffe://vantage/coordinator/<node-id>`).
pub type NodeId = u64;

/// What the cluster knows about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `host:port` of its gRPC listener.
    pub addr: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// The coordinator's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        Node = Node,
        SnapshotData = tokio::fs::File,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// Storage errors.
pub type StorageError = openraft::StorageError<NodeId>;
/// Snapshot payload.
pub type SnapshotData = tokio::fs::File;
