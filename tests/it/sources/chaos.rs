//! The chaos suite's pod with two containers: the web app writing `access.log` and a
//! Sidekiq-style worker writing `sidekiq.log` into the same emptyDir (both
//! `tests/app/access_log_app.py`), and one firetail with two sources, each shipping to
//! its own stream. The termination orders are the chaos suite's (`chaos.rs`); the
//! oracle is each container's ledger against its own stream: lost 0 per source, and
//! a line of one container in the other's stream counts as unexpected.

use std::time::Duration;

use super::{family_fake, source_args, stream, Source, LONG};
use crate::support::fake_firehose::{CallError, FakeFirehose, Fault, Faults, RecordError};
use crate::support::firetail::{aws_env, Firetail};
use crate::support::pod::{
    file_lines, tally, term_and_wait, wait_ready, App, AppConfig, Container, Pod, Tally,
};

const SERVING: Duration = Duration::from_millis(1500);
const PRESTOP_SLEEP: Duration = Duration::from_millis(300);

/// The pod, its two containers and the fake with a stream for each.
struct TwoPod {
    pod: Pod,
    web: Container,
    worker: Container,
    fake: FakeFirehose,
}

impl TwoPod {
    fn new() -> TwoPod {
        let pod = Pod::new();
        let web = pod.container("web", "access.log");
        let worker = pod.container("worker", "sidekiq.log");
        TwoPod {
            pod,
            web,
            worker,
            fake: family_fake(Faults::default()),
        }
    }

    fn streams(&self) -> [String; 2] {
        [stream(&self.fake, "web"), stream(&self.fake, "worker")]
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let [web, worker] = self.streams();
        source_args(
            &[
                Source::new("web", &self.web.log, &web),
                Source::new("worker", &self.worker.log, &worker),
            ],
            extra,
        )
    }

    fn start_firetail(&self, args: &[String]) -> Firetail {
        let ft = Firetail::start(args, &aws_env(&self.fake.endpoint()));
        wait_ready(&ft);
        ft
    }

    fn start_apps(&self, config: &AppConfig) -> [App; 2] {
        [
            self.pod.start_container(&self.web, config),
            self.pod.start_container(&self.worker, config),
        ]
    }

    /// Each container's ledger against its own stream.
    fn tallies(&self) -> [(String, Tally); 2] {
        let [web, worker] = self.streams();
        [(&self.web, web), (&self.worker, worker)].map(|(c, s)| {
            let t = tally(&c.written(), &self.fake.accepted_lines_of(&s));
            (c.tag.clone(), t)
        })
    }

    /// Lines of both containers reached their streams: the pod is serving.
    fn wait_serving(&self, ft: &Firetail) {
        std::thread::sleep(SERVING);
        for s in self.streams() {
            assert!(
                crate::support::eventually(LONG, || self.fake.accepted_lines_of(&s).len() >= 100),
                "nothing reached {s} while serving\n{}",
                ft.dump()
            );
        }
    }

    /// Prints each source's figures and asserts lost 0 and nothing foreign; returns
    /// the duplicates over both.
    fn assert_delivered(&self, name: &str, drain: Option<Duration>, ft: &Firetail) -> usize {
        let mut duplicated = 0;
        for (source, t) in self.tallies() {
            t.print(&format!("{name}_{source}"), drain);
            assert!(t.written > 0, "{source} wrote nothing");
            assert!(
                t.lost.is_empty(),
                "{source}: {} of {} lines lost (first: {:?})\n{}",
                t.lost.len(),
                t.written,
                &t.lost[..t.lost.len().min(3)],
                ft.dump()
            );
            assert_eq!(
                t.unexpected, 0,
                "{source}'s stream got lines its container never wrote"
            );
            duplicated += t.duplicated;
        }
        duplicated
    }

    fn written(&self) -> u64 {
        (self.web.written().len() + self.worker.written().len()) as u64
    }
}

