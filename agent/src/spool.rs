//! The durable, bounded queue of results not yet acknowledged by the
//! coordinator.
//!
//! Results are appended to segment files (`<first-seq>.seg`) and synced to
//! disk before `append` returns, so a crash at any instant loses nothing that
//! was spooled; a torn record at the tail of the last segment (a crash
//! mid-write) is detected by its checksum and cut off on open. A write that
//! fails (a full disk) is cut off at once and counted as dropped, so the next
//! one starts clean.
//!
//! The acknowledged watermark lives in `watermark`, a file allocated when the
//! watermark is first written and then rewritten in place (two checksummed
//! slots, alternately): acknowledging never needs free space, and a torn
//! write leaves the previous value. Segments wholly at or below the
//! watermark are deleted — the one being written too, once it holds
//! [`RECLAIM_BYTES`] or after a failed write. When the spool exceeds its
//! size limit, the oldest segments are dropped and counted.
//!
//! Sequence numbers never repeat for a spool: `id` (random, created with the
//! spool) plus `seq` name a result uniquely, so the coordinator can apply
//! resent results once. A spool that cannot know where its numbering stands
//! (its watermark or identity lost or corrupt) takes a new identity at open;
//! one that learns the cluster has acknowledged more of it than it ever wrote
//! (a disk restored from an older snapshot) does so in [`Spool::reconcile`].
//! Either way it says so loudly and resends what it holds: results may be
//! applied twice, never taken for old ones and lost.
//!
//! Record layout: `len: u32 LE | crc32(seq ‖ payload): u32 LE | seq: u64 LE | payload`.
//! Watermark slot: `seq: u64 LE | crc32("VACK" ‖ seq): u32 LE | "VACK"`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Segment files are rolled at this size by default.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// Largest record accepted (a result is a few hundred bytes).
pub const MAX_RECORD: usize = 1 << 20;
/// The segment being written is deleted once wholly acknowledged and at
/// least this large (at once after a failed write).
pub const RECLAIM_BYTES: u64 = 64 * 1024;
const HEADER: usize = 16;
const WATERMARK: &str = "watermark";
/// The watermark of spools written before it was kept in place (text).
const LEGACY_ACKED: &str = "acked";
const SLOT: usize = 16;
const SLOT_MAGIC: &[u8; 4] = b"VACK";

/// Spool failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A payload is larger than [`MAX_RECORD`].
    #[error("record of {0} bytes exceeds the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One spooled result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (1, 2, ...), unique within the spool.
    pub seq: u64,
    /// The encoded result.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    records: u64,
    /// A failed write could not be cut off: nothing more goes into it.
    sealed: bool,
}

/// The spool took a new identity: the cluster had acknowledged more of the
/// old one than it ever wrote ([`Spool::reconcile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The identity given up.
    pub old_id: u64,
    /// The new identity.
    pub new_id: u64,
    /// What the cluster had acknowledged of the old identity.
    pub cluster_acked: u64,
    /// The highest seq this spool had written.
    pub local_last: u64,
    /// Results it holds, resent under the new identity.
    pub pending: u64,
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    id: u64,
    segments: VecDeque<Segment>,
    current: Option<File>,
    next_seq: u64,
    acked: u64,
    watermark: Watermark,
    dropped: u64,
    renewals: u64,
    /// A write failed since the spool was last emptied.
    pressure: bool,
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Streams the valid records of a segment, collecting the payloads of at
/// most `limit` records for which `keep(seq)` holds; returns them, the last
/// valid seq, and the length of the valid prefix (a torn or corrupt tail
/// ends the segment). Memory stays at one record plus what is collected.
fn scan_segment(
    path: &Path,
    keep: impl Fn(u64) -> bool,
    limit: usize,
) -> Result<(Vec<Record>, Option<u64>, u64), SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = io::BufReader::with_capacity(16 * 1024, file);
    let mut records = Vec::new();
    let (mut valid, mut last) = (0u64, None);
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_err(path)(e)),
        }
        let [
            l0,
            l1,
            l2,
            l3,
            c0,
            c1,
            c2,
            c3,
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
        ] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let sum = u32::from_le_bytes([c0, c1, c2, c3]);
        let seq = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        if len > MAX_RECORD {
            break;
        }
        payload.resize(len, 0);
        match reader.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_err(path)(e)),
        }
        if crc(seq, &payload) != sum {
            break;
        }
        valid += (HEADER + len) as u64;
        last = Some(seq);
        if records.len() < limit && keep(seq) {
            records.push(Record {
                seq,
                payload: payload.clone(),
            });
        }
    }
    Ok((records, last, valid))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// What a spool directory says its watermark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// No watermark file (a new spool, or one that lost it).
    Missing,
    /// A watermark file with no valid slot.
    Corrupt,
    /// The watermark, and the slot to write next (`None`: the value came
    /// from the legacy text file, a slotted file must be created).
    Valid(u64, Option<u64>),
}

