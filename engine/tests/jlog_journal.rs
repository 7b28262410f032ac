//! Behaviour of Cohort's jlog implementation on its own: rolling, subscribers and cleanup, the
//! pre-commit buffer, legacy journals, torn tails, damaged segments, and hostile file contents.

use std::path::Path;

use cohort_engine::jlog::{
    JlogError, JlogId, Journal, JournalOptions, Position, Safety, WriterOptions,
};

fn small(dir: &Path, unit_limit: u32) -> Journal {
    Journal::create(
        dir,
        JournalOptions {
            unit_limit,
            ..Default::default()
        },
    )
    .expect("create")
}

fn read_all(j: &Journal, sub: &str) -> Vec<(JlogId, Vec<u8>)> {
    let mut r = j.reader(sub).expect("reader");
    let mut out = Vec::new();
    loop {
        let (iv, recs) = r.next_batch().expect("batch");
        if iv.count == 0 {
            return out;
        }
        out.extend(recs.into_iter().map(|r| (r.id, r.payload)));
        r.checkpoint(iv.last).expect("checkpoint");
    }
}

#[test]
fn segments_roll_at_unit_limit_and_intervals_cover_one_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = small(&tmp.path().join("j"), 64);
    j.add_subscriber("s", Position::Begin).expect("add");
    j.add_subscriber("keeps-segments", Position::Begin)
        .expect("add");
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    // 16-byte header + 9 bytes = 25 bytes per record: 3 records reach 64 → roll after the third.
    for i in 0..7 {
        w.append(format!("record-{i:02}").as_bytes())
            .expect("append");
    }
    let m = j.metastore().expect("meta");
    assert_eq!(m.storage_log, 2);
    let sizes: Vec<u64> = (0..3)
        .map(|l| {
            std::fs::metadata(tmp.path().join(format!("j/{l:08x}")))
                .expect("seg")
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![75, 75, 25]);
    let mut r = j.reader("s").expect("reader");
    let iv = r.read_interval().expect("interval");
    assert_eq!(
        (iv.first, iv.last, iv.count),
        (JlogId::new(0, 1), JlogId::new(0, 3), 3)
    );
    // Nothing consumed yet: asking again gives the same interval.
    assert_eq!(r.read_interval().expect("interval"), iv);
    r.checkpoint(iv.last).expect("checkpoint");
    let iv = r.read_interval().expect("interval");
    assert_eq!((iv.first, iv.count), (JlogId::new(1, 1), 3));
    // The closed index of segment 0 ends with the close marker, as jlog writes it.
    let idx = std::fs::read(tmp.path().join("j/00000000.idx")).expect("idx");
    let offsets: Vec<u64> = idx
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8")))
        .collect();
    assert_eq!(offsets, vec![0, 25, 50, 0]);
    w.close().expect("close");
}

#[test]
fn segments_are_deleted_only_when_every_subscriber_is_past_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = small(&dir, 50);
    j.add_subscriber("a", Position::Begin).expect("add a");
    j.add_subscriber("b", Position::Begin).expect("add b");
    assert!(matches!(
        j.add_subscriber("a", Position::Begin),
        Err(JlogError::SubscriberExists { .. })
    ));
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append_batch(
        &(0..10)
            .map(|i| format!("payload-{i:02}"))
            .collect::<Vec<_>>(),
    )
    .expect("batch");
    let seg0 = dir.join("00000000");
    assert_eq!(read_all(&j, "a").len(), 10);
    assert!(seg0.exists(), "b still needs segment 0");
    assert_eq!(read_all(&j, "b").len(), 10);
    assert!(!seg0.exists(), "nobody needs segment 0 any more");
    assert!(!dir.join("00000000.idx").exists());
    // A subscriber added at the end sees only what is written afterwards.
    j.add_subscriber("c", Position::End).expect("add c");
    w.append(b"after c").expect("append");
    let c = read_all(&j, "c");
    assert_eq!(
        c.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(),
        vec![&b"after c"[..]]
    );
    assert_eq!(j.subscribers().expect("list"), vec!["a", "b", "c"]);
    assert!(j.remove_subscriber("b").expect("remove"));
    assert!(!j.remove_subscriber("b").expect("remove twice"));
    assert!(matches!(j.reader("b"), Err(JlogError::NoSubscriber { .. })));
}

