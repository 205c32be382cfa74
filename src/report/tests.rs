use super::*;
use crate::progress::Chain;

#[test]
fn a_failed_task_means_exit_1_even_when_everything_was_delivered() {
    let m = Metrics::default();
    let p = Progress::default();
    let mut r = report(&m, &p, Duration::ZERO, DrainEnd::Drained);
    assert_eq!(r.exit_code(), 0);
    r.failed_task = Some("tail".into());
    assert_eq!(r.exit_code(), 1);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["failed_task"], "tail");
    r.failed_task = None;
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("failed_task").is_none(), "absent when none failed");
}

/// A ledger for one file with `read` lines read, and the outcome counters.
fn books(read: u64) -> (Metrics, Progress) {
    let m = Metrics::default();
    m.source(0).lines_read.inc_by(read);
    let p = Progress::default();
    let id = crate::progress::Identity {
        dev: 1,
        ino: 2,
        fp_len: 0,
        fp_hash: 0,
    };
    p.open(0, &Chain::default(), &id, std::path::Path::new("/log"), 0);
    (m, p)
}

/// Ten lines at `start` (lines of 10 bytes).
fn ten(start: u64) -> crate::progress::Span {
    crate::progress::Span {
        file: 0,
        start: start * 10,
        end: (start + 10) * 10,
        lines: 10,
    }
}

/// `lines` settled as `outcome`, counted by the stage (the outcome counters) and
/// by the ledger, as the pipeline does.
fn settle(m: &Metrics, p: &Progress, outcome: &str, lines: u64) {
    let s = m.source(0);
    match outcome {
        "shipped" => {
            s.lines_shipped.inc_by(lines);
        }
        "skipped" => (0..lines).for_each(|_| s.skip(SkipReason::Empty)),
        _ => s.dead_letter(DeadLetterReason::Oversize, lines),
    };
    p.settled(lines);
}

/// The log lines `f` emits, as JSON.
fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The ERROR for counts that do not add up, with its figures, and the exit code.
fn mismatch_error(m: &Metrics, p: &Progress) -> (serde_json::Value, u8) {
    let r = report(m, p, Duration::ZERO, DrainEnd::Drained);
    let logs = logged(|| log_report(m, &r));
    let error = logs
        .into_iter()
        .find(|v| v["level"] == "ERROR" && v.get("ledger_registered").is_some())
        .unwrap_or_else(|| panic!("no ERROR for {r:?}"));
    assert!(r.count_mismatch.is_some());
    (error, r.exit_code())
}

/// Undelivered is what the ledger never saw settled — here a batch half shipped
/// when the deadline came, and lines never registered — and the identity holds.
#[test]
fn undelivered_is_counted_by_the_ledger_and_the_identity_holds() {
    let (m, p) = books(40);
    p.register(&[ten(0), ten(10), ten(20)]);
    // ten(0): 7 shipped, 3 skipped; ten(20): 10 dead-lettered; both acknowledged.
    settle(&m, &p, "shipped", 7);
    settle(&m, &p, "skipped", 3);
    settle(&m, &p, "dead_lettered", 10);
    p.ack(&[ten(0), ten(20)]);
    // ten(10): 4 of its lines shipped, 6 still waiting; 30..40 never registered.
    settle(&m, &p, "shipped", 4);
    let r = report(&m, &p, Duration::ZERO, DrainEnd::Deadline);
    assert_eq!((r.undelivered, &r.count_mismatch), (16, &None), "{r:?}");
    assert_eq!(r.exit_code(), 1, "lines left undelivered");
    let logs = logged(|| log_report(&m, &r));
    assert!(logs.iter().all(|v| v.get("ledger_registered").is_none()));
    settle(&m, &p, "shipped", 6);
    p.ack(&[ten(10)]);
    let r = report(&m, &p, Duration::ZERO, DrainEnd::Deadline);
    assert_eq!((r.undelivered, &r.count_mismatch), (10, &None), "{r:?}");
}

/// A batch's lines counted shipped twice: the old `read − settled` gave 0
/// undelivered and exit 0 here; the ledger's count shows the sum exceeds what was
/// read.
#[test]
fn a_batch_counted_shipped_twice_is_an_error_naming_the_figures_and_exit_1() {
    let (m, p) = books(20);
    p.register(&[ten(0), ten(10)]);
    settle(&m, &p, "shipped", 10);
    p.ack(&[ten(0)]);
    m.source(0).lines_shipped.inc_by(10);
    let (error, code) = mismatch_error(&m, &p);
    assert_eq!(code, 1);
    assert_eq!(
        [
            &error["lines_read"],
            &error["lines_shipped"],
            &error["dead_lettered"],
            &error["skipped"],
            &error["undelivered"],
        ],
        [20, 20, 0, 0, 10]
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Line counts do not add up"),
        "{message}"
    );
}

/// A span acknowledged twice (here in place of another): the identity alone still
/// adds up, the ledger's books do not.
#[test]
fn a_span_acknowledged_twice_is_an_error_and_exit_1() {
    let (m, p) = books(20);
    p.register(&[ten(0), ten(10)]);
    settle(&m, &p, "shipped", 10);
    p.ack(&[ten(0)]);
    p.ack(&[ten(0)]);
    let (error, code) = mismatch_error(&m, &p);
    assert_eq!(code, 1);
    assert_eq!(
        [
            &error["ledger_registered"],
            &error["ledger_acknowledged"],
            &error["ledger_pending"],
        ],
        [20, 20, 10]
    );
}

/// A record settled twice by the ship stage: the ledger's count runs past what was
/// read, which no saturation at 0 undelivered may hide.
#[test]
fn a_record_settled_twice_in_the_ledger_is_an_error_and_exit_1() {
    let (m, p) = books(10);
    p.register(&[ten(0)]);
    settle(&m, &p, "shipped", 10);
    p.settled(10);
    p.ack(&[ten(0)]);
    let (error, code) = mismatch_error(&m, &p);
    assert_eq!((error["ledger_settled"].as_u64(), code), (Some(20), 1));
}

