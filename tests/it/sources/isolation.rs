//! A throttled stream holds up only its own lines: every call to one stream is
//! refused (ThrottlingException or a 503) while the other is healthy, with a backlog on
//! the throttled source larger than the whole duplicate window.

use std::time::{Duration, Instant};

use super::{
    distinct, family_fake, latency_bound, per_stream, percentiles, source_args, stream, Source,
    LONG,
};
use crate::support::eventually;
use crate::support::fake_firehose::{CallError, Faults, Outcome};
use crate::support::firetail::{access_lines, append, aws_env, Firetail};

/// The smallest window firetail takes; the throttled source's backlog is twice it.
const WINDOW: &str = "--max-unacked-bytes=4MiB";
const BACKLOG_LINES: usize = 28_000;
/// The healthy source: a line every 100 ms for 6 s.
const WEB_LINES: usize = 60;
const WEB_EVERY: Duration = Duration::from_millis(100);

#[test]
fn a_throttled_stream_does_not_delay_another_streams_lines() {
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let bulk = dir.path().join("bulk.log");
    let web = dir.path().join("web.log");
    let (bulk_stream, web_stream) = (stream(&fake, "bulk"), stream(&fake, "web"));
    fake.set_stream_faults(
        &bulk_stream,
        Some(Faults {
            call_error_rate: 1.0,
            call_errors: vec![CallError::Throttling, CallError::ServiceUnavailable503],
            ..Faults::default()
        }),
    );
    let mut bulk_lines = access_lines("bulk", 0..BACKLOG_LINES);
    append(&bulk, &bulk_lines);
    let flush = Duration::from_secs(1);
    let args = source_args(
        &[
            Source::new("bulk", &bulk, &bulk_stream),
            Source::new("web", &web, &web_stream),
        ],
        &[WINDOW, "--flush-interval=1s", "--call-timeout=10s"],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let refused = |fake: &crate::support::fake_firehose::FakeFirehose| {
        fake.calls()
            .iter()
            .filter(|c| c.stream == bulk_stream && matches!(c.outcome, Outcome::Error { .. }))
            .count()
    };
    assert!(
        eventually(LONG, || refused(&fake) >= 3),
        "the throttled stream was never called\n{}",
        ft.dump()
    );

    // The healthy source writes slowly, the throttled one keeps growing meanwhile.
    let web_lines = access_lines("web", 0..WEB_LINES);
    let mut written_at = Vec::new();
    for (i, line) in web_lines.iter().enumerate() {
        append(&web, std::slice::from_ref(line));
        written_at.push(Instant::now());
        if i % 10 == 0 {
            let more = access_lines("bulk", bulk_lines.len()..bulk_lines.len() + 200);
            append(&bulk, &more);
            bulk_lines.extend(more);
        }
        std::thread::sleep(WEB_EVERY);
    }
    assert!(
        eventually(LONG, || fake.accepted_lines_of(&web_stream).len()
            >= WEB_LINES),
        "the healthy stream's lines did not all arrive while the other was throttled\n{}",
        ft.dump()
    );
    assert!(
        fake.accepted_lines_of(&bulk_stream).is_empty(),
        "the throttled stream accepted lines: the scenario proves nothing"
    );
    let arrived: std::collections::HashMap<String, Instant> = fake
        .accepted_lines_by_stream()
        .into_iter()
        .filter(|l| *l.stream == *web_stream)
        .map(|l| (l.line, l.received))
        .collect();
    let latencies: Vec<Duration> = web_lines
        .iter()
        .zip(&written_at)
        .map(|(l, at)| arrived[l].saturating_duration_since(*at))
        .collect();
    let (p50, p99, max) = percentiles(&latencies);
    let bound = latency_bound(flush);
    println!(
        "sources isolation: healthy stream's latency while the other is throttled: p50={p50:.0}ms p99={p99:.0}ms max={max:.0}ms (bound {}ms), throttled calls refused={}",
        bound.as_millis(),
        refused(&fake)
    );
    assert!(
        latencies.iter().all(|l| *l <= bound),
        "a healthy stream's line took {max:.0} ms, more than the promised {bound:?}\n{}",
        ft.dump()
    );

    // The throttled stream recovers: its whole backlog arrives.
    fake.set_stream_faults(&bulk_stream, None);
    let total = bulk_lines.len() + web_lines.len();
    assert!(
        eventually(LONG, || distinct(&fake) >= total),
        "{} of {total} lines arrived after the throttling stopped\n{}",
        distinct(&fake),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let figures = per_stream(
        "isolation",
        &fake,
        &[
            (bulk_stream.as_str(), &bulk_lines),
            (web_stream.as_str(), &web_lines),
        ],
        0,
        &ft,
    );
    for (s, f) in &figures {
        assert_eq!(
            f.duplicated, 0,
            "{s}: refused calls accept nothing, yet duplicates"
        );
    }
}
