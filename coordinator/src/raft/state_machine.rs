//! The state machine: the replicated [`State`] in memory, snapshots in
//! sled. On restart the last snapshot is loaded and openraft re-applies the
//! committed log after it, so the state is rebuilt without operator help.

use std::io::Cursor;
use std::path::{Path, PathBuf};
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

/// Before 0.7 the snapshot was one JSON document (meta, and the state as an
/// array of numbers) under this key of the `raft_snapshot` sled tree; it is
/// moved to the snapshot file once, at open.
const LEGACY_SNAPSHOT: &[u8] = b"current";
/// The snapshot file in the data directory, and its temporary sibling.
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// First bytes of a snapshot file: then the meta's length (u64, big
/// endian), the meta (JSON), and the serialised state.
const MAGIC: &[u8] = b"VANTAGE-SNAPSHOT 1\n";

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

/// openraft's `RaftStateMachine` over [`Applied`]; the snapshot lives in a
/// file of its own beside the sled log (written whole, then renamed into
/// place), so the log's store never holds or caches it.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    dir: PathBuf,
    snapshot_seq: u64,
}

impl StateMachineStore {
    /// Loads the latest snapshot from `dir` (moving one an earlier build
    /// kept in `db` there first).
    pub async fn open(db: &sled::Db, dir: &Path) -> std::result::Result<Self, StorageError> {
        let store = StateMachineStore {
            applied: Arc::default(),
            dir: dir.to_owned(),
            snapshot_seq: 0,
        };
        store.migrate_legacy(db).await?;
        if let Some(snap) = store.stored()? {
            store.load(&snap).await?;
        }
        Ok(store)
    }

    /// Shared read access to the applied state.
    pub fn applied(&self) -> Replica {
        self.applied.clone()
    }

    async fn migrate_legacy(&self, db: &sled::Db) -> Result<()> {
        let read_err = |e: &sled::Error| StorageIOError::read_snapshot(None, e);
        let tree = db.open_tree("raft_snapshot").map_err(|e| read_err(&e))?;
        let Some(bytes) = tree.get(LEGACY_SNAPSHOT).map_err(|e| read_err(&e))? else {
            return Ok(());
        };
        if !self.dir.join(SNAPSHOT_FILE).exists() {
            let snap: StoredSnapshot = serde_json::from_slice(&bytes)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
            self.store(snap).await?;
        }
        tree.remove(LEGACY_SNAPSHOT).map_err(|e| read_err(&e))?;
        tree.flush_async().await.map_err(|e| read_err(&e))?;
        Ok(())
    }

    fn stored(&self) -> Result<Option<StoredSnapshot>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let bad = |what: &str| {
            StorageIOError::read_snapshot(
                None,
                &std::io::Error::other(format!("{}: {what}", path.display())),
            )
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a vantage snapshot"))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated"))?;
        let len = usize::try_from(u64::from_be_bytes(*len)).map_err(|_| bad("truncated"))?;
        if rest.len() < len {
            return Err(bad("truncated").into());
        }
        let meta = serde_json::from_slice(&rest[..len])
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        // The state is the rest of the file: moved down in place, not copied.
        let mut data = bytes;
        data.drain(..MAGIC.len() + 8 + len);
        Ok(Some(StoredSnapshot { meta, data }))
    }

    /// Writes the snapshot file: a temporary file synced, renamed into
    /// place, the directory synced — a crash leaves the old one or the new.
    /// Hands the snapshot back (it is written from a blocking thread).
    async fn store(&self, snap: StoredSnapshot) -> Result<StoredSnapshot> {
        let sig = Some(snap.meta.signature());
        let meta = serde_json::to_vec(&snap.meta)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let tmp = dir.join(SNAPSHOT_TMP);
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(MAGIC)?;
                f.write_all(&(meta.len() as u64).to_be_bytes())?;
                f.write_all(&meta)?;
                f.write_all(&snap.data)?;
                f.sync_all()?;
                std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
                std::fs::File::open(&dir)?.sync_all()
            };
            write().map(|()| snap)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        written.map_err(|e| StorageIOError::write_snapshot(sig, &e).into())
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
        let snap = self.store(snap).await?;
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
        let snap = self.store(snap).await?;
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
    async fn a_snapshot_stored_by_an_earlier_build_is_moved_to_the_file() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let db = match sled::open(dir.path().join("raft.sled")) {
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
        for _ in 0..2 {
            // Moved at the first open, read from the file at the second.
            let store = match StateMachineStore::open(&db, dir.path()).await {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            let applied = store.applied();
            assert!(applied.read().await.state.revoked.contains("agent/ru/old"));
            let tree = db.open_tree("raft_snapshot").map_err(|e| e.to_string());
            assert!(matches!(tree.map(|t| t.get(LEGACY_SNAPSHOT)), Ok(Ok(None))));
            assert!(dir.path().join(SNAPSHOT_FILE).exists());
        }
        // A damaged file is an error that names it, not an empty state.
        let cut = std::fs::read(dir.path().join(SNAPSHOT_FILE)).map(|b| b[..30].to_vec());
        assert!(matches!(
            cut.map(|b| std::fs::write(dir.path().join(SNAPSHOT_FILE), b)),
            Ok(Ok(()))
        ));
        match StateMachineStore::open(&db, dir.path()).await {
            Ok(_) => panic!("a truncated snapshot was accepted"),
            Err(e) => assert!(e.to_string().contains("truncated"), "{e}"),
        }
    }
}