/// The drain report after a clean drain: every line read was shipped, in total and
/// per source, each container's Logger headers (`headers` per source) read and
/// skipped.
fn assert_clean_report(ft: &Firetail, p: &TwoPod, headers: u64) {
    let report = ft.report();
    assert_eq!(report["drain_end"], "drained", "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(report["skipped_header"], 2 * headers, "{report}");
    assert_eq!(report["lines_shipped"], p.written(), "{report}");
    let sources: Vec<serde_json::Value> = report["sources"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| panic!("no per-source figures in the report: {report}"));
    for c in [&p.web, &p.worker] {
        let r = sources
            .iter()
            .find(|r| r["source"] == c.tag.as_str())
            .unwrap_or_else(|| panic!("no figures for source {} in {report}", c.tag));
        let written = c.written().len() as u64;
        assert_eq!(r["lines_shipped"], written, "{}: {r}", c.tag);
        assert_eq!(r["lines_read"], written + headers, "{}: {r}", c.tag);
        assert_eq!(r["undelivered"], 0, "{}: {r}", c.tag);
    }
}

/// Native sidecars: preStop `kill -TSTP` to both containers, SIGTERM to both, which
/// finish their jobs for 2 s and exit; only then SIGTERM to firetail.
#[test]
fn chaos_two_containers_native_sidecar_order_loses_nothing_per_source() {
    let p = TwoPod::new();
    let mut ft = p.start_firetail(&p.args(&[]));
    let mut apps = p.start_apps(&AppConfig {
        rate: 300,
        ..AppConfig::default()
    });
    p.wait_serving(&ft);
    apps.iter().for_each(App::tstp);
    std::thread::sleep(PRESTOP_SLEEP);
    apps.iter().for_each(App::term);
    apps.iter_mut().for_each(|a| assert_eq!(a.wait(LONG), 0));
    let (code, drain) = term_and_wait(&mut ft, LONG);
    assert_eq!(code, 0, "{}", ft.dump());
    let dups = p.assert_delivered("two_containers_native_order", Some(drain), &ft);
    assert_eq!(dups, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &p, 1);
}

/// Ordinary containers: SIGTERM reaches both containers and firetail at once; the
/// containers finish jobs in bursts with silences shorter than `--drain-quiet`.
#[test]
fn chaos_two_containers_ordinary_order_drain_quiet_covers_both_tails() {
    let p = TwoPod::new();
    let mut ft = p.start_firetail(&p.args(&["--drain-quiet=2s"]));
    let mut apps = p.start_apps(&AppConfig {
        rate: 300,
        tail: Duration::from_millis(1500),
        tail_gap: Some(Duration::from_millis(500)),
        tail_burst: 40,
        ..AppConfig::default()
    });
    p.wait_serving(&ft);
    apps.iter().for_each(App::term);
    let (code, drain) = term_and_wait(&mut ft, LONG);
    apps.iter_mut().for_each(|a| assert_eq!(a.wait(LONG), 0));
    assert_eq!(code, 0, "{}", ft.dump());
    let dups = p.assert_delivered("two_containers_ordinary_order", Some(drain), &ft);
    assert_eq!(dups, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &p, 1);
}

/// Both containers rotate their logs Logger-style twice while finishing their jobs
/// after SIGTERM; firetail, draining, follows both.
#[test]
fn chaos_two_containers_rotating_during_the_drain_lose_nothing() {
    let p = TwoPod::new();
    let mut ft = p.start_firetail(&p.args(&["--drain-quiet=2s"]));
    let mut apps = p.start_apps(&AppConfig {
        rate: 300,
        tail: Duration::from_millis(1500),
        rotations_in_tail: 2,
        ..AppConfig::default()
    });
    p.wait_serving(&ft);
    apps.iter().for_each(App::term);
    let (code, drain) = term_and_wait(&mut ft, LONG);
    apps.iter_mut().for_each(|a| assert_eq!(a.wait(LONG), 0));
    assert_eq!(code, 0, "{}", ft.dump());
    for c in [&p.web, &p.worker] {
        for n in 0..2 {
            let rotated = format!("{}.{n}", c.log.display());
            assert!(std::path::Path::new(&rotated).exists(), "{rotated}");
        }
    }
    let dups = p.assert_delivered("two_containers_rotating_in_drain", Some(drain), &ft);
    assert_eq!(dups, 0, "no fault, yet duplicates");
    assert_clean_report(&ft, &p, 3);
}

/// Throttling, whole-call errors and per-record failures on both streams from just
/// before SIGTERM: nothing lost within `--drain-timeout`, duplicates only where
/// firetail said they were possible.
#[test]
fn chaos_two_containers_firehose_faults_during_the_drain() {
    let p = TwoPod::new();
    let args = p.args(&[
        "--drain-quiet=2s",
        "--drain-timeout=15s",
        "--call-timeout=10s",
    ]);
    let mut ft = p.start_firetail(&args);
    let mut apps = p.start_apps(&AppConfig {
        rate: 300,
        tail: Duration::from_millis(1500),
        tail_gap: Some(Duration::from_millis(300)),
        tail_burst: 60,
        ..AppConfig::default()
    });
    p.wait_serving(&ft);
    let before = p.fake.counters();
    p.fake.push_script([
        Fault::Error(CallError::Throttling),
        Fault::FailAll(RecordError::SlowDown),
        Fault::Error(CallError::ServiceUnavailable503),
    ]);
    p.fake.set_faults(Faults {
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
    apps.iter().for_each(App::term);
    let (code, drain) = term_and_wait(&mut ft, LONG);
    apps.iter_mut().for_each(|a| assert_eq!(a.wait(LONG), 0));
    let after = p.fake.counters();
    assert!(after.calls_error >= before.calls_error + 2, "{after:?}");
    assert_eq!(code, 0, "{}", ft.dump());
    let dups = p.assert_delivered("two_containers_faults_in_drain", Some(drain), &ft);
    assert_clean_report(&ft, &p, 1);
    let possible = ft.report()["duplicates_possible"].as_u64().unwrap();
    assert!(
        dups as u64 <= possible,
        "{dups} duplicates, but firetail said {possible} were possible"
    );
}

/// `kill -9` at random moments under load, three times, each followed by a restart on
/// the same emptyDir; then the native-sidecar order. Nothing lost in either stream;
/// each file's checkpoint entry is under its own source; nothing before a restart's
/// checkpoint offset of a file is sent again, so the duplicates of each source are
/// bounded by what was shipped past its file's checkpoint at the kills.
#[test]
fn chaos_two_containers_kill9_at_random_moments_lose_nothing_per_source() {
    const SEED: u64 = 0x2c_0417_0009;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let p = TwoPod::new();
    let args = p.args(&["--call-timeout=10s"]);
    let env = aws_env(&p.fake.endpoint());
    let mut ft = p.start_firetail(&args);
    let mut apps = p.start_apps(&AppConfig {
        rate: 500,
        tail: Duration::from_millis(500),
        ..AppConfig::default()
    });
    let mut kills = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
        ft.kill9();
        // The restart delay; the dead process's last call has been answered by now.
        std::thread::sleep(Duration::from_millis(rng.u64(100..500)));
        let offsets = [&p.web, &p.worker].map(|c| resume_offset(&p.pod, c));
        kills.push((p.fake.accepted_lines_by_stream().len(), offsets));
        ft = Firetail::start(&args, &env);
    }
    wait_ready(&ft);
    apps.iter().for_each(App::tstp);
    std::thread::sleep(PRESTOP_SLEEP);
    apps.iter().for_each(App::term);
    apps.iter_mut().for_each(|a| assert_eq!(a.wait(LONG), 0));
    let (code, drain) = term_and_wait(&mut ft, LONG);
    assert_eq!(code, 0, "{}", ft.dump());
    p.assert_delivered("two_containers_kill9_x3", Some(drain), &ft);
    assert_eq!(ft.report()["undelivered"], 0, "{}", ft.report());
    let accepted = p.fake.accepted_lines_by_stream();
    for (i, (c, s)) in [&p.web, &p.worker].into_iter().zip(p.streams()).enumerate() {
        let offset_of = uuid_offsets(c);
        let offset = |l: &crate::support::fake_firehose::StreamLine| {
            let v: serde_json::Value = serde_json::from_str(&l.line).unwrap();
            offset_of[v["uuid"].as_str().unwrap()]
        };
        let mut bound = 0;
        for (k, (n, checkpoints)) in kills.iter().enumerate() {
            let checkpoint = checkpoints[i];
            let ours = |l: &&crate::support::fake_firehose::StreamLine| *l.stream == *s;
            if let Some(early) = accepted[*n..]
                .iter()
                .filter(ours)
                .find(|l| offset(l) < checkpoint)
            {
                panic!(
                    "after kill {k} a line of {} at offset {} (before its checkpoint, {checkpoint}) was sent again: {}",
                    c.tag,
                    offset(early),
                    early.line
                );
            }
            bound += accepted[..*n]
                .iter()
                .filter(ours)
                .filter(|l| offset(l) >= checkpoint)
                .count();
        }
        let duplicated = tally(&c.written(), &p.fake.accepted_lines_of(&s)).duplicated;
        eprintln!(
            "chaos two_containers_kill9_x3_{}: duplicated={duplicated} bound={bound}",
            c.tag
        );
        assert!(
            duplicated <= bound,
            "{}: {duplicated} duplicates, bound {bound}",
            c.tag
        );
    }
}

/// The checkpoint offset a restart resumes `c`'s log from (0 before its first entry),
/// after checking the entry is under the container's own source.
fn resume_offset(pod: &Pod, c: &Container) -> u64 {
    if !pod.checkpoint().exists() {
        return 0;
    }
    let entries = pod.checkpoint_entries();
    let Some(entry) = entries
        .iter()
        .find(|e| e["path"].as_str() == c.log.to_str())
    else {
        return 0;
    };
    assert_eq!(entry["source"], c.tag.as_str(), "{entry}");
    entry["offset"].as_u64().expect("offset")
}

/// Each uuid in `c`'s log with the offset of its line.
fn uuid_offsets(c: &Container) -> std::collections::HashMap<String, u64> {
    file_lines(&c.log)
        .into_iter()
        .filter_map(|l| Some((l.uuid?, l.offset)))
        .collect()
}
