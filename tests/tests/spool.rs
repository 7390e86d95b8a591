//! The agent's spool: durable, bounded, ordered, crash-tolerant.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use vantage_agent::spool::Spool;

fn payload(i: u64) -> Vec<u8> {
    format!("result-{i:06}-{}", "x".repeat(180)).into_bytes()
}

#[test]
fn append_read_ack_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let id = spool.id();
    for i in 1..=10 {
        assert_eq!(spool.append(&payload(i)).unwrap(), i);
    }
    let first = spool.unacked(0, 4).unwrap();
    assert_eq!(
        first.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(first[2].payload, payload(3));
    assert_eq!(spool.unacked(4, 100).unwrap().len(), 6);
    spool.ack(6).unwrap();
    assert_eq!(spool.pending(), 4);
    drop(spool);

    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.id(), id, "the spool keeps its identity");
    assert_eq!(spool.acked(), 6);
    assert_eq!(
        spool
            .unacked(0, 100)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert_eq!(
        spool.append(&payload(11)).unwrap(),
        11,
        "sequence numbers continue"
    );
    spool.ack(11).unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.pending(), 0);
    assert_eq!(
        spool.append(&payload(12)).unwrap(),
        12,
        "no reuse even when everything was acked"
    );
}

#[test]
fn torn_tail_is_cut_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    for i in 1..=3 {
        spool.append(&payload(i)).unwrap();
    }
    drop(spool);
    // A crash mid-write leaves half a record.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 4, 0, 0]).unwrap();
    drop(f);

    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.unacked(0, 100).unwrap().len(), 3);
    assert_eq!(spool.append(&payload(4)).unwrap(), 4);
    let all = spool.unacked(0, 100).unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[3].payload, payload(4));
}

#[test]
fn full_spool_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 64 * 1024;
    let limit = 3 * segment;
    let mut spool = Spool::open_with_segments(dir.path(), limit, segment).unwrap();
    let n = 6 * segment / 200; // about six segments' worth
    for i in 1..=n {
        spool.append(&payload(i)).unwrap();
    }
    assert!(
        spool.bytes() <= limit + segment,
        "{} bytes on disk",
        spool.bytes()
    );
    assert!(spool.dropped() > 0);
    let left = spool.unacked(0, usize::MAX).unwrap();
    assert_eq!(left.last().unwrap().seq, n, "the newest results are kept");
    assert_eq!(
        left.len() as u64 + spool.dropped(),
        n,
        "every result is either kept or counted as dropped"
    );
    assert!(
        left.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "kept results are contiguous and ordered"
    );
}
