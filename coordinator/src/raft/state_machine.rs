//! The state machine: the replicated [`State`] in memory, snapshots in a
//! file beside the sled log. On restart the last snapshot is loaded and
//! openraft re-applies the committed log after it, so the state is rebuilt
//! without operator help.
//!
//! A snapshot file is a header (magic, the meta's length as u64 big
//! endian, the meta as JSON) and the state as records (`state/stream.rs`).
//! It is written, shipped to followers in chunks, received and loaded as a
//! stream: no copy of it is ever held in memory.

use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::RwLock;

use super::types::{Entry, Node, NodeId, SnapshotData, StorageError, TypeConfig};
use crate::state::{CommandResult, State, migrate, stream};

/// Before 0.7 the snapshot was one JSON document (meta, and the state as an
/// array of numbers) under this key of the `raft_snapshot` sled tree; it is
/// moved to the snapshot file once, at open.
const LEGACY_SNAPSHOT: &[u8] = b"current";
/// The snapshot file in the data directory; its temporary siblings while
/// one is built, received from the leader, or copied in.
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SNAPSHOT_RECV: &str = "snapshot.recv";
const SNAPSHOT_COPY: &str = "snapshot.copy";
/// First bytes of a snapshot file holding the state as records.
const MAGIC: &[u8] = b"VANTAGE-SNAPSHOT 2\n";
/// First bytes of one holding it as one JSON document (0.7).
const MAGIC_DOCUMENT: &[u8] = b"VANTAGE-SNAPSHOT 1\n";
/// Both magics are this long.
const MAGIC_LEN: usize = MAGIC.len();
/// Buffer of the file reader and writer.
const IO_BUFFER: usize = 1 << 20;

type Result<T> = std::result::Result<T, StorageError>;
type Meta = SnapshotMeta<NodeId, Node>;

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

impl Applied {
    /// Takes a snapshot's state as the applied one.
    fn restore(&mut self, meta: &Meta, state: State) {
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.state = state;
    }
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
    /// What the snapshot file in place covers. A build runs beside the
    /// state machine and may finish after a newer snapshot was installed:
    /// files are moved into place under this lock, never over a newer one.
    in_place: Arc<std::sync::Mutex<Option<LogId<NodeId>>>>,
}

/// A snapshot file that cannot be used, with its path.
fn bad_file(path: &Path, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{}: {what}", path.display()))
}

/// Reads a snapshot file's header: its meta, and whether the state follows
/// as records (else as one JSON document). Leaves `file` after the header.
fn read_header(file: &mut impl Read, path: &Path) -> std::io::Result<(Meta, bool)> {
    let mut magic = [0u8; MAGIC_LEN];
    let mut len = [0u8; 8];
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad_file(path, "truncated"),
        _ => e,
    };
    file.read_exact(&mut magic).map_err(eof)?;
    let records = match &magic[..] {
        m if m == MAGIC => true,
        m if m == MAGIC_DOCUMENT => false,
        _ => return Err(bad_file(path, "not a vantage snapshot")),
    };
    file.read_exact(&mut len).map_err(eof)?;
    let len = u64::from_be_bytes(len);
    if len > 1 << 30 {
        return Err(bad_file(path, "not a vantage snapshot"));
    }
    let mut meta = Vec::new();
    file.take(len).read_to_end(&mut meta)?;
    if (meta.len() as u64) < len {
        return Err(bad_file(path, "truncated"));
    }
    let meta = serde_json::from_slice(&meta).map_err(|e| bad_file(path, e))?;
    Ok((meta, records))
}

/// Reads a snapshot file: its meta and state (`path` names it in errors).
fn read_file(file: &mut std::fs::File, path: &Path) -> std::io::Result<(Meta, State)> {
    let mut file = BufReader::with_capacity(IO_BUFFER, file);
    let (meta, records) = read_header(&mut file, path)?;
    let state = if records {
        stream::read(&mut file)
    } else {
        let mut document = Vec::new();
        file.read_to_end(&mut document)?;
        migrate::load(&document)
    };
    Ok((meta, state.map_err(|e| bad_file(path, e))?))
}

