//! The Raft log's entries in append-only segment files: memory holds only
//! where each entry is (24 bytes an entry), never the entries, whatever the
//! log's size. (sled kept every entry written since its last page-out in
//! memory: some 100 MiB per node at 50,000 checks.)
//!
//! A segment is named after its first index (`00000000000000000042.seg`)
//! and holds records `index (u64) | length (u32) | CRC-32 of index and
//! entry (u32) | entry`, big endian, indexes consecutive across segments.
//! Records are written to the newest segment, which is closed at
//! [`SEGMENT_BYTES`]; the caller syncs before saying an append is done.
//! On open, a torn or corrupt tail of the newest segment (a write a crash
//! cut short, never acknowledged) is cut off; damage anywhere else is an
//! error naming the file.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed once it holds this much.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Record header: index, length, CRC.
const HEADER: usize = 16;

/// The largest entry accepted when reading (a declaration part is at most
/// 256 KiB; a result batch far less).
const MAX_ENTRY: u32 = 64 << 20;

/// Where one entry is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// First index of its segment.
    segment: u64,
    /// Offset of its record in the segment.
    offset: u64,
    /// Entry length (after the header).
    len: u32,
}

#[derive(Debug)]
struct Segment {
    file: Arc<File>,
    len: u64,
}

/// The log's segments and where each entry is.
#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    /// A segment is closed once it holds this much.
    segment_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    /// Index of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
}

fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn checksum(index: u64, entry: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_be_bytes());
    h.update(entry);
    h.finalize()
}

