//! # vantage-proto
//!
//! The wire contract between agents, coordinators and `vantagectl`.
//!
//! ## Layout
//! - `proto/vantage/v1/*.proto` — the source of truth, one file per concern
//!   (`probe.proto`: outcomes of checks; `coordinator.proto`: the Raft and
//!   operator services; `agent.proto`: the agent session).
//! - `build.rs` — compiles them with protox + tonic-prost-build; no system
//!   `protoc` is needed.
//! - [`v1`] — the generated prost messages (and tonic services, as they are
//!   added).

/// Version 1 of the vantage protocol.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod v1 {
    tonic::include_proto!("vantage.v1");
}
