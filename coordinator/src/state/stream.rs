//! The state as a stream of records, the way snapshots hold it: a core
//! record (everything but what is kept per check), then one record per
//! check (its results and its vote), then an empty record. Written and read
//! one record at a time, so neither takes memory beyond the state itself
//! and one check; each record is a length (u32, big endian) and JSON.
//!
//! Before 0.8 a snapshot held the state as one JSON document; that form is
//! still read (`migrate::load`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::State;
use super::migrate::{self, MigrateError};
use super::results::CheckResults;
use super::verdicts::CheckVerdict;

/// The largest record accepted (the core of 50,000 checks is ≈ 12 MiB).
const MAX_RECORD: usize = 1 << 30;

/// One check's record, as written.
#[derive(Serialize)]
struct CheckRef<'a> {
    name: &'a str,
    results: Option<&'a CheckResults>,
    verdict: Option<&'a CheckVerdict>,
}

/// One check's record, as read.
#[derive(Deserialize)]
struct CheckRecord {
    name: String,
    results: Option<CheckResults>,
    verdict: Option<CheckVerdict>,
}

/// The state as of one instant, written later without holding it: its
/// core record encoded, its per-check maps shared with it (applying
/// afterwards copies a check before changing it, `Arc::make_mut`).
#[derive(Debug)]
pub struct Frozen {
    core: Vec<u8>,
    /// Each check's results and vote (put in name order when written).
    checks: Vec<Shared>,
}

/// A check's name, results and vote, shared with the state.
type Shared = (String, Option<Arc<CheckResults>>, Option<Arc<CheckVerdict>>);

/// Takes `state` as it is now (the core encoded, the checks shared: cheap
/// next to writing them).
pub fn freeze(state: &State) -> io::Result<Frozen> {
    let mut core = Vec::new();
    serde_json::to_writer(&mut core, state).map_err(io::Error::other)?;
    let with_results = state.results.iter().map(|(name, r)| {
        let verdict = state.verdicts.get(name).cloned();
        (name.clone(), Some(r.clone()), verdict)
    });
    let votes_only = state
        .verdicts
        .iter()
        .filter(|(name, _)| !state.results.contains_key(*name))
        .map(|(name, v)| (name.clone(), None, Some(v.clone())));
    Ok(Frozen {
        core,
        checks: with_results.chain(votes_only).collect(),
    })
}

/// Writes `state` as records.
pub fn write(state: &State, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
    freeze(state)?.write(out)
}

impl Frozen {
    /// Writes the state as records, one per check in name order (the
    /// same state always makes the same bytes).
    pub fn write(mut self, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
        frame(out, &self.core)?;
        self.checks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut buf = Vec::new();
        for (name, results, verdict) in &self.checks {
            let check = CheckRef {
                name,
                results: results.as_deref(),
                verdict: verdict.as_deref(),
            };
            buf.clear();
            serde_json::to_writer(&mut buf, &check).map_err(io::Error::other)?;
            frame(out, &buf)?;
        }
        out.write_all(&0u32.to_be_bytes())
    }
}

/// Writes one record: its length, then it.
fn frame(out: &mut (impl Write + ?Sized), buf: &[u8]) -> io::Result<()> {
    let len = u32::try_from(buf.len())
        .ok()
        .filter(|&l| l as usize <= MAX_RECORD)
        .ok_or_else(|| io::Error::other("a record of the state exceeds 1 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(buf)
}

/// Reads what [`write`] wrote (a core record of an earlier layout is
/// migrated; one of a newer layout refused).
pub fn read(input: &mut impl Read) -> Result<State, MigrateError> {
    let mut buf = Vec::new();
    if !next(input, &mut buf)? {
        return Err(MigrateError::Truncated);
    }
    let mut state = migrate::core(&buf)?;
    while next(input, &mut buf)? {
        let check: CheckRecord = serde_json::from_slice(&buf)?;
        if let Some(mut r) = check.results {
            r.share();
            state.results.insert(check.name.clone(), Arc::new(r));
        }
        if let Some(mut v) = check.verdict {
            v.share();
            state.verdicts.insert(check.name, Arc::new(v));
        }
    }
    Ok(state)
}

/// Reads the next record into `buf`: false at the end marker.
fn next(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, MigrateError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(truncated)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(false);
    }
    if len > MAX_RECORD {
        return Err(MigrateError::Truncated);
    }
    buf.clear();
    let read = input.take(len as u64).read_to_end(buf)?;
    if read < len {
        return Err(MigrateError::Truncated);
    }
    Ok(true)
}

fn truncated(e: io::Error) -> MigrateError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        MigrateError::Truncated
    } else {
        MigrateError::Io(e)
    }
}

