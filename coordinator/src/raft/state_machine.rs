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

/// Before 0.7: meta and data in one JSON document (the data as an array of
/// numbers, four times its size); read once, then replaced.
const LEGACY_SNAPSHOT: &[u8] = b"current";
/// The snapshot's meta (JSON) and its data (raw), written in one batch.
const SNAPSHOT_META: &[u8] = b"meta";
const SNAPSHOT_DATA: &[u8] = b"data";

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
        let read = |key: &[u8]| {
            self.snapshots
                .get(key)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))
        };
        if let (Some(meta), Some(data)) = (read(SNAPSHOT_META)?, read(SNAPSHOT_DATA)?) {
            let meta = serde_json::from_slice(&meta)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
            return Ok(Some(StoredSnapshot {
                meta,
                data: data.to_vec(),
            }));
        }
        let Some(bytes) = read(LEGACY_SNAPSHOT)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }

    async fn store(&self, snap: &StoredSnapshot) -> Result<()> {
        let sig = Some(snap.meta.signature());
        let meta = serde_json::to_vec(&snap.meta)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_META, meta);
        batch.insert(SNAPSHOT_DATA, snap.data.as_slice());
        batch.remove(LEGACY_SNAPSHOT);
        self.snapshots
            .apply_batch(batch)
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
        let snap = StoredSnapshot { meta, data };
        self.store(&snap).await?;
        self.applied.write().await.snapshot = SnapshotStats {
            bytes: snap.data.len() as u64,
            index: last_log_id.map_or(0, |l| l.index),
            build_ms: started.elapsed().as_millis() as u64,
            install_ms: 0,
        };
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_stored_by_an_earlier_build_is_read_and_replaced() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let db = match sled::open(dir.path()) {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        };
        let mut state = State::default();
        state.apply(&crate::state::Command::Revoke {
            name: "agent/ru/old".into(),
        });
        let legacy = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "legacy".into(),
            },
            data: serde_json::to_vec(&state).unwrap_or_default(),
        };
        let tree = db.open_tree("raft_snapshot").map_err(|e| e.to_string());
        let written = tree.and_then(|t| {
            let bytes = serde_json::to_vec(&legacy).map_err(|e| e.to_string())?;
            t.insert(LEGACY_SNAPSHOT, bytes).map_err(|e| e.to_string())
        });
        assert!(written.is_ok(), "{written:?}");
        let mut store = match StateMachineStore::open(&db).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(
            store
                .applied()
                .read()
                .await
                .state
                .revoked
                .contains("agent/ru/old")
        );
        // Stored again in the current layout, the legacy document gone.
        let rebuilt = store.build_snapshot().await;
        assert!(rebuilt.is_ok());
        let tree = store.snapshots.clone();
        assert!(matches!(tree.get(LEGACY_SNAPSHOT), Ok(None)));
        assert!(matches!(tree.get(SNAPSHOT_DATA), Ok(Some(_))));
        let reopened = match StateMachineStore::open(&db).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(
            reopened
                .applied()
                .read()
                .await
                .state
                .revoked
                .contains("agent/ru/old")
        );
    }
}
