//! # vantage-coordinator
//!
//! The Raft-replicated control plane and the `vantagectl` operator CLI.
//!
//! ## Layout
//! - [`state`] — the replicated state and the commands that change it (pure).
//! - [`raft`] — openraft adapters: `types`, `log_store` and `state_machine`
//!   over sled, `network` over the mTLS gRPC `RaftService`.

pub mod raft;
pub mod state;
