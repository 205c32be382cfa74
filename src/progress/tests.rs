use super::*;

fn id() -> Identity {
    Identity {
        dev: 1,
        ino: 2,
        fp_len: 3,
        fp_hash: 0xabc,
    }
}

fn span(start: u64, end: u64) -> Span {
    Span {
        file: 0,
        start,
        end,
        lines: 1,
    }
}

/// The age gauge is read from the ledger at each scrape (no timer keeps it): it
/// follows a batch from registration to acknowledgement.
#[test]
fn the_oldest_unacked_age_is_read_at_each_scrape() {
    let p = std::sync::Arc::new(Progress::default());
    p.open(0, &Chain::default(), &id(), Path::new("/log"), 0);
    let metrics = crate::metrics::Metrics::default();
    metrics.sample_age({
        let p = p.clone();
        move || p.oldest_unacked_age()
    });
    let age = |m: &crate::metrics::Metrics| {
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("firetail_oldest_unacked_age_seconds "))
            .expect("the gauge is exported")
            .to_owned();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    assert_eq!(age(&metrics), 0.0, "nothing registered");
    p.register(&[span(0, 10)]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(age(&metrics) >= 0.02, "a registered batch ages");
    p.ack(&[span(0, 10)]);
    assert_eq!(age(&metrics), 0.0, "acknowledged");
}

#[test]
fn offset_advances_only_over_contiguous_acks() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.register(&[span(0, 10), span(10, 20), span(20, 30)]);
    p.ack(&[span(10, 20)]);
    assert_eq!(
        p.entries()[0].offset,
        0,
        "an ack after a gap must not move the offset"
    );
    p.ack(&[span(0, 10)]);
    assert_eq!(p.entries()[0].offset, 20);
    p.ack(&[span(20, 30)]);
    assert_eq!(p.entries()[0].offset, 30);
}

#[test]
fn finished_files_leave_once_fully_acknowledged_and_durable() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/old"), 0);
    p.register(&[span(0, 10)]);
    p.finish(0, 10);
    assert_eq!(p.entries().len(), 1);
    p.ack(&[span(0, 10)]);
    let snap = p.snapshot();
    assert!(snap.entries.is_empty());
    assert_eq!(snap.dropped, vec![0]);
    assert_eq!(p.snapshot(), snap, "taking a snapshot changes nothing");
    p.persisted(&snap);
    assert!(p.snapshot().dropped.is_empty());
}

#[test]
fn the_window_counts_from_the_durable_offset() {
    let p = Progress::new(100, Gauges::default());
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.read_to(0, 100);
    assert_eq!(p.room(), 0);
    p.register(&[span(0, 100)]);
    p.ack(&[span(0, 100)]);
    assert_eq!(p.room(), 0, "acknowledged is not durable yet");
    p.persisted(&p.snapshot());
    assert_eq!(p.room(), 100);
}

/// A line in progress takes room once anything else is ahead of the checkpoint
/// (it will be ahead, whole, when it ends); alone, it takes none, so a line longer
/// than the window is never what stops the reading that would end it.
#[test]
fn a_line_in_progress_counts_unless_it_is_alone() {
    let p = Progress::new(100, Gauges::default());
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.read_to_holding(0, 60, 30);
    assert_eq!(p.room(), 10);
    assert!(p.under_pressure());
    p.register(&[span(0, 60)]);
    p.ack(&[span(0, 60)]);
    p.persisted(&p.snapshot());
    assert_eq!(p.read_ahead(), 0);
    assert_eq!(p.room(), 100, "the line in progress alone");
    p.read_to_holding(0, 60, 500);
    assert_eq!(p.room(), 100, "longer than the window, still alone");
}

#[test]
fn the_checkpoint_names_the_file_as_the_tail_last_saw_it() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/log/app.log"), 0);
    let grown = Identity {
        fp_len: 256,
        ..id()
    };
    p.set_identity(0, &grown);
    p.set_path(0, Path::new("/log/app.log.1"));
    p.seen(0, 500, 1_764_000_000_000_000_000);
    let e = &p.entries()[0];
    assert_eq!(e.identity, grown);
    assert_eq!(e.path, Path::new("/log/app.log.1"));
    assert_eq!(e.mtime_ns, Some(1_764_000_000_000_000_000));
    assert_eq!(p.size_of(0), 500);
    assert_eq!(p.path_of(0), Path::new("/log/app.log.1"));
    assert_eq!(
        (p.size_of(9), p.path_of(9)),
        (0, PathBuf::new()),
        "unknown key"
    );
}

