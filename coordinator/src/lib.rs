//! # vantage-coordinator
//!
//! The Raft-replicated control plane and the `vantagectl` operator CLI.
//!
//! ## Layout
//! Pure logic (no I/O):
//! - [`declared`] — checks, channels and routes from `checks.toml`:
//!   parsing and validation into typed values (kinds and parameters from
//!   `vantage_common::spec`, durations, severities), diff.
//! - [`state`] — the replicated state and the commands that change it:
//!   agents, results, verdicts, vantage health, incidents, alert planning,
//!   silences, the outbox (one file each under `state/`), and snapshot
//!   migration.
//! - [`verdict`] — the cross-region vote: region streaks, quorum.
//! - [`notification`] — what a notification is: severity, event,
//!   idempotency key, the message every sink renders.
//! - [`assignment`] — which agent runs which check (rendezvous hashing).
//!
//! Edges:
//! - [`alert`] — the six sinks, one file each: validate, send; nothing of
//!   Raft or the replicated state.
//! - [`raft`] — openraft adapters: `types`, `log_store` and `state_machine`
//!   over sled, `network` over the mTLS gRPC `RaftService`.
//! - [`node`] — one coordinator's parts and the narrow handles handed out
//!   (the applied state, the proposer that writes through Raft from any
//!   node, the sessions); the leader's housekeeping and its sender of the
//!   outbox.
//! - [`grpc`] — `RaftService`, `OperatorService` (by area under
//!   `grpc/operator/`) and `AgentService`, with role checks.
//! - [`sessions`] — agent sessions held by the leader.
//! - [`confirm`] — fast confirmation: second opinions and retries.
//! - [`metrics`] — Prometheus metrics on the HTTP port.
//! - [`selection`] — which checks a status view shows: filters, pages.
//! - [`web`] — the status page and JSON status API on the HTTP port.
//! - [`config`] — `coordinator.toml`.
//! - [`daemon`] — the `vantage-coordinator` process and the composition
//!   root: it builds the node, gives each service and loop its handles and
//!   serves them. Nothing imports it; apart from it, modules import each
//!   other without circles (`tests/tests/layout.rs` checks).
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
pub mod notification;
pub mod raft;
pub mod remote_write;
pub mod selection;
pub mod sessions;
pub mod state;
pub mod verdict;
pub mod web;