/// Writes a snapshot file at `path` (a temporary name), synced; returns
/// it open.
fn write_tmp(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut out = BufWriter::with_capacity(IO_BUFFER, file);
    body(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file)
}

/// Moves the finished snapshot file `from` into place (renamed, the
/// directory synced: a crash leaves the old one or the new) unless the
/// one there covers more of the log; then `from` is removed (an open
/// handle still reads it). Returns whether it was placed.
fn place(
    in_place: &std::sync::Mutex<Option<LogId<NodeId>>>,
    dir: &Path,
    from: &Path,
    covers: Option<LogId<NodeId>>,
) -> std::io::Result<bool> {
    let mut current = in_place
        .lock()
        .map_err(|_| std::io::Error::other("snapshot lock poisoned"))?;
    if *current > covers {
        std::fs::remove_file(from)?;
        return Ok(false);
    }
    std::fs::rename(from, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    *current = covers;
    Ok(true)
}

/// Writes a header.
fn write_header(out: &mut dyn Write, magic: &[u8], meta: &Meta) -> std::io::Result<()> {
    let meta = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    out.write_all(magic)?;
    out.write_all(&(meta.len() as u64).to_be_bytes())?;
    out.write_all(&meta)
}

/// Runs blocking file work off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
}

impl StateMachineStore {
    /// Loads the latest snapshot from `dir` (moving one an earlier build
    /// kept in `db` there first).
    pub async fn open(db: &sled::Db, dir: &Path) -> std::result::Result<Self, StorageError> {
        let store = StateMachineStore {
            applied: Arc::default(),
            dir: dir.to_owned(),
            snapshot_seq: 0,
            in_place: Arc::default(),
        };
        store.migrate_legacy(db).await?;
        let path = dir.join(SNAPSHOT_FILE);
        if path.exists() {
            let (meta, state) =
                blocking(move || read_file(&mut std::fs::File::open(&path)?, &path))
                    .await
                    .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
            if let Ok(mut in_place) = store.in_place.lock() {
                *in_place = meta.last_log_id;
            }
            store.applied.write().await.restore(&meta, state);
        }
        Ok(store)
    }

    /// Shared read access to the applied state.
    pub fn applied(&self) -> Replica {
        self.applied.clone()
    }

