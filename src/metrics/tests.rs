use super::*;
use crate::outcome::CallOutcome;

#[test]
fn series_carry_the_prefix() {
    let m = Metrics::default();
    m.source(0).lines_read.inc_by(3);
    m.stream(0).call(CallOutcome::Ok);
    let text = m.encode();
    assert!(
        text.contains("firetail_lines_read_total{source=\"default\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("firetail_put_record_batch_calls_total{outcome=\"ok\",stream=\"default\"} 1"),
        "{text}"
    );
}

#[test]
fn every_labelled_counter_exists_at_zero_from_start() {
    let text = Metrics::default().encode();
    for o in CallOutcome::ALL.map(CallOutcome::as_str) {
        let series = format!(
            "firetail_put_record_batch_calls_total{{outcome=\"{o}\",stream=\"default\"}} 0"
        );
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for r in DeadLetterReason::ALL.map(DeadLetterReason::as_str) {
        let series = format!("firetail_dead_lettered_total{{reason=\"{r}\",source=\"default\"}} 0");
        assert!(text.contains(&series), "{series} missing");
    }
    for r in SkipReason::ALL.map(SkipReason::as_str) {
        let series = format!("firetail_lines_skipped_total{{reason=\"{r}\",source=\"default\"}} 0");
        assert!(text.contains(&series), "{series} missing");
    }
}

#[test]
fn text_format_names_counters_by_their_samples_and_has_no_eof() {
    let m = Metrics::default();
    m.source(0).lines_read.inc_by(3);
    let text = m.encode_text();
    assert!(
        text.contains("# TYPE firetail_lines_read_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP firetail_lines_read_total Lines read"),
        "{text}"
    );
    assert!(
        text.contains("\nfiretail_lines_read_total{source=\"default\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE firetail_in_flight_calls gauge\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    assert!(m.encode().ends_with("# EOF\n"));
    // Every TYPE line names a sample that follows it.
    for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = name.split_once(' ').unwrap();
        let sample = if kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.to_string()
        };
        assert!(
            text.lines()
                .any(|l| l.starts_with(&sample) && !l.starts_with('#')),
            "{name}"
        );
    }
}

#[test]
fn build_info_names_version_and_commit() {
    let text = Metrics::default().encode();
    let want = format!(
        "firetail_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("FIRETAIL_COMMIT")
    );
    assert!(text.contains(&want), "{want} missing:\n{text}");
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Two sources on two streams: each line-level series once per source, each control
/// series once per stream, every one at 0 from the start; what one source counts
/// shows under its name only, and the totals add the sources up.
#[test]
fn line_series_are_per_source_and_control_series_per_stream() {
    let m = Metrics::new(
        &names(&["web", "audit"]),
        &names(&["web-logs", "audit-logs"]),
    );
    let text = m.encode();
    for source in ["web", "audit"] {
        for series in [
            "lines_read_total",
            "lines_shipped_total",
            "invalid_json_lines_total",
            "files_opened_total",
            "rotations_total",
            "truncations_total",
            "files_followed",
            "files_not_followed",
            "fields_app_kept_total",
            "fields_not_object_total",
        ] {
            let want = format!("firetail_{series}{{source=\"{source}\"}} 0\n");
            assert!(text.contains(&want), "{want} missing:\n{text}");
        }
    }
    for stream in ["web-logs", "audit-logs"] {
        for series in [
            "in_flight_calls",
            "in_flight_limit",
            "flush_interval_seconds",
            "send_rate_limit_records",
            "throttled_total",
            "throttled_records_total",
            "throttled_calls_total",
            "records_retried_total",
        ] {
            let want = format!("firetail_{series}{{stream=\"{stream}\"}} 0");
            assert!(text.contains(&want), "{want} missing:\n{text}");
        }
    }
    m.source(1).lines_read.inc_by(5);
    m.source(0).lines_read.inc_by(2);
    m.source(1).dead_letter(DeadLetterReason::Oversize, 3);
    m.source(0).skip(SkipReason::Header);
    m.stream(1).in_flight_limit.set(4);
    let text = m.encode();
    for want in [
        "firetail_lines_read_total{source=\"audit\"} 5\n",
        "firetail_lines_read_total{source=\"web\"} 2\n",
        "firetail_dead_lettered_total{reason=\"oversize\",source=\"audit\"} 3\n",
        "firetail_dead_lettered_total{reason=\"oversize\",source=\"web\"} 0\n",
        "firetail_lines_skipped_total{reason=\"header\",source=\"web\"} 1\n",
        "firetail_in_flight_limit{stream=\"audit-logs\"} 4\n",
        "firetail_in_flight_limit{stream=\"web-logs\"} 0\n",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert_eq!(m.total_lines_read(), 7);
    assert_eq!(m.dead_lettered(DeadLetterReason::Oversize), 3);
    assert_eq!(m.skipped(SkipReason::Header), 1);
    // The series that belong to neither stay unlabelled.
    assert!(
        text.contains("\nfiretail_records_shipped_total 0\n"),
        "{text}"
    );
    assert!(text.contains("\nfiretail_lag_bytes 0\n"), "{text}");
}

/// A chunk of lines of several sources counts each run in its own source.
#[test]
fn counting_by_source_adds_each_line_to_its_own_source() {
    let m = Metrics::new(&names(&["a", "b", "c"]), &names(&["s"]));
    let lines = [(0, 1), (0, 1), (2, 1), (0, 4), (2, 1), (2, 1)];
    m.count_by_source(lines, |s| &s.lines_read);
    let counts: Vec<u64> = m.sources().iter().map(|s| s.lines_read.get()).collect();
    assert_eq!(counts, [6, 0, 3]);
    m.count_by_source([], |s| &s.lines_read);
    assert_eq!(m.total_lines_read(), 9);
}
