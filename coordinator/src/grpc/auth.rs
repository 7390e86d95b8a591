//! Authorisation: the role a service needs, checked against the identity
//! in the caller's certificate and the replicated deny-list.

use tonic::{Request, Status};
use vantage_common::identity::Identity;
use vantage_common::transport::{Peer, peer};

use crate::node::Replica;

/// Roles a service can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Another coordinator (Raft traffic, forwarded writes).
    Coordinator,
    /// An operator (`vantagectl`).
    Operator,
    /// A probing agent.
    Agent,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Operator => "operator",
            Role::Agent => "agent",
        }
    }

    fn admits(self, identity: &Identity) -> bool {
        matches!(
            (self, identity),
            (Role::Coordinator, Identity::Coordinator { .. })
                | (Role::Operator, Identity::Operator { .. })
                | (Role::Agent, Identity::Agent { .. })
        )
    }
}

/// The caller of `request` if it has `role` and is not revoked.
pub async fn authorize<T>(
    applied: &Replica,
    request: &Request<T>,
    role: Role,
    method: &str,
) -> Result<Peer, Status> {
    let Some(caller) = peer(request).cloned() else {
        tracing::warn!(method, "refused call without a peer identity");
        return Err(Status::unauthenticated("no client certificate identity"));
    };
    if !role.admits(&caller.identity) {
        tracing::warn!(method, peer = %caller.addr, identity = %caller.identity, "refused: wrong role");
        return Err(Status::permission_denied(format!(
            "{} certificates may not call {method} ({} certificates only; this one is {})",
            caller.identity.role(),
            role.name(),
            caller.identity
        )));
    }
    if applied.read().await.state.is_revoked(&caller.identity) {
        tracing::warn!(method, peer = %caller.addr, identity = %caller.identity, "refused: revoked");
        return Err(Status::permission_denied(format!(
            "{} is revoked",
            caller.identity
        )));
    }
    Ok(caller)
}