    async fn migrate_legacy(&self, db: &sled::Db) -> Result<()> {
        /// The legacy record.
        #[derive(serde::Deserialize)]
        struct StoredSnapshot {
            meta: Meta,
            data: Vec<u8>,
        }
        let read_err = |e: &sled::Error| StorageIOError::read_snapshot(None, e);
        let tree = db.open_tree("raft_snapshot").map_err(|e| read_err(&e))?;
        let Some(bytes) = tree.get(LEGACY_SNAPSHOT).map_err(|e| read_err(&e))? else {
            return Ok(());
        };
        if !self.dir.join(SNAPSHOT_FILE).exists() {
            let snap: StoredSnapshot = serde_json::from_slice(&bytes)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
            let sig = Some(snap.meta.signature());
            let (dir, in_place) = (self.dir.clone(), self.in_place.clone());
            blocking(move || {
                let tmp = dir.join(SNAPSHOT_COPY);
                write_tmp(&tmp, |out| {
                    write_header(out, MAGIC_DOCUMENT, &snap.meta)?;
                    out.write_all(&snap.data)
                })?;
                place(&in_place, &dir, &tmp, snap.meta.last_log_id).map(drop)
            })
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        }
        tree.remove(LEGACY_SNAPSHOT).map_err(|e| read_err(&e))?;
        tree.flush_async().await.map_err(|e| read_err(&e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        // Taken under a read lock (the state as of `last_log_id`), then
        // written to the file while entries apply: a check changed meanwhile
        // is copied first (`stream::Frozen`).
        let applied = self.applied.clone().read_owned().await;
        let last_log_id = applied.last_applied;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("--{}", self.snapshot_seq),
        };
        let meta = Meta {
            last_log_id,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let sig = Some(meta.signature());
        let (dir, in_place) = (self.dir.clone(), self.in_place.clone());
        let header = meta.clone();
        let (file, bytes) = blocking(move || {
            let frozen = stream::freeze(&applied.state)?;
            drop(applied);
            let tmp = dir.join(SNAPSHOT_TMP);
            let mut file = write_tmp(&tmp, |out| {
                write_header(out, MAGIC, &header)?;
                frozen.write(&mut *out)
            })?;
            // Shipped from the handle even when a newer one took its place.
            place(&in_place, &dir, &tmp, header.last_log_id)?;
            let bytes = file.metadata()?.len();
            file.rewind()?;
            Ok((file, bytes))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        self.applied.write().await.snapshot = SnapshotStats {
            bytes,
            index: last_log_id.map_or(0, |l| l.index),
            build_ms: started.elapsed().as_millis() as u64,
            install_ms: 0,
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
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
        // Read back at install: opened for both.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(SNAPSHOT_RECV))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        mut snapshot: Box<SnapshotData>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let sig = Some(meta.signature());
        snapshot
            .flush()
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let mut file = snapshot.into_std().await;
        // Loaded before it replaces the snapshot here: a damaged one
        // replaces nothing.
        let (dir, in_place) = (self.dir.clone(), self.in_place.clone());
        let covers = meta.last_log_id;
        let (bytes, state) = blocking(move || {
            file.rewind()?;
            let path = dir.join(SNAPSHOT_RECV);
            let (_, state) = read_file(&mut file, &path)?;
            let received = std::fs::metadata(&path).ok();
            let ours = file.metadata()?;
            if received.is_some_and(|r| (r.dev(), r.ino()) == (ours.dev(), ours.ino())) {
                // Received here in chunks: moved into place.
                file.sync_all()?;
                place(&in_place, &dir, &path, covers)?;
            } else {
                // Handed over whole (a file elsewhere): copied.
                file.rewind()?;
                let copy = dir.join(SNAPSHOT_COPY);
                write_tmp(&copy, |out| std::io::copy(&mut file, out).map(drop))?;
                place(&in_place, &dir, &copy, covers)?;
            }
            Ok((ours.len(), state))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        let mut applied = self.applied.write().await;
        applied.restore(meta, state);
        applied.snapshot = SnapshotStats {
            bytes,
            index: meta.last_log_id.map_or(0, |l| l.index),
            build_ms: 0,
            install_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            bytes,
            index = meta.last_log_id.map_or(0, |l| l.index),
            took_ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let opened = blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            // The meta from the header, then the whole file is what ships.
            let (meta, _) = read_header(&mut BufReader::new(&mut file), &path)?;
            file.rewind()?;
            Ok(Some((meta, file)))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(opened.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
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
        #[derive(serde::Serialize)]
        struct StoredSnapshot {
            meta: Meta,
            data: Vec<u8>,
        }
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

    #[test]
    fn a_snapshot_finished_late_never_replaces_a_newer_one() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let in_place = std::sync::Mutex::new(None);
        let id = |index| Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index));
        let put = |name: &str, body: &str, covers| {
            let tmp = dir.path().join(name);
            let written = write_tmp(&tmp, |out| out.write_all(body.as_bytes()));
            assert!(written.is_ok(), "{written:?}");
            place(&in_place, dir.path(), &tmp, covers)
        };
        let read = || std::fs::read_to_string(dir.path().join(SNAPSHOT_FILE)).unwrap_or_default();
        assert!(matches!(put(SNAPSHOT_TMP, "built at 10", id(10)), Ok(true)));
        // Installed from the leader meanwhile: newer.
        assert!(matches!(
            put(SNAPSHOT_RECV, "installed at 20", id(20)),
            Ok(true)
        ));
        // A build of index 15 finishing now is left out, its file removed.
        assert!(matches!(
            put(SNAPSHOT_TMP, "built at 15", id(15)),
            Ok(false)
        ));
        assert_eq!(read(), "installed at 20");
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
        assert!(matches!(put(SNAPSHOT_TMP, "built at 30", id(30)), Ok(true)));
        assert_eq!(read(), "built at 30");
    }
}