#[test]
fn the_gauges_follow_reads_and_durable_checkpoints() {
    let gauges = Gauges::default();
    let p = Progress::new(1000, gauges.clone());
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.seen(0, 300, 1);
    p.read_to(0, 100);
    assert_eq!((gauges.unacked.get(), gauges.lag.get()), (100, 300));
    p.register(&[span(0, 100)]);
    p.ack(&[span(0, 100)]);
    p.persisted(&p.snapshot());
    assert_eq!((gauges.unacked.get(), gauges.lag.get()), (0, 200));
}

#[test]
fn unacknowledged_ranges_and_the_line_tally_follow_the_spans() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/old"), 0);
    p.open(1, &Chain::default(), &id(), Path::new("/new"), 0);
    p.read_to(0, 30);
    p.register(&[span(0, 10), span(10, 20)]);
    p.ack(&[span(0, 10)]);
    p.settled(3);
    let u = p.unacknowledged();
    assert_eq!(u.len(), 1, "the file with nothing read is not listed");
    assert_eq!(
        (u[0].path.as_path(), u[0].from_offset, u[0].to_offset),
        (Path::new("/old"), 10, 30)
    );
    let want = LineTally {
        settled: 3,
        registered: 2,
        acknowledged: 1,
        pending: 1,
    };
    assert_eq!(p.line_tally(), want);
    p.read_to(1, 7);
    p.register(&[Span {
        file: 1,
        ..span(0, 7)
    }]);
    p.ack(&[Span {
        file: 1,
        ..span(0, 7)
    }]);
    assert_eq!(p.current_offset(), Some(7), "the newest file's");
}

#[test]
fn a_finished_file_stays_while_lines_read_from_it_are_unregistered() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/old"), 0);
    p.read_to(0, 10);
    p.finish(0, 10);
    assert_eq!(
        p.entries().len(),
        1,
        "its last lines are still in the batcher"
    );
    p.register(&[span(0, 10)]);
    p.ack(&[span(0, 10)]);
    assert!(p.entries().is_empty());
}

#[test]
fn pressure_is_half_the_window_read_ahead_or_held() {
    let p = Progress::new(100, Gauges::default());
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.read_to_holding(0, 10, 10);
    assert_eq!(p.read_ahead(), 10);
    assert!(!p.under_pressure(), "20 of 100");
    p.read_to_holding(0, 30, 20);
    assert!(p.under_pressure(), "50 of 100");
}

fn poll<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

#[test]
fn the_tail_waits_for_room_until_a_checkpoint_is_durable() {
    let p = Progress::new(100, Gauges::default());
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    p.read_to(0, 100);
    let mut wait = std::pin::pin!(p.wait_for_room());
    assert!(poll(wait.as_mut()).is_pending(), "the window is full");
    p.register(&[span(0, 100)]);
    p.ack(&[span(0, 100)]);
    assert!(
        poll(wait.as_mut()).is_pending(),
        "acknowledged is not durable"
    );
    p.persisted(&p.snapshot());
    assert!(poll(wait.as_mut()).is_ready());
}

#[test]
fn the_checkpoint_writer_wakes_when_the_content_may_have_changed() {
    let p = Progress::default();
    p.open(0, &Chain::default(), &id(), Path::new("/x"), 0);
    assert!(poll(std::pin::pin!(p.changed())).is_ready(), "the open");
    let mut changed = std::pin::pin!(p.changed());
    assert!(poll(changed.as_mut()).is_pending(), "nothing new");
    p.set_path(0, Path::new("/x.1"));
    assert!(poll(changed.as_mut()).is_ready());
}

fn chain(source: &str, followed: &str) -> Chain {
    Chain::new(source, Path::new(followed))
}

fn span_of(file: FileKey, start: u64, end: u64) -> Span {
    Span {
        file,
        start,
        end,
        lines: 1,
    }
}

/// Reads `bytes` of whole lines of `key` from `from` (the tail's part), as far as the
/// file's room allows; returns the new offset.
fn read_lines(p: &Progress, key: FileKey, from: u64, bytes: u64) -> u64 {
    let n = bytes.min(p.room_for(key));
    p.read_to(key, from + n);
    from + n
}

