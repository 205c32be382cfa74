use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::progress::{Chain, Identity, Span};
use crate::store::faulty::{Fault, Faulty};

fn id() -> Identity {
    Identity {
        dev: 1,
        ino: 2,
        fp_len: 3,
        fp_hash: 0xabc,
    }
}

fn aside_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect()
}

/// The offset of the first file in the checkpoint on disk, if it parses.
fn offset_on_disk(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    format::decode(&bytes).ok()?.first().map(|e| e.offset)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn write_is_atomic_and_skips_unchanged_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 5);
    p.seen(0, 5, 1_700_000_000_000_000_001);
    let mut cp = Checkpointer::new(&path, metrics.clone());
    assert!(cp.write(&p).unwrap());
    assert!(
        !cp.write(&p).unwrap(),
        "unchanged state must not be rewritten"
    );
    assert_eq!(metrics.checkpoint_writes.get(), 1);
    assert!(!dir.path().join("cp.json.tmp").exists());
    let entries = Checkpointer::new(&path, metrics).try_load().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].offset, 5);
    assert_eq!(entries[0].identity, id());
    assert_eq!(entries[0].mtime_ns, Some(1_700_000_000_000_000_001));
}

#[test]
fn a_version_1_checkpoint_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    std::fs::write(&path, br#"{"version":1,"files":[{"path":"/x","dev":1,"inode":2,"fingerprint_len":3,"fingerprint":"0000000000000abc","offset":77}]}"#).unwrap();
    let entries = Checkpointer::new(&path, Arc::new(Metrics::default()))
        .try_load()
        .unwrap();
    assert_eq!(entries[0].offset, 77);
    assert_eq!(entries[0].identity, id());
    assert!(
        aside_files(dir.path()).is_empty(),
        "version 1 is not corrupt"
    );
}

#[test]
fn corrupt_checkpoints_are_moved_aside_and_counted() {
    for bad in [
        &b"{\"version\": 2, \"fil"[..],
        b"{\"version\": 9, \"files\": []}",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, bad).unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut cp = Checkpointer::new(&path, metrics.clone());
        assert!(cp.try_load().unwrap().is_empty());
        assert!(!path.exists());
        let aside = aside_files(dir.path());
        assert_eq!(aside.len(), 1, "the bad file is kept for inspection");
        assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), bad);
        assert_eq!(metrics.checkpoint_corrupt.get(), 1);
    }
}

/// EACCES and EIO are not corruption: the file stays where it is, untouched, and
/// loading fails instead of resuming from nothing.
#[test]
fn an_unreadable_checkpoint_is_left_in_place_and_not_resumed_from_scratch() {
    for fault in [Fault::Denied, Fault::Eio] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let metrics = Arc::new(Metrics::default());
        let p = Progress::default();
        p.open(0, &Chain::default(), &id(), Path::new("/x"), 42);
        Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
        let before = std::fs::read(&path).unwrap();
        let disk = Faulty::default();
        let mut cp = Checkpointer::with_store(&path, metrics.clone(), disk.shared());
        disk.set(fault);
        let err = cp.try_load().unwrap_err();
        assert_eq!(err.path, path);
        let errno = if fault == Fault::Denied {
            libc::EACCES
        } else {
            libc::EIO
        };
        assert_eq!(err.error.raw_os_error(), Some(errno));
        assert!(
            err.to_string().contains(&format!("os error {errno}")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "never overwritten");
        assert!(aside_files(dir.path()).is_empty(), "never moved aside");
        assert_eq!(metrics.checkpoint_corrupt.get(), 0);
        disk.set(Fault::Healthy);
        assert_eq!(cp.try_load().unwrap()[0].offset, 42);
    }
}

#[tokio::test]
async fn loading_waits_for_an_unreadable_checkpoint_and_is_not_ready_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 42);
    Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
    let disk = Faulty::default();
    disk.set(Fault::Eio);
    let health = Arc::new(Health::default());
    let mut cp = Checkpointer::with_store(&path, metrics, disk.shared());
    let h = health.clone();
    let load = tokio::spawn(async move { cp.load_retrying(&h).await });
    wait_for("not ready", || {
        health.checkpoint_unreadable.load(Ordering::Relaxed)
    })
    .await;
    // Several retries pass (100 ms, 200 ms, 400 ms …) and it is still waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!load.is_finished(), "must not start without the checkpoint");
    disk.set(Fault::Healthy);
    let entries = tokio::time::timeout(Duration::from_secs(20), load)
        .await
        .expect("loads once readable")
        .unwrap();
    assert_eq!(entries[0].offset, 42);
    assert!(!health.checkpoint_unreadable.load(Ordering::Relaxed));
}

#[test]
fn a_complete_leftover_temp_file_wins_over_an_older_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 5);
    Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
    // An interrupted write: the temp file was synced but never renamed.
    let newer = vec![FileEntry {
        offset: 9,
        ..p.entries()[0].clone()
    }];
    std::fs::write(dir.path().join("cp.json.tmp"), format::encode(&newer)).unwrap();
    let entries = Checkpointer::new(&path, metrics).try_load().unwrap();
    assert_eq!(entries[0].offset, 9);
}

#[test]
fn an_incomplete_leftover_temp_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 5);
    Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
    std::fs::write(dir.path().join("cp.json.tmp"), b"{\"vers").unwrap();
    let entries = Checkpointer::new(&path, metrics).try_load().unwrap();
    assert_eq!(entries[0].offset, 5);
    assert!(!dir.path().join("cp.json.tmp").exists());
}