/// Results and verdicts of a state in one document (how snapshots before
/// 0.8 held them beside the core).
#[derive(Deserialize)]
pub(super) struct PerCheck {
    #[serde(default)]
    pub results: BTreeMap<String, CheckResults>,
    #[serde(default)]
    pub verdicts: BTreeMap<String, CheckVerdict>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::results::StoredResult;
    use crate::state::{Command, IncomingResult};
    use vantage_common::Status;

    /// Checks `a` (eu, ru) and `b` (eu), declared at 1 s.
    fn declared() -> State {
        let mut state = State::default();
        let toml = "[[check]]\nname = \"a\"\nkind = \"dns\"\ntarget = \"mx.example.net\"\nregions = [\"eu\", \"ru\"]\n\
                    [[check]]\nname = \"b\"\nkind = \"dns\"\ntarget = \"mx.example.net\"\nregions = [\"eu\"]\n";
        let declared = match crate::declared::Declared::parse(std::path::Path::new("t.toml"), toml)
        {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        state.apply(&Command::ApplyConfig {
            declared: Box::new(declared),
            at_ms: 1000,
        });
        state
    }

    /// Agent `eu-1`'s result `seq` for `check`, at `seq` seconds.
    fn result(state: &mut State, check: &str, seq: u64, status: Status) {
        state.apply(&Command::Results {
            agent: "eu-1".into(),
            spool_id: 1,
            at_ms: seq as i64 * 1000,
            results: vec![IncomingResult {
                seq,
                check: check.into(),
                result: StoredResult {
                    region: "eu".into(),
                    agent: "eu-1".into(),
                    started_at_ms: seq as i64 * 1000,
                    status,
                    class: None,
                    message: format!("{status:?}"),
                    duration_ms: 1,
                    details_json: "{}".into(),
                    cert_not_after: None,
                    phases: Vec::new(),
                },
                trace: None,
            }],
        });
    }

    #[test]
    fn a_frozen_state_is_written_as_it_was_when_taken() {
        let mut state = declared();
        state.apply(&Command::AgentHello {
            name: "eu-1".into(),
            region: "eu".into(),
            version: "t".into(),
            address: "127.0.0.1:1".into(),
            spool_id: 1,
            at_ms: 1000,
        });
        result(&mut state, "a", 2, Status::Pass);
        result(&mut state, "b", 3, Status::Pass);
        let before = state.clone();
        let frozen = match freeze(&state) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        // Applied while it is written.
        for seq in 4..10 {
            result(&mut state, "a", seq, Status::Fail);
        }
        result(&mut state, "b", 10, Status::Fail);
        assert_ne!(state, before);
        let mut bytes = Vec::new();
        assert!(frozen.write(&mut bytes).is_ok());
        match read(&mut bytes.as_slice()) {
            Ok(back) => assert_eq!(back, before),
            Err(e) => panic!("{e}"),
        }
        // And what changed since is the state's own copy.
        let mut now = Vec::new();
        assert!(write(&state, &mut now).is_ok());
        assert!(matches!(read(&mut now.as_slice()), Ok(back) if back == state));
    }

    #[test]
    fn a_state_reads_back_record_by_record_and_a_cut_stream_is_refused() {
        let mut state = declared();
        state.apply(&Command::Revoke {
            name: "agent/ru/old".into(),
        });
        // A check with results but no vote (removed since), one with both.
        state.results.insert("gone".into(), Arc::default());
        assert!(state.verdicts.contains_key("a") && state.verdicts.contains_key("b"));
        let mut bytes = Vec::new();
        assert!(write(&state, &mut bytes).is_ok());
        match read(&mut bytes.as_slice()) {
            Ok(back) => assert_eq!(back, state),
            Err(e) => panic!("{e}"),
        }
        // Records: core, a, b, gone, end.
        let mut input = bytes.as_slice();
        let mut buf = Vec::new();
        let mut records = 0;
        while matches!(next(&mut input, &mut buf), Ok(true)) {
            records += 1;
        }
        assert_eq!(records, 4);
        for cut in [0, 3, 10, bytes.len() - 4, bytes.len() - 1] {
            assert!(
                matches!(read(&mut &bytes[..cut]), Err(MigrateError::Truncated)),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
    }
}