fn corrupt(path: &Path, offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {what} at offset {offset}; the Raft log is damaged: remove this node's \
             data_dir and start it again to copy the log and snapshot from the cluster",
            path.display()
        ),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segments {
    /// Opens (creating) the log in `dir`, reading every segment's records
    /// to index them.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_sized(dir, SEGMENT_BYTES)
    }

    fn open_sized(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for item in fs::read_dir(dir)? {
            let name = item?.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();
        let mut log = Segments {
            dir: dir.to_owned(),
            segment_bytes,
            segments: BTreeMap::new(),
            first: 0,
            slots: VecDeque::new(),
        };
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            log.load(first, n + 1 == count)?;
        }
        Ok(log)
    }

    /// Indexes segment `first`'s records; the newest segment's torn tail is
    /// cut off.
    fn load(&mut self, first: u64, newest: bool) -> io::Result<()> {
        let path = self.dir.join(file_name(first));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let mut reader = io::BufReader::with_capacity(1 << 20, &file);
        let mut offset = 0u64;
        let mut expected = first;
        let mut entry = Vec::new();
        let damage = loop {
            if offset == size {
                break None;
            }
            let mut header = [0u8; HEADER];
            if reader.read_exact(&mut header).is_err() {
                break Some("a record header cut short");
            }
            let field = |at: usize, n: usize| {
                header[at..at + n]
                    .iter()
                    .fold(0u64, |v, b| v << 8 | u64::from(*b))
            };
            let (index, len, crc) = (field(0, 8), field(8, 4) as u32, field(12, 4) as u32);
            if index != expected {
                break Some("an entry out of sequence");
            }
            if len > MAX_ENTRY || offset + HEADER as u64 + u64::from(len) > size {
                break Some("an entry cut short");
            }
            entry.resize(len as usize, 0);
            if reader.read_exact(&mut entry).is_err() {
                break Some("an entry cut short");
            }
            if checksum(index, &entry) != crc {
                break Some("an entry whose checksum does not match");
            }
            self.push(
                index,
                Slot {
                    segment: first,
                    offset,
                    len,
                },
            )?;
            offset += HEADER as u64 + u64::from(len);
            expected += 1;
        };
        if let Some(what) = damage {
            if !newest {
                return Err(corrupt(&path, offset, what));
            }
            tracing::warn!(
                file = %path.display(),
                offset,
                dropped_bytes = size - offset,
                "Raft log: {what}, from a write cut short; the tail is dropped (it was never acknowledged)"
            );
            file.set_len(offset)?;
            file.sync_all()?;
        }
        if offset == 0 {
            // Nothing in it (its only writes torn).
            fs::remove_file(&path)?;
            return Ok(());
        }
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                len: offset,
            },
        );
        Ok(())
    }

    /// Index the next entry must have (any, when the log is empty).
    fn next(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    fn push(&mut self, index: u64, slot: Slot) -> io::Result<()> {
        if self.slots.is_empty() {
            self.first = index;
        } else if index != self.next() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Raft log: entry {index} appended after {}", self.next() - 1),
            ));
        }
        self.slots.push_back(slot);
        Ok(())
    }

    /// The first and last index held.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        (!self.slots.is_empty()).then(|| (self.first, self.next() - 1))
    }

    /// Writes `entries` (index and encoded entry, consecutive, following
    /// the last) after the newest segment's end, and returns the file to
    /// sync before saying they are stored. They are readable at once.
    pub fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<Option<Arc<File>>> {
        let Some((first, _)) = entries.first() else {
            return Ok(None);
        };
        let expected = if self.slots.is_empty() {
            *first
        } else {
            self.next()
        };
        if entries
            .iter()
            .enumerate()
            .any(|(n, (index, _))| *index != expected + n as u64)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Raft log: entries from {first} do not follow {}",
                    expected.saturating_sub(1)
                ),
            ));
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|(_, e)| e.len() + HEADER).sum());
        let mut offsets = Vec::with_capacity(entries.len());
        for (index, entry) in entries {
            let len = u32::try_from(entry.len())
                .ok()
                .filter(|l| *l <= MAX_ENTRY)
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "Raft log: entry too large")
                })?;
            offsets.push((buf.len() as u64, len));
            buf.extend_from_slice(&index.to_be_bytes());
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&checksum(*index, entry).to_be_bytes());
            buf.extend_from_slice(entry);
        }
        // The newest segment, unless it is full or holds nothing live.
        let newest = self.segments.last_key_value().map(|(k, s)| (*k, s.len));
        let segment = match newest {
            Some((k, len)) if len < self.segment_bytes && !self.slots.is_empty() => k,
            _ => {
                let path = self.dir.join(file_name(*first));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?;
                sync_dir(&self.dir)?;
                self.segments.insert(
                    *first,
                    Segment {
                        file: Arc::new(file),
                        len: 0,
                    },
                );
                *first
            }
        };
        let Some(seg) = self.segments.get_mut(&segment) else {
            return Err(io::Error::other("Raft log: newest segment missing"));
        };
        let start = seg.len;
        seg.file.write_all_at(&buf, start)?;
        seg.len = start + buf.len() as u64;
        let file = seg.file.clone();
        for ((index, _), (at, len)) in entries.iter().zip(offsets) {
            self.push(
                *index,
                Slot {
                    segment,
                    offset: start + at,
                    len,
                },
            )?;
        }
        Ok(Some(file))
    }

    /// Entries `start..end` (clamped to what is held), each read whole,
    /// stopping after the one that brings their size to `budget` bytes.
    pub fn read(&self, start: u64, end: u64, budget: usize) -> io::Result<Vec<Vec<u8>>> {
        let from = start.max(self.first);
        let to = end.min(self.next());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for index in from..to {
            let Some(slot) = usize::try_from(index - self.first)
                .ok()
                .and_then(|i| self.slots.get(i))
            else {
                break;
            };
            let Some(seg) = self.segments.get(&slot.segment) else {
                return Err(io::Error::other(format!(
                    "Raft log: segment of entry {index} missing"
                )));
            };
            let mut entry = vec![0u8; slot.len as usize];
            seg.file
                .read_exact_at(&mut entry, slot.offset + HEADER as u64)?;
            bytes = bytes.saturating_add(entry.len());
            out.push(entry);
            if bytes >= budget {
                break;
            }
        }
        Ok(out)
    }

    /// Removes the entries from `index` on (a leader's log replacing
    /// ours), on disk before returning.
    pub fn truncate(&mut self, index: u64) -> io::Result<()> {
        if index >= self.next() || self.slots.is_empty() {
            return Ok(());
        }
        let keep = index.saturating_sub(self.first) as usize;
        let cut = self.slots.get(keep).copied();
        self.slots.truncate(keep);
        let Some(cut) = cut else { return Ok(()) };
        let later: Vec<u64> = self
            .segments
            .range(cut.segment + 1..)
            .map(|(k, _)| *k)
            .collect();
        for first in later {
            self.segments.remove(&first);
            fs::remove_file(self.dir.join(file_name(first)))?;
        }
        if cut.offset == 0 {
            self.segments.remove(&cut.segment);
            fs::remove_file(self.dir.join(file_name(cut.segment)))?;
        } else if let Some(seg) = self.segments.get_mut(&cut.segment) {
            seg.file.set_len(cut.offset)?;
            seg.file.sync_all()?;
            seg.len = cut.offset;
        }
        sync_dir(&self.dir)
    }

    /// Forgets the entries up to `index` (a snapshot covers them) and
    /// deletes the segments that hold nothing after it.
    pub fn purge(&mut self, index: u64) -> io::Result<()> {
        let drop =
            (index.saturating_add(1).saturating_sub(self.first) as usize).min(self.slots.len());
        self.slots.drain(..drop);
        if self.slots.is_empty() {
            self.first = index.saturating_add(1);
        } else {
            self.first = self.first.max(index.saturating_add(1));
        }
        let live = self.slots.front().map(|s| s.segment);
        let dead: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|k| live.is_none_or(|l| *k < l))
            .collect();
        for first in dead {
            self.segments.remove(&first);
            fs::remove_file(self.dir.join(file_name(first)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> (u64, Vec<u8>) {
        (index, format!("entry {index} ").repeat(10).into_bytes())
    }

    fn open(dir: &Path) -> Segments {
        match Segments::open_sized(dir, 1000) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn add(log: &mut Segments, indexes: std::ops::RangeInclusive<u64>) {
        for i in indexes {
            let r = log.append(&[entry(i)]);
            assert!(r.is_ok(), "{r:?}");
        }
    }

    fn held(log: &Segments) -> Vec<u64> {
        let Some((first, last)) = log.bounds() else {
            return Vec::new();
        };
        let read = log.read(first, last + 1, usize::MAX).unwrap_or_default();
        let all: Vec<u64> = (first..=last).collect();
        assert_eq!(read, all.iter().map(|i| entry(*i).1).collect::<Vec<_>>());
        all
    }

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn entries_survive_reopening_across_segments_truncation_and_purges() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        let mut log = open(dir.path());
        add(&mut log, 1..=40);
        assert!(files(dir.path()) > 3, "segments closed at their size");
        assert_eq!(held(&open(dir.path())), (1..=40).collect::<Vec<_>>());
        // Out of sequence: refused, nothing written.
        assert!(log.append(&[entry(42)]).is_err());
        assert!(log.truncate(25).is_ok());
        assert_eq!(held(&log), (1..=24).collect::<Vec<_>>());
        add(&mut log, 25..=30);
        assert!(log.purge(12).is_ok());
        assert_eq!(held(&log), (13..=30).collect::<Vec<_>>());
        let reopened = open(dir.path());
        // Whole segments before 13 are gone; what is left of 13's segment
        // is read again (the store purges it by its own record).
        assert!(reopened.bounds().is_some_and(|(f, l)| f <= 13 && l == 30));
        // Purged past the end: empty, and the next append starts anew.
        assert!(log.purge(50).is_ok());
        assert_eq!(log.bounds(), None);
        assert_eq!(files(dir.path()), 0);
        add(&mut log, 51..=52);
        assert_eq!(held(&open(dir.path())), vec![51, 52]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_elsewhere_refused() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temporary directory");
        };
        let mut log = open(dir.path());
        add(&mut log, 1..=40);
        let mut names: Vec<PathBuf> = fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        let (Some(oldest), Some(newest)) = (names.first().cloned(), names.last().cloned()) else {
            panic!("no segments");
        };
        // A write cut short in the newest segment: its last entry goes.
        let len = fs::metadata(&newest).map(|m| m.len()).unwrap_or(0);
        let cut = OpenOptions::new()
            .write(true)
            .open(&newest)
            .and_then(|f| f.set_len(len - 5));
        assert!(cut.is_ok());
        assert_eq!(held(&open(dir.path())), (1..=39).collect::<Vec<_>>());
        // A flipped byte in an older segment: refused, naming the file.
        let mut bytes = fs::read(&oldest).unwrap_or_default();
        if let Some(b) = bytes.get_mut(HEADER + 3) {
            *b ^= 0xff;
        }
        assert!(fs::write(&oldest, &bytes).is_ok());
        match Segments::open_sized(dir.path(), 1000) {
            Ok(_) => panic!("a damaged segment was read"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&oldest.display().to_string()), "{text}");
                assert!(text.contains("checksum"), "{text}");
            }
        }
    }
}
