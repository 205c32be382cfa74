//! The pod-lifecycle chaos suite. What happens to the last lines when a pod
//! dies, proved with real processes and real signals, in bounded time.
//!
//! Each test plays one pod without a cluster (`support/pod.rs`): the app container
//! (`tests/app/access_log_app.py`, started through `sh -c 'exec python3 …'`) writes a
//! JSON access log into a temp directory that stands for the emptyDir, and firetail
//! runs beside it as its sidecar; Firehose is the fault-injecting fake (moto's server
//! for the end-to-end run into S3). The harness sends the signals the kubelet would,
//! in the order a termination takes, and the oracle compares every uuid the app wrote
//! (its fsynced ledger, itself checked against the log files) with every line the sink
//! accepted: lost, duplicated, and anything the app never wrote.
//!
//! Loss and duplicates are counted, never timed; the only clocks are the app's own
//! behaviour (how long it keeps writing after SIGTERM), the grace period before
//! SIGKILL, and generous deadlines on waits. Each scenario prints one line:
//! `chaos <name>: written=N lost=L duplicated=D drain_seconds=S`
//! (`cargo test --test it chaos:: -- --nocapture`).

use std::time::{Duration, Instant};

use crate::support::eventually;
use crate::support::fake_firehose::{
    CallError, FakeConfig, FakeFirehose, Fault, Faults, RecordError,
};
use crate::support::firetail::{aws_env, http_get, Firetail};
use crate::support::moto::Moto;
use crate::support::pod::{
    file_lines, metric, tally, term_and_wait, wait_ready, AppConfig, Pod, Tally,
};

mod backlog;

/// Deadline for anything that should take seconds; reached only when broken.
const LONG: Duration = Duration::from_secs(60);
/// How long the app serves before the pod is deleted.
const SERVING: Duration = Duration::from_millis(1500);
/// The preStop hook's `sleep` between `kill -TSTP` and the kubelet's SIGTERM.
const PRESTOP_SLEEP: Duration = Duration::from_millis(300);
/// The kubelet's SIGKILL comes this long after SIGTERM when the grace period is spent.
const GRACE_LEFT: Duration = Duration::from_secs(2);

/// Where the lines go: the fake Firehose, or moto's Firehose into moto's S3.
enum Sink {
    Fake(FakeFirehose),
    Moto { moto: Moto, bucket: &'static str },
}

impl Sink {
    fn fake() -> Sink {
        Sink::Fake(FakeFirehose::start(FakeConfig::default()))
    }

    fn moto(stream: &str, bucket: &'static str) -> Sink {
        let moto = Moto::start();
        moto.create_stream(stream, bucket);
        Sink::Moto { moto, bucket }
    }

