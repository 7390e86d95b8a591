//! openraft's network over the mTLS gRPC `RaftService`: one lazily
//! connected client per peer, openraft messages framed as JSON. Records the
//! last successful contact with each peer for `cluster status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use vantage_common::tls::ReloadingTls;
use vantage_common::transport;
use vantage_proto::v1::RaftPayload;
use vantage_proto::v1::raft_service_client::RaftServiceClient;

use super::types::{Node, NodeId, TypeConfig};

/// When each peer last answered a Raft RPC.
pub type LastContact = Arc<Mutex<HashMap<NodeId, Instant>>>;

/// Creates peer clients.
#[derive(Debug, Clone)]
pub struct Network {
    tls: Arc<ReloadingTls>,
    last_contact: LastContact,
}

impl Network {
    /// A network dialing with `tls`.
    pub fn new(tls: Arc<ReloadingTls>) -> Self {
        Network {
            tls,
            last_contact: LastContact::default(),
        }
    }

    /// Last successful contact per peer.
    pub fn last_contact(&self) -> LastContact {
        self.last_contact.clone()
    }
}

/// A client for one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    client: Option<RaftServiceClient<Channel>>,
    last_contact: LastContact,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let client = match transport::channel(&node.addr, self.tls.clone()) {
            Ok(channel) => {
                Some(RaftServiceClient::new(channel).max_decoding_message_size(64 << 20))
            }
            Err(e) => {
                tracing::warn!(target, addr = %node.addr, error = %e, "invalid peer address");
                None
            }
        };
        PeerClient {
            target,
            client,
            last_contact: self.last_contact.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

/// Frames a serde value for the wire.
pub fn encode<T: Serialize>(value: &T) -> Result<RaftPayload, serde_json::Error> {
    Ok(RaftPayload {
        json: serde_json::to_vec(value)?,
        data: Vec::new(),
    })
}

/// Reads a framed serde value.
pub fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&payload.json)
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        req: &Req,
        data: Vec<u8>,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other("no usable address"),
            )));
        };
        let mut payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        payload.data = data;
        let mut request = tonic::Request::new(payload);
        request.set_timeout(ttl);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(reply.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if let Ok(mut contacts) = self.last_contact.lock() {
            contacts.insert(self.target, Instant::now());
        }
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Append, &rpc, Vec::new(), option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        // The chunk travels as bytes beside the JSON, not inside it as an
        // array of numbers (3.5 times its size, slow to parse).
        let data = std::mem::take(&mut rpc.data);
        self.call(Method::Snapshot, &rpc, data, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, Vec::new(), option.hard_ttl())
            .await
    }
}
