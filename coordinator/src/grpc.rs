//! The gRPC services of a coordinator, each behind role checks taken from
//! the caller's certificate.
//!
//! - `auth.rs` — who may call what; refusals are logged with the caller.
//! - `peer_service.rs` — `RaftService`, coordinators only.
//! - `operator_service.rs` — `OperatorService`, operators only;
//!   `operator_alerts.rs` holds its silences and `alerts test`.
//! - `agent_service.rs` — `AgentService` sessions, agents only.

pub mod agent_service;
pub mod auth;
pub mod operator_alerts;
pub mod operator_service;
pub mod peer_service;

pub use agent_service::AgentApi;
pub use operator_service::OperatorApi;
pub use peer_service::PeerApi;
