//! The state machine: the replicated [`State`] in memory, snapshots in
//! sled. On restart the last snapshot is loaded and openraft re-applies the
//! committed log after it, so the state is rebuilt without operator help.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::types::{Entry, Node, NodeId, SnapshotData, StorageError, TypeConfig};
use crate::state::{CommandResult, State, migrate};

const SNAPSHOT: &[u8] = b"current";

type Result<T> = std::result::Result<T, StorageError>;

/// A snapshot as stored: its meta and the serialised state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// The applied state, readable by the services.
#[derive(Debug, Default)]
pub struct Applied {
    /// Last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// Membership as of the last applied entry.
    pub membership: StoredMembership<NodeId, Node>,
    /// The replicated state.
    pub state: State,
    /// The latest snapshot built or installed here.
    pub snapshot: SnapshotStats,
}

/// Figures of the latest snapshot (the `vantage_raft_snapshot_*` metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct SnapshotStats {
    /// Its size as stored and shipped.
    pub bytes: u64,
    /// Log index it covers.
    pub index: u64,
    /// Time to build it here (0: installed from the leader).
    pub build_ms: u64,
    /// Time to install it here (0: built here).
    pub install_ms: u64,
}

/// The applied replicated state of a node, for reading: the handle the
/// services and loops are given.
pub type Replica = Arc<RwLock<Applied>>;

/// openraft's `RaftStateMachine` over [`Applied`].
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    snapshots: sled::Tree,
    snapshot_seq: u64,
}

impl StateMachineStore {
    /// Opens the snapshot tree of `db` and loads the latest snapshot.
    pub async fn open(db: &sled::Db) -> std::result::Result<Self, StorageError> {
        let snapshots = db
            .open_tree("raft_snapshot")
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let store = StateMachineStore {
            applied: Arc::default(),
            snapshots,
            snapshot_seq: 0,
        };
        if let Some(snap) = store.stored()? {
            store.load(&snap).await?;
        }
        Ok(store)
    }

    /// Shared read access to the applied state.
    pub fn applied(&self) -> Replica {
        self.applied.clone()
    }

    fn stored(&self) -> Result<Option<StoredSnapshot>> {
        let Some(bytes) = self
            .snapshots
            .get(SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }

    async fn store(&self, snap: &StoredSnapshot) -> Result<()> {
        let sig = Some(snap.meta.signature());
        let bytes = serde_json::to_vec(snap)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        self.snapshots
            .insert(SNAPSHOT, bytes)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        self.snapshots
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        Ok(())
    }

    async fn load(&self, snap: &StoredSnapshot) -> Result<()> {
        let sig = Some(snap.meta.signature());
        let state = migrate::load(&snap.data).map_err(|e| {
            StorageIOError::read_snapshot(sig, &std::io::Error::other(e.to_string()))
        })?;
        let mut applied = self.applied.write().await;
        applied.last_applied = snap.meta.last_log_id;
        applied.membership = snap.meta.last_membership.clone();
        applied.state = state;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        let (data, last_log_id, membership) = {
            let applied = self.applied.read().await;
            let data = serde_json::to_vec(&applied.state)
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            (data, applied.last_applied, applied.membership.clone())
        };
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("--{}", self.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        self.store(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .await?;
        self.applied.write().await.snapshot = SnapshotStats {
            bytes: data.len() as u64,
            index: last_log_id.map_or(0, |l| l.index),
            build_ms: started.elapsed().as_millis() as u64,
            install_ms: 0,
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let applied = self.applied.read().await;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.write().await;
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Unchanged,
                EntryPayload::Normal(command) => applied.state.apply(&command),
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Changed
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<SnapshotData>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        self.load(&snap).await?;
        self.store(&snap).await?;
        self.applied.write().await.snapshot = SnapshotStats {
            bytes: snap.data.len() as u64,
            index: meta.last_log_id.map_or(0, |l| l.index),
            build_ms: 0,
            install_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            bytes = snap.data.len(),
            index = meta.last_log_id.map_or(0, |l| l.index),
            took_ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.stored()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