/// A failing disk: it goes read-only, full, EIO and short-writing while
/// lines are acknowledged, then heals — and no acknowledgement arrives after that.
/// The checkpoint must still catch up, on the retry timer alone.
#[tokio::test]
async fn the_checkpoint_catches_up_after_the_disk_heals_without_new_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let progress = Arc::new(Progress::new(1000, Default::default()));
    progress.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    let disk = Faulty::default();
    let cp = Checkpointer::with_store(&path, metrics.clone(), disk.shared());
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(run(cp, progress.clone(), stop_rx));
    wait_for("the first checkpoint", || offset_on_disk(&path) == Some(0)).await;

    let (mut end, mut durable) = (0, 0);
    for fault in [Fault::ReadOnly, Fault::Full, Fault::Eio, Fault::Short] {
        disk.set(fault);
        let failures = metrics.checkpoint_write_failures.get();
        let span = Span {
            file: 0,
            start: end,
            end: end + 100,
            lines: 1,
        };
        end += 100;
        progress.read_to(0, end);
        progress.register(&[span]);
        progress.ack(&[span]);
        if fault == Fault::Short {
            // Short writes are not failures: the writer finishes them.
            wait_for("short writes complete", || {
                offset_on_disk(&path) == Some(end)
            })
            .await;
            durable = end;
        } else {
            wait_for("a failed write is counted", || {
                metrics.checkpoint_write_failures.get() > failures
            })
            .await;
            assert_eq!(offset_on_disk(&path), Some(durable), "{fault:?}");
        }
    }
    disk.set(Fault::ReadOnly);
    let span = Span {
        file: 0,
        start: end,
        end: end + 100,
        lines: 1,
    };
    progress.read_to(0, end + 100);
    progress.register(&[span]);
    progress.ack(&[span]);
    end += 100;
    let failures = metrics.checkpoint_write_failures.get();
    wait_for("fails while read-only", || {
        metrics.checkpoint_write_failures.get() > failures
    })
    .await;
    assert_eq!(progress.room(), 900, "not durable: the window stays used");
    // The disk heals; nothing is acknowledged from here on.
    disk.set(Fault::Healthy);
    wait_for("the checkpoint catches up", || {
        offset_on_disk(&path) == Some(end)
    })
    .await;
    wait_for("the window is freed", || progress.room() == 1000).await;
    assert!(metrics.checkpoint_write_failures.get() >= 4);
    stop_tx.send(true).unwrap();
    writer.await.unwrap();
}

/// A version 2 checkpoint read by a firetail with several sources: each file goes to
/// the source that follows it, the one no source follows is dropped, and the next
/// write is version 3 with what was kept.
#[test]
fn a_version_2_checkpoint_is_placed_in_the_configured_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    std::fs::write(
        &path,
        br#"{"version": 2, "files": [
        {"path": "/log/web.log.1", "dev": 1, "inode": 2, "fingerprint_len": 3,
         "fingerprint": "0000000000000abc", "offset": 10, "mtime_ns": 5},
        {"path": "/log/api-1.log", "dev": 1, "inode": 3, "fingerprint_len": 3,
         "fingerprint": "0000000000000abc", "offset": 20},
        {"path": "/elsewhere/gone.log", "dev": 1, "inode": 4, "fingerprint_len": 3,
         "fingerprint": "0000000000000abc", "offset": 30}]}"#,
    )
    .unwrap();
    let sources = [
        ("web", PathBuf::from("/log/web.log")),
        ("api", PathBuf::from("/log/api-*.log")),
    ];
    let metrics = Arc::new(Metrics::default());
    let mut cp = Checkpointer::new(&path, metrics.clone()).with_sources(&sources);
    let entries = cp.try_load().unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.source.as_str(), e.followed.to_str().unwrap(), e.offset))
        .collect();
    assert_eq!(
        got,
        [("web", "/log/web.log", 10), ("api", "/log/api-1.log", 20)]
    );
    assert!(
        aside_files(dir.path()).is_empty(),
        "version 2 is not corrupt"
    );
    // The tail resumes them in their chains; the next checkpoint is version 3.
    let p = Progress::default();
    for (key, e) in entries.iter().enumerate() {
        let chain = Chain::new(&e.source, &e.followed);
        p.open(key as u32, &chain, &e.identity, &e.path, e.offset);
    }
    cp.write(&p).unwrap();
    let again = Checkpointer::new(&path, metrics).try_load().unwrap();
    assert_eq!(
        again,
        entries
            .iter()
            .map(|e| FileEntry {
                mtime_ns: None,
                ..e.clone()
            })
            .collect::<Vec<_>>()
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("\"version\": 3"));
}

/// A version 3 checkpoint after a source was removed: its files are dropped, the
/// others' kept as written.
#[test]
fn a_removed_source_loses_its_entries_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    let metrics = Arc::new(Metrics::default());
    let p = Progress::default();
    p.open(
        0,
        &Chain::new("web", Path::new("/log/web.log")),
        &id(),
        Path::new("/log/web.log"),
        5,
    );
    p.open(
        1,
        &Chain::new("api", Path::new("/log/api.log")),
        &id(),
        Path::new("/log/api.log"),
        6,
    );
    Checkpointer::new(&path, metrics.clone()).write(&p).unwrap();
    let all = Checkpointer::new(&path, metrics.clone())
        .try_load()
        .unwrap();
    assert_eq!(all.len(), 2, "without sources, as written");
    let entries = Checkpointer::new(&path, metrics)
        .with_sources(&[("web", "/log/web.log")])
        .try_load()
        .unwrap();
    assert_eq!(entries, all[..1]);
}