#[test]
fn pre_commit_records_are_invisible_until_flushed_and_survive_a_dropped_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = small(&dir, 1 << 20);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut w = j
        .writer(WriterOptions {
            pre_commit_size: Some(4096),
            ..Default::default()
        })
        .expect("writer");
    assert_eq!(
        std::fs::metadata(dir.join("pre_commit")).expect("pc").len(),
        4 + 4096
    );
    w.append(b"one").expect("append");
    w.append(b"two").expect("append");
    assert!(
        read_all(&j, "s").is_empty(),
        "buffered records are not visible yet"
    );
    // The process "dies" with records in the buffer: no flush, no close.
    drop(w);
    let used = std::fs::read(dir.join("pre_commit")).expect("pc");
    assert_eq!(
        u32::from_ne_bytes(used[..4].try_into().expect("4")),
        2 * (16 + 3)
    );
    // The next writer (keeping the sticky size) appends them before its own record.
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append(b"three").expect("append");
    w.flush().expect("flush");
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    // Records larger than the buffer go straight to the segment, after what is buffered.
    w.append(b"four").expect("append");
    w.append(&vec![b'x'; 5000]).expect("append big");
    let got: Vec<usize> = read_all(&j, "s")
        .into_iter()
        .map(|(_, p)| p.len())
        .collect();
    assert_eq!(got, vec![4, 5000]);
    w.close().expect("close");
    assert_eq!(
        &std::fs::read(dir.join("pre_commit")).expect("pc")[..4],
        &[0, 0, 0, 0]
    );
}

#[test]
fn legacy_pre_2_0_journal_with_magic_zero_is_read_and_extended() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("legacy");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut meta = Vec::new();
    for w in [0u32, 4 << 20, 1] {
        meta.extend_from_slice(&w.to_ne_bytes());
    }
    std::fs::write(dir.join("metastore"), &meta).expect("metastore");
    let mut seg = Vec::new();
    for p in [&b"old-1"[..], b"old-2"] {
        for w in [0u32, 1_000_000_000, 5, p.len() as u32] {
            seg.extend_from_slice(&w.to_ne_bytes());
        }
        seg.extend_from_slice(p);
    }
    std::fs::write(dir.join("00000000"), &seg).expect("segment");
    std::fs::write(dir.join("cp.73"), JlogId::new(0, 0).emit()).expect("cp");
    let j = Journal::open(&dir).expect("open");
    assert_eq!(j.metastore().expect("meta").hdr_magic, 0);
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, vec![b"old-1".to_vec(), b"old-2".to_vec()]);
    // A writer extends the metastore to 16 bytes with magic 0 (as jlog 2.0 does) and keeps
    // writing magic-0 records.
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append(b"new").expect("append");
    w.close().expect("close");
    let meta = std::fs::read(dir.join("metastore")).expect("meta");
    assert_eq!(meta.len(), 16);
    assert_eq!(&meta[12..], &[0, 0, 0, 0]);
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, vec![b"new".to_vec()]);
}

#[test]
fn torn_tail_is_invisible_then_removed_by_the_next_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = small(&dir, 1 << 20);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append(b"complete").expect("append");
    w.close().expect("close");
    // A crash in the middle of the next record: its header and part of its payload.
    let seg = dir.join("00000000");
    let mut bytes = std::fs::read(&seg).expect("seg");
    let torn_at = bytes.len();
    bytes.extend_from_within(..16);
    bytes[torn_at + 12..torn_at + 16].copy_from_slice(&100u32.to_ne_bytes());
    bytes.extend_from_slice(b"partial");
    std::fs::write(&seg, &bytes).expect("write");
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        vec![b"complete".to_vec()],
        "the torn record is never returned"
    );
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    assert_eq!(std::fs::metadata(&seg).expect("seg").len(), torn_at as u64);
    w.append(b"after crash").expect("append");
    w.close().expect("close");
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, vec![b"after crash".to_vec()]);
}

#[test]
fn damaged_closed_segment_is_repaired_on_read_and_by_repair() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = small(&dir, 120);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    for i in 0..8 {
        w.append(format!("good-{i}").as_bytes()).expect("append");
    }
    w.close().expect("close");
    // Garbage in the middle of closed segment 0 (records are 22 bytes: good-0 .. good-5 there).
    let seg = dir.join("00000000");
    let mut bytes = std::fs::read(&seg).expect("seg");
    let tail = bytes.split_off(44);
    bytes.extend_from_slice(b"GARBAGE!GARBAGE!");
    bytes.extend_from_slice(&tail);
    std::fs::write(&seg, &bytes).expect("write");
    let got: Vec<String> = read_all(&j, "s")
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).expect("utf-8"))
        .collect();
    let want: Vec<String> = (0..8).map(|i| format!("good-{i}")).collect();
    assert_eq!(
        got, want,
        "repair keeps every valid record, including the one before the garbage"
    );

    // Journal-level repair: a wrecked metastore and a checkpoint pointing past the data.
    std::fs::write(dir.join("metastore"), b"junk").expect("metastore");
    std::fs::write(dir.join("cp.73"), JlogId::new(99, 5).emit()).expect("cp");
    let report = Journal::repair(&dir, true).expect("repair");
    assert!(report.metastore_rewritten);
    assert_eq!(report.checkpoints_reset.len(), 1);
    let j = Journal::open(&dir).expect("open");
    let m = j.metastore().expect("meta");
    assert_eq!(m.storage_log, 1);
    assert_eq!(j.checkpoint("s").expect("cp"), JlogId::new(1, 0));
}

