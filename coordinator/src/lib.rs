//! # vantage-coordinator
//!
//! The Raft-replicated control plane: agent sessions, the cross-region vote,
//! incidents and alert delivery, and the `vantagectl` operator CLI.
//!
//! ## Layout
//! Built up by the coordinator issues; the planned shape (see DESIGN.md):
//! `raft/` (openraft adapters over sled), `grpc/` (agent, operator and peer
//! services), `verdict.rs` (the pure cross-region vote), `incident.rs`,
//! `alerts/` (one file per sink).
//!
//! Today it re-exports the shared outcome types so that the workspace
//! builds against one definition of a probe result.

pub use vantage_common::{FailureClass, Outcome, Status};