/// A span acknowledged before its lines were settled: more acknowledged than
/// settled.
#[test]
fn a_span_acknowledged_before_its_lines_settled_is_an_error_and_exit_1() {
    let (m, p) = books(10);
    p.register(&[ten(0)]);
    p.ack(&[ten(0)]);
    let (error, code) = mismatch_error(&m, &p);
    assert_eq!((error["ledger_acknowledged"].as_u64(), code), (Some(10), 1));
    assert_eq!(error["undelivered"], 10);
}

/// The kubelet keeps 4,096 bytes of a termination message: the line a person
/// reads comes first and survives however long the report's error text is.
#[test]
fn the_termination_message_fits_the_kubelets_limit_and_leads_with_the_outcome() {
    let m = Metrics::default();
    let p = Progress::default();
    let mut r = report(&m, &p, Duration::ZERO, DrainEnd::Error);
    r.failed_task = Some("tail".into());
    r.failed_error = Some("é".repeat(10_000));
    let text = termination_message(&r, 1);
    assert!(text.len() <= TERMINATION_MESSAGE_MAX, "{}", text.len());
    assert!(text.starts_with(
        "firetail exit 1: drain error, 0 lines read, 0 shipped, 0 undelivered, failed task: tail\n"
    ));
}

fn sources(names: &[&str]) -> Metrics {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    Metrics::new(&names, &["stream".to_string()])
}

/// Two sources: each source's figures come from its own counters, the totals add
/// them up, the identity holds on the totals, and the log line and the termination
/// message give both.
#[test]
fn the_report_gives_each_sources_figures_and_the_totals() {
    let m = sources(&["web", "audit"]);
    let p = Progress::default();
    let (web, audit) = (m.source(0), m.source(1));
    web.lines_read.inc_by(10);
    web.lines_shipped.inc_by(7);
    web.skip(SkipReason::Header);
    web.dead_letter(DeadLetterReason::InvalidJson, 2);
    audit.lines_read.inc_by(5);
    audit.lines_shipped.inc_by(3);
    p.settled(7 + 1 + 2 + 3);
    let r = report(&m, &p, Duration::ZERO, DrainEnd::Deadline);
    let source = |source: &str, read, shipped, dead, skipped, undelivered| SourceReport {
        source: source.into(),
        lines_read: read,
        lines_shipped: shipped,
        dead_lettered: dead,
        skipped,
        undelivered,
    };
    assert_eq!(
        r.sources,
        [
            source("web", 10, 7, 2, 1, 0),
            source("audit", 5, 3, 0, 0, 2)
        ]
    );
    assert_eq!(
        (
            r.lines_read,
            r.lines_shipped,
            r.undelivered,
            &r.count_mismatch
        ),
        (15, 10, 2, &None)
    );
    assert_eq!((r.skipped_header, r.dead_lettered_invalid_json), (1, 2));
    let logs = logged(|| log_report(&m, &r));
    let line = logs
        .iter()
        .find(|v| v["message"] == "Drain report.")
        .unwrap();
    let logged: serde_json::Value =
        serde_json::from_str(line["sources"].as_str().unwrap()).unwrap();
    assert_eq!(logged[1]["source"], "audit");
    assert_eq!(logged[1]["undelivered"], 2);
    let error = logs.iter().find(|v| v["level"] == "ERROR").unwrap();
    assert_eq!(error["sources_undelivered"], "audit=2");
    let text = termination_message(&r, 1);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "firetail exit 1: drain deadline, 15 lines read, 10 shipped, 2 undelivered",
            "source web: 10 read, 7 shipped, 2 dead-lettered, 1 skipped, 0 undelivered",
            "source audit: 5 read, 3 shipped, 0 dead-lettered, 0 skipped, 2 undelivered",
        ]
    );
    let totals: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(
        (totals["lines_read"].as_u64(), totals.get("sources")),
        (Some(15), None)
    );
}

/// Two hundred sources with long names: the message keeps the kubelet's limit, lists
/// the sources that fit, says how many more there are, and still ends with the
/// totals as JSON that parses.
#[test]
fn the_termination_message_with_200_sources_fits_and_counts_the_rest() {
    let names: Vec<String> = (0..200)
        .map(|i| format!("source-{i:03}-{}", "x".repeat(20)))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let m = sources(&refs);
    for s in m.sources() {
        s.lines_read.inc_by(1_000_000_000);
    }
    let r = report(&m, &Progress::default(), Duration::ZERO, DrainEnd::Deadline);
    let text = termination_message(&r, 1);
    assert!(text.len() <= TERMINATION_MESSAGE_MAX, "{}", text.len());
    let listed = text.lines().filter(|l| l.starts_with("source ")).count();
    let more = format!("… and {} more sources", 200 - listed);
    assert!(listed > 1 && listed < 200, "{listed}");
    assert!(text.lines().any(|l| l == more), "{more} missing:\n{text}");
    let last = text.lines().last().unwrap();
    let totals: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(totals["lines_read"], 200_000_000_000u64);
}

/// The one-source form reads naturally: one line for the source `default`.
#[test]
fn one_source_gives_one_line_named_default() {
    let (m, p) = books(3);
    settle(&m, &p, "shipped", 3);
    let r = report(&m, &p, Duration::ZERO, DrainEnd::Drained);
    let text = termination_message(&r, 0);
    assert_eq!(
        text.lines().nth(1),
        Some("source default: 3 read, 3 shipped, 0 dead-lettered, 0 skipped, 0 undelivered")
    );
}
