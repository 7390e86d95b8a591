//! # vantage-coordinator
//!
//! The Raft-replicated control plane and the `vantagectl` operator CLI.
//!
//! ## Layout
//! - [`assignment`] — which agent runs which check (rendezvous hashing, pure).
//! - [`config`] — `coordinator.toml`.
//! - [`node`] — one coordinator: Raft start-up, serving, writes forwarded
//!   to the leader.
//! - [`daemon`] — the `vantage-coordinator` process (`run`, `dev`).
//! - [`ctl`] — the `vantagectl` CLI (certs, cluster, agents).
//! - [`grpc`] — `RaftService`, `OperatorService` and `AgentService` with
//!   role checks.
//! - [`verdict`] — the cross-region vote (pure): region streaks, quorum.
//! - [`sessions`] — agent sessions on the leader and its housekeeping loop.
//! - [`declared`] — checks, channels and routes from `checks.toml`:
//!   parsing, validation, diff (pure).
//! - [`state`] — the replicated state and the commands that change it (pure).
//! - [`raft`] — openraft adapters: `types`, `log_store` and `state_machine`
//!   over sled, `network` over the mTLS gRPC `RaftService`.

pub mod assignment;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod declared;
pub mod grpc;
pub mod node;
pub mod raft;
pub mod sessions;
pub mod state;
pub mod verdict;
