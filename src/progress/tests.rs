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
