//! The Raft log, vote and commit index: openraft's `RaftLogStorage` as a
//! thin adapter. Entries live in segment files ([`Segments`]: memory holds
//! where they are, not them); the vote, commit index and last purged id in
//! sled. Appends and votes are synced to disk before they are reported
//! done, so a crash at any instant loses nothing acknowledged.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::segments::Segments;
use super::types::{Entry, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Where releases before 0.11 kept the entries: a sled tree, key = index
/// big-endian, value = the entry as JSON. Moved into segments on open.
const LEGACY_LOG_TREE: &str = "raft_log";

/// The directory of the segment files, in the data directory.
pub const LOG_DIR: &str = "raft-log";

/// Log entries (segment files) and metadata (the `raft_meta` sled tree).
#[derive(Debug, Clone)]
pub struct LogStore {
    segments: Arc<Mutex<Segments>>,
    meta: sled::Tree,
}

type Result<T> = std::result::Result<T, StorageError>;

impl LogStore {
    /// Opens the log in `data_dir` with its metadata in `db`, moving the
    /// entries of an older release's sled log into segments first, and
    /// forgetting entries a snapshot already covered (a crash between
    /// noting a purge and deleting its files leaves them).
    pub fn open(db: &sled::Db, data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join(LOG_DIR);
        let meta = db.open_tree("raft_meta").map_err(std::io::Error::other)?;
        let legacy = db
            .open_tree(LEGACY_LOG_TREE)
            .map_err(std::io::Error::other)?;
        if !legacy.is_empty() {
            // Copied again whole if a copy was cut short: the sled tree
            // goes only once the segments hold all of it, synced.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            let mut segments = Segments::open(&dir)?;
            let mut files = Vec::new();
            for item in &legacy {
                let (k, v) = item.map_err(std::io::Error::other)?;
                let index = <[u8; 8]>::try_from(k.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| std::io::Error::other("sled Raft log: a key is not an index"))?;
                files.extend(segments.append(&[(index, v.to_vec())])?);
            }
            files.dedup_by(|a, b| Arc::ptr_eq(a, b));
            for f in files {
                f.sync_data()?;
            }
            db.drop_tree(LEGACY_LOG_TREE)
                .map_err(std::io::Error::other)?;
            db.flush().map_err(std::io::Error::other)?;
            tracing::info!(entries = ?segments.bounds(), "Raft log moved from sled into segment files");
        }
        let mut segments = Segments::open(&dir)?;
        let purged = meta
            .get(LAST_PURGED)
            .map_err(std::io::Error::other)?
            .map(|b| serde_json::from_slice::<LogId<NodeId>>(&b))
            .transpose()
            .map_err(std::io::Error::other)?;
        if let Some(purged) = purged {
            segments.purge(purged.index)?;
        }
        Ok(LogStore {
            segments: Arc::new(Mutex::new(segments)),
            meta,
        })
    }

    fn segments(&self) -> std::io::Result<MutexGuard<'_, Segments>> {
        self.segments
            .lock()
            .map_err(|_| std::io::Error::other("Raft log lock poisoned"))
    }

    fn get_meta<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        let Some(bytes) = self.meta.get(k).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn put_meta<T: Serialize>(&self, k: &[u8], v: &T) -> Result<()> {
        let bytes = serde_json::to_vec(v).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(k, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Entry> {
        serde_json::from_slice(bytes).map_err(|e| StorageIOError::read_logs(&e).into())
    }

    /// Entries `start..end` in order, stopping after the first that brings
    /// their encoded size to `budget` bytes (at least one when any).
    fn read(&self, start: u64, end: Option<u64>, budget: usize) -> Result<Vec<Entry>> {
        let end = end.unwrap_or(u64::MAX);
        if end <= start {
            return Ok(Vec::new());
        }
        let raw = self
            .segments()
            .and_then(|s| s.read(start, end, budget))
            .map_err(|e| StorageIOError::read_logs(&e))?;
        raw.iter().map(|bytes| Self::decode(bytes)).collect()
    }
}

/// Encoded bytes of log entries per AppendEntries request. openraft gives
/// a request one heartbeat (500 ms by default) to make it; a follower
/// behind a declaration of 50,000 checks (one entry of several MiB) with
/// 63 result batches after it would never catch up by entry count alone.
const APPEND_BYTES: usize = 1 << 20;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        self.read(start, end, usize::MAX)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>> {
        self.read(start, Some(end), APPEND_BYTES)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let newest = self
            .segments()
            .map(|s| s.bounds())
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last = match newest {
            Some((_, last)) => self
                .read(last, Some(last + 1), usize::MAX)?
                .pop()
                .map(|e| e.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        self.put_meta(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let file = self
            .segments()
            .and_then(|mut s| s.append(&encoded))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        drop(encoded);
        // Readable now; stored once synced (off the runtime's threads).
        let synced = match file {
            Some(file) => tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        callback.log_io_completed(synced);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.segments()
            .and_then(|mut s| s.truncate(log_id.index))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.put_meta(LAST_PURGED, &log_id).await?;
        self.segments()
            .and_then(|mut s| s.purge(log_id.index))
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64, payload_bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Noop {
                payload: "x".repeat(payload_bytes),
            }),
        }
    }

    /// A store in a fresh directory (kept alive by the guard).
    fn store() -> (tempfile::TempDir, sled::Db, LogStore) {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        let db = match sled::open(dir.path().join("raft.sled")) {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        };
        let store = match LogStore::open(&db, dir.path()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        (dir, db, store)
    }

    fn put(store: &LogStore, entries: impl IntoIterator<Item = Entry>) {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, serde_json::to_vec(&e).unwrap_or_default()))
            .collect();
        let appended = store.segments().and_then(|mut s| s.append(&encoded));
        assert!(appended.is_ok(), "{appended:?}");
    }

    fn indexes(entries: Vec<Entry>) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn a_request_carries_up_to_a_mebibyte_of_entries_and_never_none() {
        let (_dir, _db, mut store) = store();
        // 1..=40 of 100 KiB, then one of 3 MiB (a large declaration), then
        // small ones.
        for i in 1..=50u64 {
            let size = match i {
                1..=40 => 100 << 10,
                41 => 3 << 20,
                _ => 100,
            };
            put(&store, [entry(i, size)]);
        }
        // Ten entries make a mebibyte: sent, the rest on the next request.
        let first = store.limited_get_log_entries(1, 51).await.map(indexes);
        assert_eq!(first.ok(), Some((1..=11).collect::<Vec<_>>()));
        // The large one goes alone.
        let big = store.limited_get_log_entries(41, 51).await.map(indexes);
        assert_eq!(big.ok(), Some(vec![41]));
        let rest = store.limited_get_log_entries(42, 51).await.map(indexes);
        assert_eq!(rest.ok(), Some((42..=50).collect::<Vec<_>>()));
        // Unlimited reads return the exact range.
        let exact = store.try_get_log_entries(39..=42).await.map(indexes);
        assert_eq!(exact.ok(), Some(vec![39, 40, 41, 42]));
        let empty = store.try_get_log_entries(5..5).await.map(indexes);
        assert_eq!(empty.ok(), Some(vec![]));
    }

    /// Opens the sled database at `path`, waiting (up to 30 s) for the
    /// previous handle's lock to go: sled's flusher thread lets go of it a
    /// moment after the handle is dropped.
    fn reopen(path: &Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match sled::open(path) {
                Ok(db) => return db,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    #[tokio::test]
    async fn an_older_release_sled_log_moves_into_segments() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        {
            let db = reopen(&dir.path().join("raft.sled"));
            let Ok(tree) = db.open_tree(LEGACY_LOG_TREE) else {
                panic!("no tree");
            };
            for i in 3..=9u64 {
                let bytes = serde_json::to_vec(&entry(i, 10)).unwrap_or_default();
                assert!(tree.insert(i.to_be_bytes(), bytes).is_ok());
            }
            assert!(db.flush().is_ok());
        }
        for _ in 0..2 {
            // Opened twice: the second open finds nothing left to move.
            let db = reopen(&dir.path().join("raft.sled"));
            let mut store = match LogStore::open(&db, dir.path()) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            let read = store.try_get_log_entries(0..100).await.map(indexes);
            assert_eq!(read.ok(), Some((3..=9).collect::<Vec<_>>()));
            assert!(db.open_tree(LEGACY_LOG_TREE).is_ok_and(|t| t.is_empty()));
            let state = store
                .get_log_state()
                .await
                .map(|s| s.last_log_id.map(|l| l.index));
            assert_eq!(state.ok(), Some(Some(9)));
        }
    }
}