#[test]
fn hostile_file_contents_give_errors_never_panics() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    for round in 0..60 {
        let dir = tmp.path().join(format!("j{round}"));
        let j = small(&dir, 200);
        j.add_subscriber("s", Position::Begin).expect("add");
        let mut w = j.writer(WriterOptions::default()).expect("writer");
        for i in 0..20 {
            w.append(format!("r{i}").as_bytes()).expect("append");
        }
        w.close().expect("close");
        let victims = [
            "metastore",
            "00000000",
            "00000001",
            "cp.73",
            "00000000.idx",
            "pre_commit",
        ];
        let victim = victims[round % victims.len()];
        let len = (rnd(1)[0] as usize) % 40;
        let junk = rnd(len);
        if round % 2 == 0 {
            std::fs::write(dir.join(victim), &junk).expect("clobber");
        } else if let Ok(mut b) = std::fs::read(dir.join(victim)) {
            let at = if b.is_empty() {
                0
            } else {
                (rnd(1)[0] as usize) % b.len()
            };
            b.splice(at..at, junk);
            std::fs::write(dir.join(victim), b).expect("clobber");
        }
        // Whatever happens, each call returns.
        if let Ok(j) = Journal::open(&dir) {
            let _ = j.metastore();
            let _ = j.subscribers();
            let _ = j.segments();
            if let Ok(mut r) = j.reader("s") {
                for _ in 0..5 {
                    match r.next_batch() {
                        Ok((iv, _)) if iv.count > 0 => {
                            let _ = r.checkpoint(iv.last);
                        }
                        _ => break,
                    }
                }
            }
            let _ = j
                .writer(WriterOptions::default())
                .and_then(|mut w| w.append(b"x"));
        }
        let _ = Journal::repair(&dir, true);
    }
}

#[test]
fn safety_mode_is_shared_through_the_metastore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = Journal::create(
        &dir,
        JournalOptions {
            safety: Safety::Safe,
            ..Default::default()
        },
    )
    .expect("create");
    assert_eq!(
        &std::fs::read(dir.join("metastore")).expect("meta")[8..12],
        &2u32.to_ne_bytes()
    );
    let w = j.writer(WriterOptions::default()).expect("writer");
    assert_eq!(w.safety(), Safety::Safe);
    j.set_safety(Safety::Unsafe).expect("alter");
    assert_eq!(
        Journal::open(&dir)
            .expect("open")
            .metastore()
            .expect("meta")
            .safety,
        Safety::Unsafe
    );
}

/// What each mode promises, checked through what the writer did: with `sync_appends` every append
/// call is followed by an fdatasync of the segment (or an msync of the new pre-commit bytes)
/// before it returns, in any safety mode; without it, data is synced only on roll and close, as
/// jlog does in all three modes.
#[test]
fn appends_sync_exactly_as_promised() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, mode) in [Safety::Unsafe, Safety::AlmostSafe, Safety::Safe]
        .into_iter()
        .enumerate()
    {
        for pre_commit in [0u32, 4096] {
            for sync_appends in [false, true] {
                let dir = tmp.path().join(format!("j{i}-{pre_commit}-{sync_appends}"));
                let j = Journal::create(
                    &dir,
                    JournalOptions {
                        safety: mode,
                        unit_limit: 1 << 20,
                        ..Default::default()
                    },
                )
                .expect("create");
                let mut w = j
                    .writer(WriterOptions {
                        pre_commit_size: Some(pre_commit),
                        sync_appends,
                        ..Default::default()
                    })
                    .expect("writer");
                for k in 0..10 {
                    w.append(format!("r{k}").as_bytes()).expect("append");
                }
                w.append_batch(&[b"b1", b"b2", b"b3"]).expect("batch");
                let s = w.stats();
                assert_eq!((s.records, s.rolls), (13, 0));
                let syncs = s.data_syncs + s.pre_commit_syncs;
                let want = if sync_appends { 11 } else { 0 };
                assert_eq!(
                    syncs, want,
                    "{mode:?}, pre-commit {pre_commit}, sync {sync_appends}"
                );
                let closed = w.close_and_report().expect("close");
                assert!(closed.data_syncs > s.data_syncs, "close syncs the segment");
            }
        }
    }
}

