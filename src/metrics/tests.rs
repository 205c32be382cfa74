use super::*;

#[test]
fn series_carry_the_prefix() {
    let m = Metrics::new();
    m.lines_read.inc_by(3);
    m.call(CallOutcome::Ok);
    let text = m.encode();
    assert!(text.contains("firetail_lines_read_total 3"), "{text}");
    assert!(
        text.contains("firetail_put_record_batch_calls_total{outcome=\"ok\"} 1"),
        "{text}"
    );
}

#[test]
fn every_labelled_counter_exists_at_zero_from_start() {
    let text = Metrics::new().encode();
    for o in CallOutcome::ALL.map(CallOutcome::as_str) {
        let series = format!("firetail_put_record_batch_calls_total{{outcome=\"{o}\"}} 0");
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for r in DeadLetterReason::ALL.map(DeadLetterReason::as_str) {
        let series = format!("firetail_dead_lettered_total{{reason=\"{r}\"}} 0");
        assert!(text.contains(&series), "{series} missing");
    }
    for r in SkipReason::ALL.map(SkipReason::as_str) {
        let series = format!("firetail_lines_skipped_total{{reason=\"{r}\"}} 0");
        assert!(text.contains(&series), "{series} missing");
    }
}

#[test]
fn text_format_names_counters_by_their_samples_and_has_no_eof() {
    let m = Metrics::new();
    m.lines_read.inc_by(3);
    let text = m.encode_text();
    assert!(
        text.contains("# TYPE firetail_lines_read_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP firetail_lines_read_total Lines read"),
        "{text}"
    );
    assert!(text.contains("\nfiretail_lines_read_total 3\n"), "{text}");
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
    let text = Metrics::new().encode();
    let want = format!(
        "firetail_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("FIRETAIL_COMMIT")
    );
    assert!(text.contains(&want), "{want} missing:\n{text}");
}