const KIB: u64 = 1024;

/// One file bursting (its batches stuck), one slow: the burst stops at its share, and
/// the slow one has room for its own share whenever it has nothing ahead, however
/// often the burst tries.
#[test]
fn a_bursting_file_leaves_the_slow_one_its_share() {
    let window = 1024 * KIB;
    let p = Progress::new(window, Gauges::default());
    p.open(0, &chain("web", "/a"), &id(), Path::new("/a"), 0);
    p.open(1, &chain("api", "/b"), &id(), Path::new("/b"), 0);
    let share = window / 2;
    let (mut burst, mut slow) = (0, 0);
    for _ in 0..200 {
        burst = read_lines(&p, 0, burst, 10 * KIB);
        assert!(
            p.read_ahead_of(0) <= share,
            "the burst stays within its share"
        );
        assert_eq!(p.room_for(1), share, "the slow file's whole share is free");
        let before = slow;
        slow = read_lines(&p, 1, slow, 300);
        assert_eq!(slow - before, 300, "the slow file reads");
        p.register(&[span_of(1, before, slow)]);
        p.ack(&[span_of(1, before, slow)]);
        p.persisted(&p.snapshot());
    }
    assert_eq!(burst, share, "the burst took exactly its share");
    assert_eq!(p.room_for(0), 0);
    assert_eq!(p.room(), window - share, "the window itself is not full");
}

/// With more files than the window has 64 KiB shares for, each still gets 64 KiB: the
/// window bounds the sum, so the last files wait on the whole window, not a share.
#[test]
fn a_share_is_never_less_than_64_kib_and_the_window_still_bounds_the_sum() {
    let window = 256 * KIB;
    let p = Progress::new(window, Gauges::default());
    for k in 0..8 {
        p.open(
            k,
            &chain("logs", &format!("/{k}")),
            &id(),
            Path::new("/x"),
            0,
        );
    }
    assert_eq!(p.room_for(0), MIN_SHARE);
    let mut read = 0;
    for k in 0..8 {
        read += read_lines(&p, k, 0, u64::MAX);
    }
    assert_eq!(
        read, window,
        "four files took a share each, then the window was full"
    );
    assert_eq!((p.read_ahead_of(3), p.read_ahead_of(4)), (MIN_SHARE, 0));
    assert_eq!(p.room_for(4), 0, "its share is free, the window is not");
}

/// A file whose line in progress is longer than its share, while another file has
/// bytes ahead: with nothing of its own ahead it reads on to the line's end (as far as
/// the window allows), then waits for its own line to be durable.
#[test]
fn a_line_longer_than_the_share_is_read_to_its_end() {
    let window = 256 * KIB;
    let p = Progress::new(window, Gauges::default());
    for k in 0..4 {
        p.open(
            k,
            &chain("logs", &format!("/{k}")),
            &id(),
            Path::new("/x"),
            0,
        );
    }
    p.read_to(1, 10 * KIB);
    let line = 100 * KIB;
    let mut at = 0;
    while at < line {
        let budget = p.room_for(0);
        assert!(budget > 0, "not wedged at {at} of a {line}-byte line");
        at = (at + budget).min(line);
        let ended = at == line;
        p.read_to_holding(0, if ended { line } else { 0 }, if ended { 0 } else { at });
    }
    assert!(p.read_ahead_of(0) > MIN_SHARE);
    assert_eq!(p.room_for(0), 0, "its own line is ahead, beyond its share");
    assert!(p.room() > 0 && p.room_for(2) > 0, "the others read on");
    assert!(p.read_ahead() <= window);
    p.register(&[span_of(0, 0, line)]);
    p.ack(&[span_of(0, 0, line)]);
    p.persisted(&p.snapshot());
    assert_eq!(p.room_for(0), MIN_SHARE);
}

