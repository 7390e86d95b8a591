//! Raft: openraft over sled, talking over the mTLS gRPC `RaftService`.
//!
//! - `types.rs` — the openraft type configuration (`Command` in, `CommandResult` out).
//! - `log_store.rs` — log, vote and commit index in sled.
//! - `state_machine.rs` — the replicated state in memory, snapshots in sled.
//! - `network.rs` — openraft's network over gRPC, one client per peer.

// openraft fixes the error types of its storage traits (StorageError is
// large); the helpers here return the same type.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod segments;
pub mod state_machine;
pub mod types;
