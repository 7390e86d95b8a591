//! A declaration replicated in parts.
//!
//! openraft gives a follower one heartbeat to take an AppendEntries
//! request; a request carries at least one whole entry. A declaration of
//! tens of thousands of checks as one entry (several MiB) would then never
//! reach a follower on a slow link. So the operator API proposes it as
//! parts of at most [`PART_BYTES`] each ([`split`]), one entry per part,
//! and the state keeps the parts received so far ([`Staged`], part of the
//! replicated state and of snapshots) until the last one completes it.
//!
//! Parts of one declaration share an id and arrive in order. A part that
//! does not continue the declaration being received (another one was
//! started since, or its first part never came) is dropped: only one
//! declaration is received at a time and the one started last wins.

use serde::{Deserialize, Serialize};

use crate::declared::Declared;

/// A part holds at most this many bytes of the declaration's encoding.
pub const PART_BYTES: usize = 256 << 10;

/// The declaration's encoding cut into parts of at most `part_bytes` each
/// (on character boundaries; one part for a declaration that fits).
pub fn split(declared: &Declared, part_bytes: usize) -> Result<Vec<String>, serde_json::Error> {
    let json = serde_json::to_string(declared)?;
    let mut parts = Vec::with_capacity(json.len() / part_bytes.max(1) + 1);
    let mut rest = json.as_str();
    loop {
        let mut end = rest.len().min(part_bytes.max(4));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part.to_owned());
        if tail.is_empty() {
            return Ok(parts);
        }
        rest = tail;
    }
}

/// The parts of one declaration received so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The declaration's id (chosen by the proposer).
    id: u64,
    /// The index of the part expected next.
    next: u32,
    /// The parts so far, concatenated.
    json: String,
}

/// What one part did.
#[derive(Debug)]
pub enum Taken {
    /// Kept; more parts to come.
    Kept,
    /// It does not continue the declaration being received: dropped.
    Dropped,
    /// The last part: the whole declaration.
    Complete(Box<Declared>),
    /// The last part, but the whole does not read as a declaration (a
    /// proposer of another version): dropped.
    Unreadable(serde_json::Error),
}

impl Staged {
    /// Takes part `index` of `count` of declaration `id`. Part 0 starts a
    /// declaration (dropping any unfinished one).
    pub fn take(staged: &mut Option<Staged>, id: u64, index: u32, count: u32, json: &str) -> Taken {
        if index == 0 {
            *staged = Some(Staged {
                id,
                next: 0,
                json: String::new(),
            });
        }
        let Some(s) = staged.as_mut().filter(|s| s.id == id && s.next == index) else {
            return Taken::Dropped;
        };
        s.json.push_str(json);
        s.next += 1;
        if s.next < count {
            return Taken::Kept;
        }
        let whole = staged.take().map(|s| s.json).unwrap_or_default();
        match serde_json::from_str(&whole) {
            Ok(declared) => Taken::Complete(Box::new(declared)),
            Err(e) => Taken::Unreadable(e),
        }
    }
}