    fn stream(&self) -> String {
        match self {
            Sink::Fake(f) => f.stream_name(),
            Sink::Moto { .. } => "chaos-moto".into(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Sink::Fake(f) => aws_env(&f.endpoint()),
            Sink::Moto { moto, .. } => moto.env(),
        }
    }

    /// Every line received, in the order received (moto: in S3's listing order).
    fn lines(&self) -> Vec<String> {
        match self {
            Sink::Fake(f) => f.accepted_lines(),
            Sink::Moto { moto, bucket } => moto.s3_lines(bucket),
        }
    }

    fn wait_for_lines(&self, n: usize) -> bool {
        match self {
            Sink::Fake(f) => f.wait_for_lines(n as u64, LONG),
            Sink::Moto { .. } => eventually(LONG, || self.lines().len() >= n),
        }
    }

    fn tally(&self, pod: &Pod) -> Tally {
        tally(&pod.written(), &self.lines())
    }
}

/// The ledger is only a witness if it says what the log files say.
fn assert_ledger_matches_files(pod: &Pod) {
    let mut ledger = pod.written();
    let mut files = pod.uuids_in_files();
    assert!(!ledger.is_empty(), "the app wrote nothing");
    ledger.sort();
    files.sort();
    assert!(
        ledger == files,
        "the app's ledger and its log files disagree"
    );
}

/// Nothing lost, nothing the app never wrote.
fn assert_delivered(t: &Tally, ft: &Firetail) {
    assert!(
        t.lost.is_empty(),
        "{} of {} lines lost (first: {:?}); firetail logs:\n{}",
        t.lost.len(),
        t.written,
        &t.lost[..t.lost.len().min(3)],
        ft.dump()
    );
    assert_eq!(t.unexpected, 0, "the sink got lines the app never wrote");
}

/// The drain report after a clean drain: everything read was shipped, once per line
/// by this process (a duplicate in the sink is a resend after an answer that never
/// came, and the lost answer was never counted), and the counts are the oracle's.
fn assert_clean_report(ft: &Firetail, t: &Tally, headers: u64) {
    let report = ft.report();
    assert_eq!(report["drain_end"], "drained", "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(report["skipped_header"], headers, "{report}");
    assert_eq!(report["lines_shipped"], t.written as u64, "{report}");
    assert_eq!(report["lines_read"], t.written as u64 + headers, "{report}");
}

/// Waits until the app's lines reach the sink: the pod is serving.
fn wait_serving(sink: &Sink, ft: &Firetail) {
    std::thread::sleep(SERVING);
    assert!(
        sink.wait_for_lines(100),
        "no line reached the sink while the app was serving; logs:\n{}",
        ft.dump()
    );
}

/// The native-sidecar termination (KEP-753): preStop `kill -TSTP`, SIGTERM to the app,
/// which finishes its jobs for 2 s, writing, and exits; only then SIGTERM to firetail.
fn native_sidecar_order(name: &str, sink: &Sink) {
    let pod = Pod::new();
    let mut ft = pod.start_firetail(&pod.firetail_args(&sink.stream(), &[]), &sink.env());
    let mut app = pod.start_app(&AppConfig {
        rate: 500,
        tail: Duration::from_secs(2),
        ..AppConfig::default()
    });
    wait_serving(sink, &ft);
    app.tstp();
    std::thread::sleep(PRESTOP_SLEEP);
    app.term();
    app.wait(LONG);
    let (code, drain) = term_and_wait(&mut ft, LONG);

    let t = sink.tally(&pod);
    t.print(name, Some(drain));
    assert_eq!(code, 0, "{}", ft.dump());
    assert_ledger_matches_files(&pod);
    assert_delivered(&t, &ft);
    assert_eq!(t.duplicated, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &t, 1);
    assert_eq!(
        pod.checkpoint_offset(),
        std::fs::metadata(pod.log()).unwrap().len(),
        "the final checkpoint is the end of the file"
    );
    assert_eq!(ft.report()["checkpoint_offset"], pod.checkpoint_offset());
}

/// Scenario 1.
#[test]
fn native_sidecar_order_loses_nothing() {
    native_sidecar_order("native_sidecar_order", &Sink::fake());
}

/// Scenario 7: scenario 1 end to end through moto's Firehose into its S3.
#[test]
fn native_sidecar_order_end_to_end_into_s3() {
    native_sidecar_order(
        "native_sidecar_order_moto_s3",
        &Sink::moto("chaos-moto", "chaos-moto-bucket"),
    );
}

/// An ordinary container: SIGTERM reaches the app and firetail at once, and the app
/// finishes its jobs for `tail`, a burst of lines every `gap` (jobs completing),
/// silent in between.
fn ordinary_container_order(
    pod: &Pod,
    sink: &Sink,
    quiet: &str,
    tail: Duration,
    gap: Duration,
) -> (Firetail, Duration) {
    let args = pod.firetail_args(&sink.stream(), &[("--drain-quiet", quiet)]);
    let mut ft = pod.start_firetail(&args, &sink.env());
    let mut app = pod.start_app(&AppConfig {
        rate: 500,
        tail,
        tail_gap: Some(gap),
        tail_burst: 40,
        ..AppConfig::default()
    });
    wait_serving(sink, &ft);
    app.term();
    let (code, drain) = term_and_wait(&mut ft, LONG);
    app.wait(LONG);
    assert_eq!(code, 0, "{}", ft.dump());
    (ft, drain)
}

/// Scenario 2: `--drain-quiet` longer than the app's silences covers its whole tail.
#[test]
fn ordinary_container_order_drain_quiet_covers_the_tail() {
    let sink = Sink::fake();
    let pod = Pod::new();
    let (ft, drain) = ordinary_container_order(
        &pod,
        &sink,
        "2s",
        Duration::from_millis(1500),
        Duration::from_millis(500),
    );
    let t = sink.tally(&pod);
    t.print("ordinary_order_drain_quiet_2s", Some(drain));
    assert_ledger_matches_files(&pod);
    assert_delivered(&t, &ft);
    assert_eq!(t.duplicated, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &t, 1);
}

/// Scenario 2, the other side: `--drain-quiet` (200 ms) shorter than the app's
/// silences (600 ms). firetail stops reading in the first silence; what the app writes
/// after that is lost to this run — and exactly that: the lines after the checkpoint
/// offset, which a firetail restarted on the same emptyDir ships.
#[test]
fn ordinary_container_order_short_drain_quiet_loses_exactly_the_unread_tail() {
    let sink = Sink::fake();
    let pod = Pod::new();
    let (ft, drain) = ordinary_container_order(
        &pod,
        &sink,
        "200ms",
        Duration::from_millis(1800),
        Duration::from_millis(600),
    );
    let t = sink.tally(&pod);
    t.print("ordinary_order_drain_quiet_200ms", Some(drain));
    assert_ledger_matches_files(&pod);
    assert_eq!(t.unexpected, 0);
    assert_eq!(t.duplicated, 0);
    assert!(
        !t.lost.is_empty(),
        "the app wrote for 1.8 s with 600 ms silences after SIGTERM and firetail stopped \
         after 200 ms of quiet, yet nothing is missing; logs:\n{}",
        ft.dump()
    );

    // Honest: firetail shipped everything it read and its report says so; the missing
    // lines are exactly the ones after the checkpoint offset, in file order.
    let report = ft.report();
    assert_eq!(report["drain_end"], "drained", "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    let shipped = (t.written - t.lost.len()) as u64;
    assert_eq!(report["lines_shipped"], shipped, "{report}");
    assert_eq!(
        report["lines_read"],
        shipped + 1,
        "the header too: {report}"
    );
    let offset = pod.checkpoint_offset();
    assert_eq!(report["checkpoint_offset"], offset, "{report}");
    let after_checkpoint: Vec<String> = file_lines(&pod.log())
        .into_iter()
        .filter(|l| l.offset >= offset)
        .filter_map(|l| l.uuid)
        .collect();
    assert!(
        t.lost == after_checkpoint,
        "lost {} lines, but {} lie after the checkpoint offset {offset}",
        t.lost.len(),
        after_checkpoint.len()
    );

    // The container restarts on the same emptyDir: the rest ships, nothing twice.
    let args = pod.firetail_args(&sink.stream(), &[("--drain-quiet", "200ms")]);
    let mut again = pod.start_firetail(&args, &sink.env());
    assert!(
        eventually(LONG, || sink.tally(&pod).lost.is_empty()),
        "the restart did not ship the unread tail; logs:\n{}",
        again.dump()
    );
    let (code, drain) = term_and_wait(&mut again, LONG);
    let t = sink.tally(&pod);
    t.print("ordinary_order_drain_quiet_200ms_restart", Some(drain));
    assert_eq!(code, 0, "{}", again.dump());
    assert_delivered(&t, &again);
    assert_eq!(
        t.duplicated, 0,
        "the restart sent lines before the checkpoint"
    );
}

/// The grace period runs out while Firehose is slow (1.5 s a call, one call in
/// flight): SIGTERM, then SIGKILL 2 s later. If firetail exits first, its report says
/// what is undelivered; if it is killed, there is no report but the checkpoint is
/// intact. Then the container restarts on the same emptyDir, Firehose fast again, and
/// the rest arrives. Returns whether firetail exited before the kill.
fn grace_period_runs_out(name: &str, drain_timeout: &str) -> bool {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            latency: Duration::from_millis(1500),
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let sink = Sink::Fake(fake);
    let Sink::Fake(fake) = &sink else {
        unreachable!()
    };
    let pod = Pod::new();
    let args = pod.firetail_args(
        &sink.stream(),
        &[
            ("--max-in-flight", "1"),
            ("--drain-timeout", drain_timeout),
            ("--call-timeout", "10s"),
        ],
    );
    let mut ft = pod.start_firetail(&args, &sink.env());
    // 1,500 lines a second against at most 500 records per 1.5 s: a backlog of
    // thousands of lines when the pod is deleted, more than the grace period can ship.
    let mut app = pod.start_app(&AppConfig {
        rate: 1500,
        tail: Duration::from_millis(500),
        ..AppConfig::default()
    });
    std::thread::sleep(Duration::from_secs(2));
    app.tstp();
    std::thread::sleep(PRESTOP_SLEEP);
    app.term();
    app.wait(LONG);

    let sent = Instant::now();
    ft.term();
    let exited = ft.wait_timeout(GRACE_LEFT);
    if exited.is_none() {
        ft.kill9();
    }
    let drain = sent.elapsed();
    let t = sink.tally(&pod);
    t.print(name, Some(drain));
    assert!(
        !t.lost.is_empty(),
        "the backlog was shipped within the grace period: the scenario proves nothing"
    );
    let offset = pod.checkpoint_offset();
    match exited {
        Some(status) => {
            assert_eq!(
                status.code(),
                Some(1),
                "undelivered lines mean exit 1; {}",
                ft.dump()
            );
            let report = ft.report();
            assert_eq!(report["drain_end"], "deadline", "{report}");
            assert!(report["undelivered"].as_u64() > Some(0), "{report}");
            // Counted by the ledger (lines in flight and never registered), it adds
            // up with the outcome counters to what was read.
            assert!(report.get("count_mismatch").is_none(), "{report}");
            assert_eq!(report["checkpoint_offset"], offset, "{report}");
            let error = ft.wait_message(
                "Lines left undelivered; they stay unacknowledged in the checkpoint and a restart on it ships them.",
                Duration::from_secs(1),
            );
            assert_eq!(error["level"], "ERROR", "{error}");
            assert_eq!(error["undelivered"], report["undelivered"], "{error}");
        }
        None => {
            assert!(
                ft.logs().iter().all(|l| l["message"] != "Drain report."),
                "a report from a killed process?"
            );
        }
    }
    let shipped_before_restart = t.written - t.lost.len();
    // The kubelet's restart delay. The call in flight when firetail went reached
    // Firehose, which finishes it (1.5 s) whether anyone waits for the answer or not.
    std::thread::sleep(Duration::from_millis(2000));
    let exposed = held_past(&pod, &sink.lines(), offset);

    // Container restart, emptyDir kept, Firehose fast again.
    fake.set_faults(Faults::default());
    let mut again = pod.start_firetail(&args, &sink.env());
    assert!(
        eventually(LONG, || sink.tally(&pod).lost.is_empty()),
        "the restart did not deliver the rest; logs:\n{}",
        again.dump()
    );
    let (code, drain) = term_and_wait(&mut again, LONG);
    let t = sink.tally(&pod);
    t.print(&format!("{name}_restart"), Some(drain));
    assert_eq!(code, 0, "{}", again.dump());
    assert_delivered(&t, &again);
    // At-least-once: the restart sends again only what Firehose held past the
    // checkpoint: the call in flight at the exit (or kill), the rest of the batches
    // it settles (acknowledged only whole), and after a kill what was acknowledged
    // since the last checkpoint write. (One call's worth, as this once assumed, holds
    // only if Firehose drops a call whose sender went away; it does not.)
    assert!(
        t.duplicated <= exposed,
        "{} duplicates after {shipped_before_restart} lines shipped before the restart; \
         Firehose held {exposed} past the checkpoint",
        t.duplicated
    );
    eprintln!("chaos {name}: held past the checkpoint={exposed}");
    exited.is_some()
}

/// Distinct lines of `received` that lie at or after `offset` in the pod's log.
fn held_past(pod: &Pod, received: &[String], offset: u64) -> usize {
    let offsets: std::collections::HashMap<String, u64> = file_lines(&pod.log())
        .into_iter()
        .filter_map(|l| Some((l.uuid?, l.offset)))
        .collect();
    received
        .iter()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let uuid = v["uuid"].as_str()?;
            (offsets.get(uuid)? >= &offset).then(|| uuid.to_owned())
        })
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Scenario 3, sized as docs/deploying.md's grace-period sum says (`--drain-timeout`
/// inside the grace period):
/// firetail gives up first, exits 1 and reports what it could not deliver.
#[test]
fn grace_period_running_out_with_drain_timeout_inside_it_reports_undelivered() {
    assert!(
        grace_period_runs_out("grace_period_drain_timeout_1s", "1s"),
        "killed before the 1 s drain deadline"
    );
}

/// Scenario 3, sized wrong (`--drain-timeout` longer than what is left): SIGKILL
/// cuts the drain; no report, the checkpoint intact, the restart ships the rest.
#[test]
fn grace_period_running_out_kills_the_drain_and_the_checkpoint_survives() {
    assert!(
        !grace_period_runs_out("grace_period_sigkill", "20s"),
        "the drain finished before the SIGKILL: the backlog was too small"
    );
}

/// Scenario 4: `kill -9` at random moments under load, four times, each time
/// restarted as the kubelet restarts a container. Nothing lost; duplicates counted,
/// and never a line before the checkpoint the restart found.
#[test]
fn kill9_at_random_moments_under_load() {
    const SEED: u64 = 0x0c4a_0500_0004;
    const KILLS: usize = 4;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let sink = Sink::fake();
    let Sink::Fake(fake) = &sink else {
        unreachable!()
    };
    let pod = Pod::new();
    // A call timeout no call reaches: every duplicate here comes from a restart.
    let args = pod.firetail_args(&sink.stream(), &[("--call-timeout", "10s")]);
    let env = sink.env();
    let mut ft = pod.start_firetail(&args, &env);
    let mut app = pod.start_app(&AppConfig {
        rate: 1000,
        tail: Duration::from_millis(500),
        ..AppConfig::default()
    });

    // Per kill: (lines the sink had accepted when the restart began, the checkpoint
    // offset the restart found).
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
        ft.kill9();
        // The kubelet's restart delay; the dead process's last request, if the fake
        // got all of it, has been answered by now.
        std::thread::sleep(Duration::from_millis(rng.u64(100..500)));
        let offset = if pod.checkpoint().exists() && !pod.checkpoint_entries().is_empty() {
            pod.checkpoint_offset()
        } else {
            0
        };
        kills.push((fake.accepted_lines().len(), offset));
        ft = Firetail::start(&args, &env);
    }
    // The last one is left to start up: the shutdown below needs its handlers.
    wait_ready(&ft);
    app.tstp();
    std::thread::sleep(PRESTOP_SLEEP);
    app.term();
    app.wait(LONG);
    let (code, drain) = term_and_wait(&mut ft, LONG);

    let t = sink.tally(&pod);
    t.print("kill9_random_x4", Some(drain));
    assert_eq!(code, 0, "{}", ft.dump());
    assert_ledger_matches_files(&pod);
    assert_delivered(&t, &ft);

    // Nothing before a restart's checkpoint is ever sent again: every line accepted
    // after kill k lies at or after the offset kill k left in the checkpoint. So the
    // duplicates are bounded by what was shipped past the checkpoint when it died.
    let offsets: std::collections::HashMap<String, u64> = file_lines(&pod.log())
        .into_iter()
        .filter_map(|l| Some((l.uuid?, l.offset)))
        .collect();
    let accepted = fake.accepted_lines();
    let offset_of = |line: &String| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        offsets[v["uuid"].as_str().unwrap()]
    };
    let mut bound = 0;
    for (k, &(n, checkpoint)) in kills.iter().enumerate() {
        if let Some(early) = accepted[n..].iter().find(|l| offset_of(l) < checkpoint) {
            panic!(
                "after kill {k} a line at offset {} (before the checkpoint, {checkpoint}) was sent again: {early}",
                offset_of(early)
            );
        }
        bound += accepted[..n]
            .iter()
            .filter(|l| offset_of(l) >= checkpoint)
            .count();
    }
    assert!(
        t.duplicated <= bound,
        "{} duplicates, bound {bound}",
        t.duplicated
    );
}

/// Scenario 5: throttling, whole-call errors and per-record failures turned on just
/// before SIGTERM (ordinary-container order, so the drain has the app's tail to ship
/// through them). Nothing lost within `--drain-timeout`; duplicates only where
/// firetail said they were possible.
#[test]
fn firehose_faults_during_the_drain() {
    let sink = Sink::fake();
    let Sink::Fake(fake) = &sink else {
        unreachable!()
    };
    let pod = Pod::new();
    let args = pod.firetail_args(
        &sink.stream(),
        &[
            ("--drain-quiet", "2s"),
            ("--drain-timeout", "15s"),
            ("--call-timeout", "10s"),
        ],
    );
    let mut ft = pod.start_firetail(&args, &sink.env());
    let mut app = pod.start_app(&AppConfig {
        rate: 500,
        tail: Duration::from_millis(1500),
        tail_gap: Some(Duration::from_millis(300)),
        tail_burst: 60,
        ..AppConfig::default()
    });
    wait_serving(&sink, &ft);

    let before = fake.counters();
    // The next calls meet these for sure; every later one a chance of each fault.
    fake.push_script([
        Fault::Error(CallError::Throttling),
        Fault::FailAll(RecordError::SlowDown),
        Fault::FailRecords((0..50).step_by(3).collect(), RecordError::InternalFailure),
        Fault::Error(CallError::ServiceUnavailable503),
    ]);
    fake.set_faults(Faults {
        record_slow_down_rate: 0.2,
        record_internal_failure_rate: 0.05,
        call_error_rate: 0.15,
        call_errors: vec![
            CallError::Throttling,
            CallError::ServiceUnavailable503,
            CallError::InternalFailure502,
        ],
        ..Faults::default()
    });
    app.term();
    let (code, drain) = term_and_wait(&mut ft, LONG);
    app.wait(LONG);

    let t = sink.tally(&pod);
    t.print("firehose_faults_in_drain", Some(drain));
    let after = fake.counters();
    assert!(after.calls_error >= before.calls_error + 2, "{after:?}");
    assert!(after.records_failed > before.records_failed, "{after:?}");
    assert_eq!(code, 0, "{}", ft.dump());
    assert_ledger_matches_files(&pod);
    assert_delivered(&t, &ft);
    assert_clean_report(&ft, &t, 1);
    let possible = ft.report()["duplicates_possible"].as_u64().unwrap();
    assert!(
        t.duplicated as u64 <= possible,
        "{} duplicates, but firetail said {possible} were possible",
        t.duplicated
    );
}

/// Scenario 6: the app rotates its log Logger-style twice while finishing its jobs
/// after SIGTERM, and firetail, draining, follows: nothing lost from `access.log.1`,
/// `access.log.0` or the new `access.log`.
#[test]
fn logger_rotation_during_the_drain() {
    let sink = Sink::fake();
    let pod = Pod::new();
    let args = pod.firetail_args(&sink.stream(), &[("--drain-quiet", "2s")]);
    let mut ft = pod.start_firetail(&args, &sink.env());
    let mut app = pod.start_app(&AppConfig {
        rate: 500,
        tail: Duration::from_millis(1500),
        rotations_in_tail: 2,
        ..AppConfig::default()
    });
    wait_serving(&sink, &ft);
    app.term();
    let (code, drain) = term_and_wait(&mut ft, LONG);
    app.wait(LONG);

    let t = sink.tally(&pod);
    t.print("logger_rotation_in_drain", Some(drain));
    assert_eq!(code, 0, "{}", ft.dump());
    assert_eq!(pod.log_files().len(), 3, "access.log, .0 and .1");
    assert_ledger_matches_files(&pod);
    assert_delivered(&t, &ft);
    assert_eq!(t.duplicated, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &t, 3);
    let retired = ft
        .logs()
        .iter()
        .filter(|l| l["message"] == "Finished reading rotated file.")
        .count();
    assert_eq!(
        retired,
        2,
        "both rotated files finished; logs:\n{}",
        ft.dump()
    );
}

/// What a chaos test in a real cluster scrapes: while serving, `/readyz` is 200 and
/// the counters move; once SIGTERM arrived and Firehose is slow, `/readyz` is 503
/// (draining), `/healthz` stays 200 and the lag is visible; then the report.
#[test]
fn probes_and_metrics_during_a_slow_drain() {
    let sink = Sink::fake();
    let Sink::Fake(fake) = &sink else {
        unreachable!()
    };
    let pod = Pod::new();
    let args = pod.firetail_args(
        &sink.stream(),
        &[("--max-in-flight", "1"), ("--call-timeout", "10s")],
    );
    let mut ft = pod.start_firetail(&args, &sink.env());
    let addr = ft.metrics_addr();
    let mut app = pod.start_app(&AppConfig {
        rate: 1000,
        tail: Duration::from_millis(200),
        ..AppConfig::default()
    });
    wait_serving(&sink, &ft);
    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metric(&text, "firetail_lines_shipped_total") > Some(0.0),
        "{text}"
    );

    // Firehose turns slow (3 s a call, one call at a time): the drain has work left.
    fake.update_faults(|f| f.latency = Duration::from_secs(3));
    app.term();
    app.wait(LONG);
    let sent = Instant::now();
    ft.term();
    ft.wait_message(
        "Drain started: reading every file to its end, then shipping the rest.",
        LONG,
    );
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let lag = |text: &str| metric(text, "firetail_lag_bytes").unwrap_or(0.0);
    assert!(
        eventually(LONG, || lag(&http_get(&addr, "/metrics").1) > 0.0),
        "no lag visible while a slow call is in flight"
    );
    fake.set_faults(Faults::default());
    let code = ft.exit_code(LONG);
    let drain = sent.elapsed();

    let t = sink.tally(&pod);
    t.print("probes_and_metrics_slow_drain", Some(drain));
    assert_eq!(code, 0, "{}", ft.dump());
    assert_delivered(&t, &ft);
    assert_clean_report(&ft, &t, 1);
}