impl Stored {
    fn value(self) -> Option<u64> {
        match self {
            Stored::Valid(acked, _) => Some(acked),
            Stored::Missing | Stored::Corrupt => None,
        }
    }
}

fn slot_crc(seq: u64) -> u32 {
    crc(seq, SLOT_MAGIC)
}

fn encode_slot(seq: u64) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..12].copy_from_slice(&slot_crc(seq).to_le_bytes());
    slot[12..].copy_from_slice(SLOT_MAGIC);
    slot
}

fn decode_slot(slot: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(slot.get(..8)?.try_into().ok()?);
    let sum = u32::from_le_bytes(slot.get(8..12)?.try_into().ok()?);
    (slot.get(12..16)? == SLOT_MAGIC && sum == slot_crc(seq)).then_some(seq)
}

fn read_watermark(dir: &Path) -> Result<Stored, SpoolError> {
    let path = dir.join(WATERMARK);
    match fs::read(&path) {
        Ok(bytes) => {
            let mut slots = bytes.chunks_exact(SLOT).take(2).map(decode_slot);
            let (a, b) = (slots.next().flatten(), slots.next().flatten());
            Ok(match (a, b) {
                (None, None) => Stored::Corrupt,
                // Overwrite the older (or broken) slot next.
                (a, b) if a >= b => Stored::Valid(a.unwrap_or(0), Some(1)),
                (_, b) => Stored::Valid(b.unwrap_or(0), Some(0)),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let legacy = dir.join(LEGACY_ACKED);
            match fs::read_to_string(&legacy) {
                Ok(text) => Ok(text
                    .trim()
                    .parse()
                    .map_or(Stored::Corrupt, |acked| Stored::Valid(acked, None))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Stored::Missing),
                Err(e) => Err(io_err(&legacy)(e)),
            }
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The watermark file, rewritten in place.
#[derive(Debug)]
struct Watermark {
    path: PathBuf,
    file: File,
    next_slot: u64,
}

impl Watermark {
    /// Opens the watermark file, creating it (both slots at `acked`) when
    /// `stored` is not a valid slotted file.
    fn open(dir: &Path, stored: Stored, acked: u64) -> Result<Self, SpoolError> {
        let path = dir.join(WATERMARK);
        let next_slot = match stored {
            Stored::Valid(_, Some(slot)) => slot,
            _ => {
                let mut both = encode_slot(acked).to_vec();
                both.extend_from_slice(&encode_slot(acked));
                write_atomic(dir, WATERMARK, &both)?;
                let legacy = dir.join(LEGACY_ACKED);
                match fs::remove_file(&legacy) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_err(&legacy)(e));
                    }
                    _ => {}
                }
                0
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(Watermark {
            path,
            file,
            next_slot,
        })
    }

    /// Writes `seq` over the older slot and syncs it.
    fn store(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.file
            .write_all_at(&encode_slot(seq), self.next_slot * SLOT as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err(&self.path))?;
        self.next_slot ^= 1;
        Ok(())
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, at most `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        Self::open_with_segments(dir, max_bytes, SEGMENT_BYTES)
    }

    /// Like [`Spool::open`] with segments of `segment_bytes`: the granularity
    /// at which acknowledged results are deleted and old ones dropped.
    pub fn open_with_segments(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let id_path = dir.join("id");
        let known_id = match fs::read_to_string(&id_path) {
            Ok(s) => Some(s.trim().parse::<u64>().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&id_path)(e)),
        };
        let stored = read_watermark(dir)?;
        let mut renewals = 0;
        let (id, acked) = match (known_id, stored) {
            (Some(Some(id)), Stored::Valid(acked, _)) => (id, acked),
            (None, Stored::Missing) => (new_identity(dir)?, 0),
            (old, stored) => {
                // Where the numbering stands is unknown: numbers from here
                // could be taken by the cluster for results it has applied.
                let id = new_identity(dir)?;
                renewals = 1;
                tracing::error!(
                    old_id = ?old.flatten(),
                    new_id = id,
                    watermark = ?stored,
                    "spool: its identity or acknowledged watermark is missing or corrupt; \
                     started a new spool identity (what it holds is resent and may be applied \
                     twice; nothing is lost)"
                );
                (id, stored.value().unwrap_or(0))
            }
        };
        let watermark = Watermark::open(dir, stored, acked)?;

        let mut paths: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let p = e.path();
                let first = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()?;
                Some((first, p))
            })
            .collect();
        paths.sort();
        let mut segments = VecDeque::new();
        let mut last_seen = acked;
        let count = paths.len();
        for (i, (first, path)) in paths.into_iter().enumerate() {
            let (_, last, valid) = scan_segment(&path, |_| false, 0)?;
            let on_disk = fs::metadata(&path).map_err(io_err(&path))?.len();
            if valid < on_disk {
                // Only the newest segment can be torn by a crash; cut it back.
                tracing::warn!(path = %path.display(), valid, on_disk, last = i + 1 == count, "spool: discarding a torn tail");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(valid))
                    .map_err(io_err(&path))?;
            }
            let last_seq = last.unwrap_or(first.saturating_sub(1));
            let count = last.map_or(0, |l| l + 1 - first);
            if last_seq <= acked {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            last_seen = last_seen.max(last_seq);
            segments.push_back(Segment {
                path,
                bytes: valid,
                first_seq: first,
                last_seq,
                records: count,
                sealed: false,
            });
        }
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: segment_bytes.max(4096),
            id,
            segments,
            current: None,
            next_seq: last_seen + 1,
            acked,
            watermark,
            dropped: 0,
            renewals,
            pressure: false,
        })
    }

    /// The spool's identity (random, fixed at creation).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Appends a result durably; returns its sequence number. A result that
    /// cannot be stored is counted as dropped.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        match self.append_all(&[payload]).pop() {
            Some(appended) => appended,
            None => Err(io_err(&self.dir)(io::Error::other("nothing appended"))),
        }
    }

    /// Appends results durably with one sync for all of them (a group
    /// commit); returns for each its sequence number, or why it was dropped
    /// (counted). Nothing is acknowledged as written before it is synced.
    pub fn append_all(&mut self, payloads: &[&[u8]]) -> Vec<Result<u64, SpoolError>> {
        let mut out = Vec::with_capacity(payloads.len());
        // Records encoded but not yet written (their index in `out`).
        let mut pending: Vec<usize> = Vec::new();
        let mut buf = Vec::new();
        for payload in payloads {
            if payload.len() > MAX_RECORD {
                out.push(Err(SpoolError::TooLarge(payload.len())));
                self.count_dropped(1);
                continue;
            }
            let full = self
                .segments
                .back()
                .is_none_or(|s| s.sealed || s.bytes + buf.len() as u64 >= self.segment_bytes);
            if self.current.is_none() || full {
                // What is encoded goes to the segment it was meant for.
                self.write_pending(&mut buf, &mut pending, &mut out);
                if let Err(e) = self.roll(self.next_seq) {
                    out.push(Err(e));
                    self.count_dropped(1);
                    continue;
                }
            }
            let seq = self.next_seq + pending.len() as u64;
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc(seq, payload).to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(payload);
            pending.push(out.len());
            out.push(Ok(seq));
        }
        self.write_pending(&mut buf, &mut pending, &mut out);
        if let Err(e) = self.enforce_limit() {
            tracing::warn!(error = %e, "spool: could not drop the oldest segments");
        }
        out
    }

    /// Counts `n` results that could not be stored; the segment being
    /// written is then reclaimed as soon as it is acknowledged.
    fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
        self.pressure = true;
    }

    /// Writes and syncs the encoded records `buf` to the current segment;
    /// on failure cuts off what part of them made it (so the next write
    /// starts clean; if even that fails, writes no more there) and turns
    /// their results into errors.
    fn write_pending(
        &mut self,
        buf: &mut Vec<u8>,
        pending: &mut Vec<usize>,
        out: &mut [Result<u64, SpoolError>],
    ) {
        if pending.is_empty() {
            return;
        }
        let written = match (self.segments.back_mut(), self.current.as_mut()) {
            (Some(seg), Some(file)) => match file.write_all(buf).and_then(|()| file.sync_data()) {
                Ok(()) => {
                    seg.bytes += buf.len() as u64;
                    seg.last_seq = self.next_seq + pending.len() as u64 - 1;
                    seg.records += pending.len() as u64;
                    self.next_seq += pending.len() as u64;
                    Ok(())
                }
                Err(e) => {
                    if file.set_len(seg.bytes).is_err() {
                        seg.sealed = true;
                        self.current = None;
                    }
                    Err((seg.path.clone(), e))
                }
            },
            _ => Err((self.dir.clone(), io::Error::other("segment not open"))),
        };
        if let Err((path, e)) = written {
            for i in pending.iter() {
                out[*i] = Err(io_err(&path)(io::Error::new(e.kind(), e.to_string())));
            }
            self.count_dropped(pending.len() as u64);
        }
        buf.clear();
        pending.clear();
    }

    /// Continues the newest segment, or starts `<seq>.seg`.
    fn roll(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(last) = self
            .segments
            .back()
            .filter(|s| !s.sealed && s.bytes < self.segment_bytes)
        {
            let file = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(io_err(&last.path))?;
            self.current = Some(file);
            return Ok(());
        }
        let path = self.dir.join(format!("{seq:020}.seg"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.current = Some(file);
        self.segments.push_back(Segment {
            path,
            bytes: 0,
            first_seq: seq,
            last_seq: seq - 1,
            records: 0,
            sealed: false,
        });
        Ok(())
    }

    /// Drops the oldest segments while over the size limit (never the one
    /// being written).
    fn enforce_limit(&mut self) -> Result<(), SpoolError> {
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            if let Some(old) = self.segments.pop_front() {
                let lost = old
                    .last_seq
                    .saturating_sub(old.first_seq.max(self.acked + 1))
                    + 1;
                fs::remove_file(&old.path).map_err(io_err(&old.path))?;
                self.dropped += lost;
                tracing::warn!(
                    lost,
                    total_dropped = self.dropped,
                    "spool full: dropped the oldest unacknowledged results"
                );
            }
        }
        Ok(())
    }

    /// Marks everything up to `seq` as acknowledged (durably, in place: no
    /// free space needed) and deletes segments no longer needed.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let seq = seq.min(self.last_seq());
        if seq <= self.acked {
            return Ok(());
        }
        self.watermark.store(seq)?;
        self.acked = seq;
        while let Some(front) = self.segments.front() {
            let writing = self.segments.len() == 1;
            if front.last_seq > seq
                || (writing && front.bytes < RECLAIM_BYTES && !self.pressure && !front.sealed)
            {
                break;
            }
            if let Some(old) = self.segments.pop_front() {
                if writing {
                    self.current = None;
                    self.pressure = false;
                }
                fs::remove_file(&old.path).map_err(io_err(&old.path))?;
            }
        }
        Ok(())
    }

    /// Squares the spool with what the cluster says it has acknowledged of
    /// it (a session's Welcome). Normally an [`ack`](Spool::ack); but a
    /// cluster that acknowledged more than this spool ever wrote means its
    /// disk is older than its history (restored from a snapshot): its next
    /// numbers would be taken for results already applied, so it takes a
    /// new identity, keeps what it holds to resend, and says so.
    pub fn reconcile(&mut self, cluster_acked: u64) -> Result<Option<Renewal>, SpoolError> {
        let local_last = self.last_seq();
        if cluster_acked <= local_last {
            self.ack(cluster_acked)?;
            return Ok(None);
        }
        let old_id = self.id;
        let new_id = new_id();
        // In place: a full disk must not keep the spool from renewing.
        let path = self.dir.join("id");
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                let text = id_text(new_id);
                f.write_all_at(text.as_bytes(), 0)?;
                f.set_len(text.len() as u64)?;
                f.sync_all()
            })
            .map_err(io_err(&path))?;
        self.id = new_id;
        self.renewals += 1;
        Ok(Some(Renewal {
            old_id,
            new_id,
            cluster_acked,
            local_last,
            pending: self.pending(),
        }))
    }

    /// Up to `limit` unacknowledged records with `seq > after`, in order.
    pub fn unacked(&self, after: u64, limit: usize) -> Result<Vec<Record>, SpoolError> {
        let from = after.max(self.acked);
        let mut out = Vec::new();
        for seg in self.segments.iter().filter(|s| s.last_seq > from) {
            let (records, _, _) = scan_segment(&seg.path, |seq| seq > from, limit - out.len())?;
            out.extend(records);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Highest sequence number written.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Results waiting for an acknowledgement.
    pub fn pending(&self) -> u64 {
        let first = self
            .segments
            .front()
            .map_or(self.next_seq, |s| s.first_seq)
            .max(self.acked + 1);
        self.next_seq.saturating_sub(first)
    }

    /// Bytes on disk (segments).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Results dropped since open: the spool was full (the oldest), or a
    /// result could not be written (a full disk, an I/O error).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Times the spool took a new identity since open (its state was lost,
    /// or older than the cluster's).
    pub fn renewals(&self) -> u64 {
        self.renewals
    }
}

/// A read-only look at a spool directory (for tests and tooling; changes
/// nothing, safe while an agent runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStatus {
    /// The spool's identity (0 if not created yet).
    pub id: u64,
    /// Acknowledged watermark.
    pub acked: u64,
    /// Highest seq on disk (or the watermark when nothing is left).
    pub last_seq: u64,
}

/// Reads the state of the spool in `dir` without opening it for writing.
pub fn inspect(dir: &Path) -> Result<SpoolStatus, SpoolError> {
    let id = fs::read_to_string(dir.join("id"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let acked = read_watermark(dir)?.value().unwrap_or(0);
    let mut last_seq = acked;
    for entry in fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(Result::ok)
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "seg") {
            let (_, last, _) = scan_segment(&path, |_| false, 0)?;
            if let Some(seq) = last {
                last_seq = last_seq.max(seq);
            }
        }
    }
    Ok(SpoolStatus {
        id,
        acked,
        last_seq,
    })
}

/// Writes `name` in `dir` atomically (temporary file, sync, rename, sync dir).
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), SpoolError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

/// Creates a new identity for the spool in `dir`.
fn new_identity(dir: &Path) -> Result<u64, SpoolError> {
    let id = new_id();
    write_atomic(dir, "id", id_text(id).as_bytes())?;
    Ok(id)
}

/// The `id` file's contents: fixed width, so a rewrite in place covers it.
fn id_text(id: u64) -> String {
    format!("{id:020}\n")
}

/// A random spool id from the OS's randomness (time and pid as fallback).
fn new_id() -> u64 {
    let mut buf = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf) | 1;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1
}
