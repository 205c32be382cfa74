//! What an operator sees of several sources: each source's lines in its own series,
//! each stream's calls in its own, and the drain report and termination message per
//! source, from the built binary against the fake Firehose.

use std::time::Duration;

use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{
    access_lines, append, aws_env, base_args, http_get, sample, Firetail,
};

const LONG: Duration = Duration::from_secs(60);

/// Two sources on two streams: `web` (30 lines) and `audit` (20 lines and an empty
/// one). The line series tell them apart by `source`, the call series by `stream`;
/// the drain report and the termination message give each source's figures.
#[test]
fn two_sources_are_counted_apart_in_metrics_report_and_termination_message() {
    let fake = FakeFirehose::start(FakeConfig {
        stream_family: true,
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (web, audit) = (dir.path().join("web.log"), dir.path().join("audit.log"));
    append(&web, &access_lines("web", 0..30));
    append(&audit, &access_lines("audit", 0..20));
    append(&audit, &[String::new()]);
    let message = dir.path().join("termination-log");
    let streams = [
        format!("{}-web", fake.stream_name()),
        format!("{}-audit", fake.stream_name()),
    ];
    let mut args = base_args(&web, "unused");
    args.retain(|a| !a.starts_with("--path=") && !a.starts_with("--stream="));
    for (name, path, stream) in [("web", &web, &streams[0]), ("audit", &audit, &streams[1])] {
        args.push(format!(
            "--source=name={name},path={},stream={stream}",
            path.display()
        ));
    }
    args.push(format!("--termination-message-path={}", message.display()));
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let addr = ft.metrics_addr();
    let scrape = || http_get(&addr, "/metrics").1;
    let of = |text: &str, series: &str| sample(text, series).unwrap_or(-1.0);
    assert!(
        eventually(LONG, || of(&scrape(), "firetail_lines_shipped_total")
            == 50.0),
        "{}\n{}",
        scrape(),
        ft.dump()
    );
    let text = scrape();
    for (series, want) in [
        (r#"firetail_lines_read_total{source="web"}"#, 30.0),
        (r#"firetail_lines_read_total{source="audit"}"#, 21.0),
        (r#"firetail_lines_shipped_total{source="web"}"#, 30.0),
        (r#"firetail_lines_shipped_total{source="audit"}"#, 20.0),
        (
            r#"firetail_lines_skipped_total{reason="empty",source="audit"}"#,
            1.0,
        ),
        (
            r#"firetail_lines_skipped_total{reason="empty",source="web"}"#,
            0.0,
        ),
        (r#"firetail_files_opened_total{source="web"}"#, 1.0),
        (r#"firetail_files_opened_total{source="audit"}"#, 1.0),
    ] {
        assert_eq!(of(&text, series), want, "{series}:\n{text}");
    }
    for stream in &streams {
        let ok =
            format!(r#"firetail_put_record_batch_calls_total{{outcome="ok",stream="{stream}"}}"#);
        assert!(of(&text, &ok) >= 1.0, "{ok}:\n{text}");
        let limit = format!(r#"firetail_in_flight_limit{{stream="{stream}"}}"#);
        assert!(of(&text, &limit) >= 1.0, "{limit}:\n{text}");
    }
    assert!(
        !text.contains("web.log") && !text.contains("audit.log"),
        "a path is never a label:\n{text}"
    );

    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let sources: serde_json::Value =
        serde_json::from_str(ft.report()["sources"].as_str().unwrap()).unwrap();
    assert_eq!(sources[0]["source"], "web");
    assert_eq!(sources[1]["skipped"], 1);
    let text = std::fs::read_to_string(&message).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "firetail exit 0: drain drained, 51 lines read, 50 shipped, 0 undelivered",
            "source web: 30 read, 30 shipped, 0 dead-lettered, 0 skipped, 0 undelivered",
            "source audit: 21 read, 20 shipped, 0 dead-lettered, 1 skipped, 0 undelivered",
        ],
        "{text}"
    );
}