/// Waiting for room ends when a checkpoint is durable, and when another file is
/// finished (one fewer file shares the window).
#[test]
fn waiting_for_room_for_a_file_ends_when_its_share_grows_or_is_durable() {
    let window = 256 * KIB;
    let p = Progress::new(window, Gauges::default());
    p.open(0, &chain("web", "/a"), &id(), Path::new("/a"), 0);
    p.open(1, &chain("web", "/a"), &id(), Path::new("/a.1"), 0);
    p.read_to(0, window / 2);
    let mut wait = std::pin::pin!(p.wait_for_room_for(&[0]));
    assert!(poll(wait.as_mut()).is_pending(), "its share is taken");
    p.finish(1, 0);
    assert!(
        poll(wait.as_mut()).is_ready(),
        "its share grew to the window"
    );
    p.read_to(0, window);
    let mut wait = std::pin::pin!(p.wait_for_room_for(&[0]));
    assert!(poll(wait.as_mut()).is_pending(), "the window is full");
    p.register(&[span_of(0, 0, window)]);
    p.ack(&[span_of(0, 0, window)]);
    assert!(
        poll(wait.as_mut()).is_pending(),
        "acknowledged is not durable"
    );
    p.persisted(&p.snapshot());
    assert!(poll(wait.as_mut()).is_ready());
    assert!(poll(std::pin::pin!(p.wait_for_room_for(&[]))).is_ready());
}

/// The leading finished files are dropped per chain: source B's finished files leave
/// the checkpoint while source A's older file is pending, and A's finished file newer
/// than its pending one stays.
#[test]
fn finished_files_are_dropped_per_chain() {
    let p = Progress::default();
    let (a, b) = (chain("a", "/a.log"), chain("b", "/b.log"));
    p.open(0, &a, &id(), Path::new("/a.log.1"), 0);
    p.open(1, &b, &id(), Path::new("/b.log.1"), 0);
    p.open(2, &a, &id(), Path::new("/a.log.2"), 0);
    p.open(3, &b, &id(), Path::new("/b.log"), 0);
    p.open(4, &a, &id(), Path::new("/a.log"), 0);
    p.read_to(0, 10);
    p.register(&[span_of(0, 0, 10)]);
    for k in [0, 1, 2] {
        p.finish(k, if k == 0 { 10 } else { 0 });
    }
    let snap = p.snapshot();
    assert_eq!(
        snap.dropped,
        vec![1],
        "b's finished file, though a's is pending"
    );
    assert_eq!(snap.keys, vec![0, 2, 3, 4]);
    let sources: Vec<_> = snap.entries.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["a", "a", "b", "a"]);
    assert_eq!(snap.entries[2].followed, Path::new("/b.log"));
    p.ack(&[span_of(0, 0, 10)]);
    assert_eq!(
        p.snapshot().dropped,
        vec![0, 1, 2],
        "a's chain is done up to its current file"
    );
}

/// The report's view: which source each unacknowledged range belongs to; the one
/// checkpoint offset only while one path is followed; figures per source.
#[test]
fn the_report_sees_each_source() {
    let p = Progress::default();
    p.open(0, &chain("web", "/w"), &id(), Path::new("/w"), 0);
    p.read_to(0, 30);
    p.register(&[span_of(0, 0, 10), span_of(0, 10, 30)]);
    p.ack(&[span_of(0, 0, 10)]);
    assert_eq!(p.current_offset(), Some(10), "one chain");
    // A glob's files: one chain each.
    p.open(
        1,
        &chain("api", "/api-1.log"),
        &id(),
        Path::new("/api-1.log"),
        0,
    );
    p.open(
        2,
        &chain("api", "/api-2.log"),
        &id(),
        Path::new("/api-2.log"),
        5,
    );
    p.read_to(2, 12);
    assert_eq!(p.current_offset(), None, "several chains: no one offset");
    let u = p.unacknowledged();
    let got: Vec<_> = u
        .iter()
        .map(|u| (u.source.as_str(), u.from_offset, u.to_offset))
        .collect();
    assert_eq!(got, [("web", 10, 30), ("api", 5, 12)]);
    let per = p.per_source();
    let web = SourceLedger {
        files: 1,
        unacknowledged_bytes: 20,
        pending_lines: 1,
        checkpoint_offset: Some(10),
    };
    assert_eq!(per["web"], web);
    let api = SourceLedger {
        files: 2,
        unacknowledged_bytes: 7,
        pending_lines: 0,
        checkpoint_offset: None,
    };
    assert_eq!(per["api"], api, "a glob's files: no one offset");
    assert_eq!(per.len(), 2);
}
