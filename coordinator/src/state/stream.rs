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

/// Writes `state` as records.
pub fn write(state: &State, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
    let mut buf = Vec::new();
    record(out, &mut buf, state)?;
    let mut results = state.results.iter().peekable();
    let mut verdicts = state.verdicts.iter().peekable();
    loop {
        // Both maps are in name order: merged, one record per name.
        let name = match (results.peek(), verdicts.peek()) {
            (None, None) => break,
            (Some((r, _)), Some((v, _))) => (*r).min(*v),
            (Some((r, _)), None) => *r,
            (None, Some((v, _))) => *v,
        };
        let check = CheckRef {
            name,
            results: results.next_if(|(r, _)| *r == name).map(|(_, c)| c),
            verdict: verdicts.next_if(|(v, _)| *v == name).map(|(_, c)| c),
        };
        record(out, &mut buf, &check)?;
    }
    out.write_all(&0u32.to_be_bytes())
}

/// Writes one record (`buf` is scratch space).
fn record(
    out: &mut (impl Write + ?Sized),
    buf: &mut Vec<u8>,
    value: &impl Serialize,
) -> io::Result<()> {
    buf.clear();
    serde_json::to_writer(&mut *buf, value).map_err(io::Error::other)?;
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
            state.results.insert(check.name.clone(), r);
        }
        if let Some(v) = check.verdict {
            state.verdicts.insert(check.name, v);
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
    use crate::state::Command;

    #[test]
    fn a_state_reads_back_record_by_record_and_a_cut_stream_is_refused() {
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
        state.apply(&Command::Revoke {
            name: "agent/ru/old".into(),
        });
        // A check with results but no vote (removed since), one with both.
        state.results.insert("gone".into(), CheckResults::default());
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
