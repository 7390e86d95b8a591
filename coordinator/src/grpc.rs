//! The gRPC services of a coordinator, each behind role checks taken from
//! the caller's certificate and given only the handles it needs.
//!
//! - `auth.rs` — who may call what; refusals are logged with the caller.
//! - `peer_service.rs` — `RaftService`, coordinators only.
//! - `operator.rs` — `OperatorService`, operators only, by area under
//!   `operator/` (checks, incidents, alerts, cluster).
//! - `agent_service.rs` — `AgentService` sessions, agents only.

pub mod agent_service;
pub mod auth;
pub mod operator;
pub mod peer_service;

pub use agent_service::AgentApi;
pub use operator::OperatorApi;
pub use peer_service::PeerApi;

use tonic::Status;

use crate::node::ProposeError;

impl From<ProposeError> for Status {
    /// The one mapping of a failed proposal: no leader is `unavailable`
    /// (retry), a refused one `failed_precondition`, a broken node
    /// `internal`.
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NoLeader(m) => Status::unavailable(m),
            ProposeError::Refused(m) => Status::failed_precondition(m),
            ProposeError::Fatal(m) => Status::internal(m),
        }
    }
}
