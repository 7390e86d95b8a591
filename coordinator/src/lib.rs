//! # vantage-coordinator
//!
//! The Raft-replicated control plane and the `vantagectl` operator CLI.
//!
//! ## Layout
//! Pure logic (no I/O):
//! - [`declared`] — checks, channels and routes from `checks.toml`:
//!   parsing, validation, diff.
//! - [`state`] — the replicated state and the commands that change it
//!   (`state/agents.rs`, `results.rs`, `verdicts.rs`, `incidents.rs`).
//! - [`verdict`] — the cross-region vote: region streaks, quorum.
//! - [`assignment`] — which agent runs which check (rendezvous hashing).
//!
//! Edges:
//! - [`alert`] — the six sinks (one file each) and the leader's delivery
//!   loop over the replicated outbox.
//! - [`raft`] — openraft adapters: `types`, `log_store` and `state_machine`
//!   over sled, `network` over the mTLS gRPC `RaftService`.
//! - [`node`] — one coordinator: Raft start-up, serving, writes forwarded
//!   to the leader, the leader's housekeeping loop.
//! - [`grpc`] — `RaftService`, `OperatorService` and `AgentService` with
//!   role checks.
//! - [`sessions`] — agent sessions held by the leader.
//! - [`metrics`] — Prometheus metrics on the HTTP port.
//! - [`web`] — the status page and JSON status API on the HTTP port.
//! - [`confirm`] — fast confirmation: second opinions and retries.
//! - [`config`] — `coordinator.toml`.
//! - [`daemon`] — the `vantage-coordinator` process (`run`, `dev`).
//! - [`ctl`] — the `vantagectl` CLI (certs, cluster, apply/checks/results,
//!   status/incidents, agents).

pub mod alert;
pub mod assignment;
pub mod config;
pub mod confirm;
pub mod ctl;
pub mod daemon;
pub mod declared;
pub mod grpc;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod sessions;
pub mod state;
pub mod verdict;
pub mod web;
