//! The Raft log, vote and commit index in sled: openraft's `RaftLogStorage`
//! as a thin adapter. Appends and votes are flushed to disk before they are
//! reported done, so a crash at any instant loses nothing acknowledged.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Log entries (`log` tree, key = index big-endian) and metadata (`meta`).
#[derive(Debug, Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

type Result<T> = std::result::Result<T, StorageError>;

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    /// Opens the log trees of `db`.
    pub fn open(db: &sled::Db) -> std::result::Result<Self, sled::Error> {
        Ok(LogStore {
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
        })
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
        let range = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.log.range(key(start)..key(end)),
            None => self.log.range(key(start)..),
        };
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for item in range {
            let (_, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(Self::decode(&value)?);
            bytes = bytes.saturating_add(value.len());
            if bytes >= budget {
                break;
            }
        }
        Ok(out)
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
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, bytes)) => Some(Self::decode(&bytes)?.log_id),
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let flushed = self
            .log
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.log
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.put_meta(LAST_PURGED, &log_id).await?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=key(log_id.index)) {
            let (k, _) = item.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
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

    #[tokio::test]
    async fn a_request_carries_up_to_a_mebibyte_of_entries_and_never_none() {
        let db = match sled::Config::new().temporary(true).open() {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        };
        let Ok(mut store) = LogStore::open(&db) else {
            panic!("cannot open the log trees");
        };
        // 1..=40 of 100 KiB, then one of 3 MiB (a large declaration), then
        // small ones.
        for i in 1..=50u64 {
            let size = match i {
                1..=40 => 100 << 10,
                41 => 3 << 20,
                _ => 100,
            };
            let bytes = serde_json::to_vec(&entry(i, size)).unwrap_or_default();
            assert!(store.log.insert(key(i), bytes).is_ok());
        }
        let indexes =
            |entries: Vec<Entry>| -> Vec<u64> { entries.iter().map(|e| e.log_id.index).collect() };
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
}
