use super::*;
use crate::progress::Gauges;
use std::io::Write;

fn follower(path: &Path, progress: Arc<Progress>) -> Follower {
    let settings = FollowSettings {
        path: path.to_path_buf(),
        read_from: ReadFrom::Beginning,
        rotate_wait: Duration::from_secs(30),
        own_files: Vec::new(),
        source: 0,
        source_name: "default".to_string(),
    };
    let (m, h) = (Arc::new(Metrics::default()), Arc::new(Health::default()));
    Follower::new(&settings, &[], progress, m, h).unwrap()
}

/// The drain's end reads in bounded steps and never past the duplicate window: a
/// full window is "call again", never "at the end", and the partial last line only
/// leaves once the file was read to its end.
#[test]
fn the_drain_finishes_in_steps_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut f = File::create(&path).unwrap();
    for i in 0..2000 {
        writeln!(f, "{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).unwrap();
    }
    write!(f, "{{\"partial\":true}}").unwrap();
    let progress = Arc::new(Progress::new(64 * 1024, Gauges::default()));
    let mut fol = follower(&path, progress.clone());
    let mut lines = Vec::new();
    let mut steps = 0;
    while fol.finish(&mut lines).unwrap() {
        steps += 1;
        let read = lines.iter().map(|l| l.size).sum::<u64>();
        assert!(
            read <= 64 * 1024 + 1024,
            "read {read} bytes past the window"
        );
        if progress.room() == 0 {
            assert!(
                fol.finish(&mut lines).unwrap(),
                "a full window is not the end"
            );
            progress.persisted(&progress.snapshot());
            let spans: Vec<_> = lines
                .iter()
                .map(|l| crate::progress::Span {
                    file: l.file,
                    start: l.start,
                    end: l.end,
                    lines: 1,
                })
                .collect();
            progress.register(&spans);
            progress.ack(&spans);
            progress.persisted(&progress.snapshot());
            lines.clear();
        }
        assert!(steps < 1000);
    }
    assert!(steps > 3, "the drain read in steps");
    assert_eq!(
        lines.last().map(|l| &l.data[..]),
        Some(&b"{\"partial\":true}\n"[..]),
        "the partial last line leaves at the very end, with a newline"
    );
}

/// The checkpoint names a file where it is now: a rename is followed.
#[test]
fn the_checkpoint_path_follows_a_renamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    std::fs::write(&path, "{\"a\":1}\n").unwrap();
    let progress = Arc::new(Progress::default());
    let mut fol = follower(&path, progress.clone());
    let mut lines = Vec::new();
    while fol.poll(&mut lines).unwrap() {}
    std::fs::rename(&path, dir.path().join("access.log.0")).unwrap();
    std::fs::write(&path, "{\"b\":2}\n").unwrap();
    while fol.poll(&mut lines).unwrap() {}
    let paths: Vec<PathBuf> = progress
        .snapshot()
        .entries
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, [dir.path().join("access.log.0"), path]);
    assert_eq!(lines.len(), 2);
}

/// At most 64 finished rotated files stay open; the oldest finished go first, each
/// counted.
#[test]
fn at_most_64_finished_rotated_files_stay_open_oldest_let_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let progress = Arc::new(Progress::default());
    let metrics = Arc::new(Metrics::default());
    let settings = FollowSettings {
        path: path.clone(),
        read_from: ReadFrom::Beginning,
        rotate_wait: Duration::from_secs(3600),
        own_files: Vec::new(),
        source: 0,
        source_name: "default".to_string(),
    };
    let mut fol = Follower::new(
        &settings,
        &[],
        progress,
        metrics.clone(),
        Arc::new(Health::default()),
    )
    .unwrap();
    let mut lines = Vec::new();
    for i in 0..70 {
        std::fs::write(&path, format!("{{\"i\":{i}}}\n")).unwrap();
        while fol.poll(&mut lines).unwrap() {}
        std::fs::rename(&path, dir.path().join(format!("access.log.{i}"))).unwrap();
    }
    std::fs::write(&path, "{\"i\":70}\n").unwrap();
    while fol.poll(&mut lines).unwrap() {}
    while fol.poll(&mut lines).unwrap() {}
    assert_eq!(
        lines.len(),
        71,
        "every line read before any file was let go"
    );
    assert_eq!(fol.rotated.len(), MAX_FINISHED_OPEN);
    assert_eq!(
        metrics.rotated_files_evicted.get(),
        70 - MAX_FINISHED_OPEN as u64
    );
    let first_kept = dir
        .path()
        .join(format!("access.log.{}", 70 - MAX_FINISHED_OPEN));
    assert_eq!(
        fol.rotated[0].path, first_kept,
        "the oldest finished went first"
    );
}