/// Ids far apart (a damaged metastore or checkpoint) cost a directory listing, not a probe per id,
/// and reading resumes at the next segment present.
#[test]
fn huge_gaps_between_ids_are_skipped_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("j");
    let j = small(&dir, 1 << 20);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    w.append(b"in segment 0").expect("append");
    w.close().expect("close");
    // Pretend the writer has since moved to segment 0xfffffff0, leaving one record there.
    let far = 0xffff_fff0u32;
    let mut meta = std::fs::read(dir.join("metastore")).expect("meta");
    meta[..4].copy_from_slice(&far.to_ne_bytes());
    std::fs::write(dir.join("metastore"), &meta).expect("meta");
    let mut seg = std::fs::read(dir.join("00000000")).expect("seg");
    let n = seg.len();
    seg[n - 12..].copy_from_slice(b"far segment!");
    std::fs::write(dir.join(format!("{far:08x}")), &seg).expect("far segment");
    let got: Vec<(JlogId, Vec<u8>)> = read_all(&j, "s");
    assert_eq!(
        got,
        vec![
            (JlogId::new(0, 1), b"in segment 0".to_vec()),
            (JlogId::new(far, 1), b"far segment!".to_vec())
        ]
    );
    assert!(
        !dir.join("00000000").exists(),
        "the consumed segment was removed"
    );
}

/// Writers in several threads of one process share descriptors and exclude each other through
/// the in-process half of the lock; every record arrives whole, each thread's in its own order,
/// across segment rolls.
#[test]
fn writers_in_threads_of_one_process_exclude_each_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = small(&tmp.path().join("j"), 4096);
    j.add_subscriber("s", Position::Begin).expect("add");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut w = j.writer(WriterOptions::default()).expect("writer");
                for i in 0..1500 {
                    w.append(format!("t{t}-{i:05}-{}", "x".repeat(i % 50)).as_bytes())
                        .expect("append");
                }
                w.close().expect("close");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let got = read_all(&j, "s");
    assert_eq!(got.len(), 4 * 1500);
    for t in 0..4 {
        let mine: Vec<String> = got
            .iter()
            .map(|(_, p)| String::from_utf8(p.clone()).expect("utf-8"))
            .filter(|p| p.starts_with(&format!("t{t}-")))
            .collect();
        let want: Vec<String> = (0..1500)
            .map(|i| format!("t{t}-{i:05}-{}", "x".repeat(i % 50)))
            .collect();
        assert!(
            mine == want,
            "thread {t}: {} of 1500 records in order",
            mine.len()
        );
    }
    assert!(
        j.metastore().expect("meta").storage_log > 10,
        "segments rolled"
    );
}

/// A writer that appends and then goes idle without flushing does not keep other writers out:
/// its lease on the segment lock is given back after `lock_hold` of idleness.
#[test]
fn an_idle_writer_gives_the_segment_lock_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = small(&tmp.path().join("j"), 1 << 20);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut idle = j.writer(WriterOptions::default()).expect("writer");
    idle.append(b"then idle").expect("append");
    let (done, finished) = std::sync::mpsc::channel();
    let j2 = j.clone();
    std::thread::spawn(move || {
        let mut other = j2.writer(WriterOptions::default()).expect("second writer");
        other.append(b"second writer").expect("append");
        other.close().expect("close");
        let _ = done.send(());
    });
    // A hang guard only: the second writer needs about a millisecond.
    finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second writer got the segment lock while the first was idle");
    idle.append(b"first again")
        .expect("append after the lease was reaped");
    drop(idle);
    let got: Vec<Vec<u8>> = read_all(&j, "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        vec![
            b"then idle".to_vec(),
            b"second writer".to_vec(),
            b"first again".to_vec()
        ]
    );
}

#[test]
fn backlog_counts_unread_records_across_segments_without_moving_the_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = small(&tmp.path().join("j"), 64);
    j.add_subscriber("s", Position::Begin).expect("add");
    let mut r = j.reader("s").expect("reader");
    assert_eq!(r.backlog().expect("backlog").records, 0);
    assert_eq!(r.backlog().expect("backlog").oldest, None);
    let mut w = j.writer(WriterOptions::default()).expect("writer");
    // Three records per segment: seven records make segments 0, 1 and 2.
    for i in 0..7 {
        w.append(format!("record-{i:02}").as_bytes())
            .expect("append");
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let b = r.backlog().expect("backlog");
    assert_eq!(b.records, 7);
    let oldest = b.oldest.expect("an unread record has a time");
    assert!(oldest <= before && before - oldest < std::time::Duration::from_secs(60));
    // Two read and checkpointed: five left; backlog moved nothing.
    let (iv, _) = r.next_batch().expect("batch");
    r.checkpoint(JlogId::new(iv.first.log, 2))
        .expect("checkpoint");
    let cp = r.current_checkpoint().expect("checkpoint");
    assert_eq!(r.backlog().expect("backlog").records, 5);
    assert_eq!(r.current_checkpoint().expect("checkpoint"), cp);
    assert_eq!(read_all(&j, "s").len(), 5);
    assert_eq!(r.backlog().expect("backlog").records, 0);
}
