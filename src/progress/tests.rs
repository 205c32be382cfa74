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
    p.open(0, &id(), Path::new("/log"), 0);
    let metrics = crate::metrics::Metrics::new();
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
    p.open(0, &id(), Path::new("/x"), 0);
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
    p.open(0, &id(), Path::new("/old"), 0);
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
    p.open(0, &id(), Path::new("/x"), 0);
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
    p.open(0, &id(), Path::new("/x"), 0);
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
