use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::store::faulty::{Fault, Faulty};

fn pending(offset: u64, data: &[u8]) -> Pending {
    Pending {
        time: SystemTime::now(),
        file: PathBuf::from("/var/log/app/access.log"),
        offset,
        reason: DeadLetterReason::InvalidJson,
        data: Bytes::copy_from_slice(data),
        size: data.len() as u64,
    }
}

/// Every line of the file parsed as an entry (panics on one that does not parse:
/// the property under test), and their offsets in file order.
fn offsets(path: &Path) -> Vec<u64> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{e}"),
    };
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "the file ends with a whole entry"
    );
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let row: serde_json::Value = serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "not an entry: {e}: {}…",
                    String::from_utf8_lossy(&l[..l.len().min(200)])
                )
            });
            assert!(row["time"].is_string() && row["line"].is_string());
            row["offset"].as_u64().unwrap()
        })
        .collect()
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

#[tokio::test]
async fn entries_are_synced_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let dl = DeadLetter::new(&path, 1 << 20, Arc::new(Metrics::default()));
    let data = Bytes::from_static(b"{\"x\":1}\n");
    dl.write_retrying(Path::new("/a.log"), 7, DeadLetterReason::Oversize, &data, 8)
        .await;
    dl.write_retrying(
        Path::new("/a.log"),
        15,
        DeadLetterReason::InvalidJson,
        &Bytes::from_static(b"\xff\x00\n"),
        3,
    )
    .await;
    dl.sync().await;
    assert_eq!(offsets(&path), vec![7, 15]);
}

/// A full disk: it fills mid-entry. The line waits (the call does not
/// return), the file keeps parsing, and once there is room the entry is there once.
#[tokio::test]
async fn a_full_disk_holds_the_line_and_tears_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let disk = Faulty::default();
    let dl = Arc::new(DeadLetter::with_store(
        &path,
        1 << 20,
        Arc::new(Metrics::default()),
        disk.shared(),
    ));
    let line = Bytes::from(vec![b'x'; 200_000]);
    dl.write_retrying(
        Path::new("/a.log"),
        1,
        DeadLetterReason::Oversize,
        &line,
        200_000,
    )
    .await;
    dl.sync().await;
    disk.set(Fault::Full);
    let (dl2, line2) = (dl.clone(), line.clone());
    let stuck = tokio::spawn(async move {
        dl2.write_retrying(
            Path::new("/a.log"),
            2,
            DeadLetterReason::Oversize,
            &line2,
            200_000,
        )
        .await;
        dl2.sync().await;
    });
    // Several retries (100 ms, 200 ms, 400 ms …) fail meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!stuck.is_finished(), "the line must wait for the disk");
    assert_eq!(offsets(&path), vec![1], "nothing torn, nothing glued");
    disk.set(Fault::Healthy);
    tokio::time::timeout(Duration::from_secs(20), stuck)
        .await
        .expect("written once the disk has room")
        .unwrap();
    assert_eq!(offsets(&path), vec![1, 2]);
}

#[test]
fn a_failed_fsync_writes_the_unsynced_entries_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let disk = Faulty::default();
    let mut w = Writer::new(&path, 1 << 20, disk.shared(), Arc::new(Metrics::default()));
    w.write(pending(1, b"a\n")).unwrap();
    w.sync().unwrap();
    w.write(pending(2, b"b\n")).unwrap();
    w.write(pending(3, b"c\n")).unwrap();
    disk.set(Fault::Eio);
    w.sync().unwrap_err();
    disk.set(Fault::Healthy);
    w.sync().unwrap();
    assert_eq!(offsets(&path), vec![1, 2, 3], "once each, in order");
}

#[test]
fn a_torn_entry_left_by_a_crash_is_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let mut w = Writer::new(&path, 1 << 20, Disk::shared(), Arc::new(Metrics::default()));
    w.write(pending(1, b"a\n")).unwrap();
    w.sync().unwrap();
    drop(w);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"time\":\"2026-").unwrap();
    let mut w = Writer::new(&path, 1 << 20, Disk::shared(), Arc::new(Metrics::default()));
    w.write(pending(2, b"b\n")).unwrap();
    w.sync().unwrap();
    assert_eq!(offsets(&path), vec![1, 2]);
}

#[test]
fn rotation_keeps_one_older_file_and_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let metrics = Arc::new(Metrics::default());
    let one = pending(0, &[b'x'; 300]).encoded_len();
    // Three entries fit; the fourth rotates.
    let mut w = Writer::new(&path, one * 3 + 10, Disk::shared(), metrics.clone());
    for offset in 0..10 {
        w.write(pending(offset, &[b'x'; 300])).unwrap();
    }
    w.sync().unwrap();
    assert_eq!(offsets(&path), vec![9]);
    assert_eq!(offsets(&rotated(&path)), vec![6, 7, 8]);
    assert_eq!(metrics.dead_letter_entries_dropped.get(), 6);
    assert!(std::fs::metadata(&path).unwrap().len() <= one * 3 + 10);
}

#[derive(Clone, Debug)]
enum Op {
    /// A line of this many bytes: text, control bytes or binary.
    Write(usize, u8),
    Sync,
    Set(Fault),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..3000, 0u8..3).prop_map(|(n, k)| Op::Write(n, k)),
        2 => Just(Op::Sync),
        3 => prop_oneof![
            Just(Fault::Healthy),
            Just(Fault::ReadOnly),
            Just(Fault::Full),
            Just(Fault::Eio),
            Just(Fault::Short),
        ]
        .prop_map(Op::Set),
    ]
}

fn line(n: usize, kind: u8) -> Vec<u8> {
    match kind {
        0 => vec![b'a'; n],
        1 => (0u8..32).cycle().take(n).collect(),
        _ => (0..=255u8).rev().cycle().take(n).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any sequence of faults between writes and syncs: once the disk heals and a sync
    /// succeeds, the files parse entry by entry and hold exactly the entries whose
    /// write succeeded, in order — minus the ones a rotation dropped, which are
    /// counted.
    #[test]
    fn the_file_parses_entry_by_entry_after_any_faults(
        ops in proptest::collection::vec(op(), 1..60),
        max_bytes in 2_000u64..40_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let disk = Faulty::default();
        let metrics = Arc::new(Metrics::default());
        let mut w = Writer::new(&path, max_bytes, disk.shared(), metrics.clone());
        let mut written = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Write(n, kind) => {
                    if w.write(pending(i as u64, &line(*n, *kind))).is_ok() {
                        written.push(i as u64);
                    }
                }
                Op::Sync => { let _ = w.sync(); }
                Op::Set(f) => disk.set(*f),
            }
        }
        disk.set(Fault::Healthy);
        w.sync().unwrap();
        let mut found = offsets(&rotated(&path));
        found.extend(offsets(&path));
        let dropped = metrics.dead_letter_entries_dropped.get() as usize;
        prop_assert_eq!(&written[dropped..], &found[..]);
    }
}
