//! The agent's spool: durable, bounded, ordered, crash-tolerant.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use vantage_agent::spool::Spool;
use vantage_tests::TinyDisk;

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

#[test]
fn a_group_commit_numbers_in_order_rolls_segments_and_drops_only_what_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 4 * 1024;
    let mut spool = Spool::open_with_segments(dir.path(), 64 << 20, segment).unwrap();
    spool.append(&payload(1)).unwrap();
    // Fifty at once: more than two segments' worth, one of them too large.
    let huge = vec![b'x'; vantage_agent::spool::MAX_RECORD + 1];
    let mut batch: Vec<Vec<u8>> = (2..=51).map(payload).collect();
    batch.insert(10, huge);
    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    let appended = spool.append_all(&refs);
    assert_eq!(appended.len(), 51);
    assert!(appended[10].is_err(), "the oversized one is refused");
    let seqs: Vec<u64> = appended
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());
    assert_eq!(spool.dropped(), 1);
    assert!(segments(dir.path()) >= 3, "rolled mid-batch");
    drop(spool);
    // All of it durable and readable, in order, after a reopen.
    let mut spool = Spool::open_with_segments(dir.path(), 64 << 20, segment).unwrap();
    let held = spool.unacked(0, usize::MAX).unwrap();
    assert_eq!(held.len(), 51);
    assert!(
        held.iter()
            .zip(1..)
            .all(|(r, i)| r.seq == i && r.payload == payload(i))
    );
    assert_eq!(spool.append(&payload(52)).unwrap(), 52);
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count()
}

#[test]
fn acknowledged_space_is_reclaimed_without_waiting_for_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let n = vantage_agent::spool::RECLAIM_BYTES / 200 + 1;
    for i in 1..=n {
        spool.append(&payload(i)).unwrap();
    }
    assert!(spool.bytes() < vantage_agent::spool::SEGMENT_BYTES);
    spool.ack(n).unwrap();
    assert_eq!(spool.bytes(), 0);
    assert_eq!(segments(dir.path()), 0, "the segment being written is gone");
    assert_eq!(spool.append(&payload(n + 1)).unwrap(), n + 1);
    drop(spool);
    let spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.last_seq(), n + 1, "numbering survives the reclaim");
    assert_eq!(spool.pending(), 1);
}

#[test]
fn a_lost_or_corrupt_watermark_starts_a_new_identity_and_keeps_what_is_held() {
    for damage in ["lost", "corrupt"] {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
        let id = spool.id();
        for i in 1..=5 {
            spool.append(&payload(i)).unwrap();
        }
        spool.ack(3).unwrap();
        assert_eq!(spool.renewals(), 0);
        drop(spool);
        let watermark = dir.path().join("watermark");
        match damage {
            "lost" => std::fs::remove_file(&watermark).unwrap(),
            _ => std::fs::write(&watermark, b"garbage that is no watermark at all").unwrap(),
        }
        let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
        assert_ne!(spool.id(), id, "{damage}: a new identity");
        assert_eq!(spool.renewals(), 1, "{damage}: counted");
        let held: Vec<u64> = spool
            .unacked(0, 100)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(held, [1, 2, 3, 4, 5], "{damage}: everything held is resent");
        assert_eq!(spool.append(&payload(6)).unwrap(), 6);
        drop(spool);
        let spool = Spool::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(spool.renewals(), 0, "{damage}: repaired once");
    }
}

#[test]
fn a_torn_watermark_write_leaves_the_previous_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let id = spool.id();
    for i in 1..=5 {
        spool.append(&payload(i)).unwrap();
    }
    spool.ack(2).unwrap();
    spool.ack(4).unwrap();
    drop(spool);
    // Tear the newest slot: the other still holds an older watermark.
    let path = dir.path().join("watermark");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 32);
    let newest = if u64::from_le_bytes(bytes[..8].try_into().unwrap()) == 4 {
        0
    } else {
        16
    };
    bytes[newest + 3] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.id(), id, "the identity stays");
    assert_eq!(spool.renewals(), 0);
    assert_eq!(spool.acked(), 2, "the previous watermark");
    assert_eq!(spool.pending(), 3);
}

#[test]
fn a_spool_written_by_an_older_version_keeps_its_identity_and_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let id = spool.id();
    for i in 1..=5 {
        spool.append(&payload(i)).unwrap();
    }
    drop(spool);
    // Versions before 0.6 kept the watermark as text in `acked`.
    std::fs::remove_file(dir.path().join("watermark")).unwrap();
    std::fs::write(dir.path().join("acked"), "3").unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!((spool.id(), spool.acked(), spool.pending()), (id, 3, 2));
    assert!(!dir.path().join("acked").exists());
    spool.ack(5).unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!((spool.id(), spool.acked()), (id, 5));
}

#[test]
fn a_cluster_ahead_of_the_spool_makes_it_take_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
    let id = spool.id();
    for i in 1..=5 {
        spool.append(&payload(i)).unwrap();
    }
    // In step: an acknowledgement.
    assert_eq!(spool.reconcile(2).unwrap(), None);
    assert_eq!(spool.acked(), 2);
    // Ahead (the disk was restored from an older snapshot).
    let renewal = spool.reconcile(40).unwrap().expect("a renewal");
    assert_eq!(
        (
            renewal.old_id,
            renewal.cluster_acked,
            renewal.local_last,
            renewal.pending
        ),
        (id, 40, 5, 3)
    );
    assert_eq!(spool.id(), renewal.new_id);
    assert_ne!(renewal.new_id, id);
    assert_eq!(spool.acked(), 2, "nothing is taken as acknowledged");
    drop(spool);
    let spool = Spool::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(spool.id(), renewal.new_id, "the new identity is kept");
    assert_eq!(spool.pending(), 3);
}

#[test]
fn a_full_disk_counts_drops_acknowledges_reclaims_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let Some(disk) = TinyDisk::mount_or_skip(root.path(), 256) else {
        return;
    };
    let dir = root.path().join("spool");
    let mut spool = Spool::open(&dir, 64 << 20).unwrap();
    for i in 1..=10 {
        spool.append(&payload(i)).unwrap();
    }
    let filler = disk.fill();
    // The coordinators are away and the disk is full: every result that
    // cannot be written is counted, and nothing that was written is hurt.
    let mut failed = 0;
    for i in 11..=60 {
        if spool.append(&payload(i)).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk never filled");
    assert_eq!(spool.dropped(), failed, "every unstored result is counted");
    let held = spool.unacked(0, 1000).unwrap();
    assert_eq!(held.len() as u64 + failed, 60, "held + dropped = produced");
    assert!(held.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // The coordinators return: acknowledging needs no free space, and
    // what was acknowledged is given back at once.
    let last = held.last().unwrap().seq;
    spool.ack(last).unwrap();
    assert_eq!(spool.pending(), 0);
    assert_eq!(segments(&dir), 0, "acknowledged space reclaimed");
    // Space returns (the reclaim, or the operator's cleanup): results are
    // stored again, and the numbering did not restart.
    std::fs::remove_file(filler).unwrap();
    let seq = spool.append(&payload(61)).unwrap();
    assert_eq!(seq, last + 1);
    drop(spool);
    let spool = Spool::open(&dir, 64 << 20).unwrap();
    assert_eq!((spool.acked(), spool.pending()), (last, 1));
    assert_eq!(spool.renewals(), 0);
}
