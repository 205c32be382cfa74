//! `kill -9` while firetail is behind: a backlog in the file, Firehose slow and its
//! answers out of order (latency with jitter), several calls in flight at the kill.
//! The other kill tests kill a sidecar that keeps up; here the duplicate window is
//! under load when the process dies, which is when the README's bound
//! ("The duplicate bound": bytes sent again ≤ `--max-unacked-bytes`) has to hold.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::LONG;
use crate::support::eventually;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, http_get, Firetail};
use crate::support::pod::{metric, term_and_wait, Pod};

/// The smallest window firetail accepts, so the backlog is several windows long.
const WINDOW: u64 = 4 * 1024 * 1024;
/// Calls take 0.1 to 1.6 s: a slow one pins the checkpoint while later ones are
/// answered, so what Firehose holds past the checkpoint grows by calls, not lines.
const LATENCY: Duration = Duration::from_millis(100);
const JITTER: Duration = Duration::from_millis(1500);
/// Lines in the file before the first start, and added after each kill (the app goes
/// on writing while its sidecar restarts).
const BACKLOG: usize = 20_000;
const MORE: usize = 2_000;
/// Lag that counts as behind: a quarter of the window, many calls' worth.
const BEHIND: f64 = (WINDOW / 4) as f64;

/// What one kill left: lines the fake held when the restart began, and the
/// checkpoint offset the restart found.
struct Kill {
    accepted: usize,
    checkpoint: u64,
}

/// The checkpoint offset a restart resumes from (0 before the first checkpoint).
fn resume_offset(pod: &Pod) -> u64 {
    if pod.checkpoint().exists() && !pod.checkpoint_entries().is_empty() {
        pod.checkpoint_offset()
    } else {
        0
    }
}

/// Waits until firetail is behind with at least two calls in flight.
/// Returns (calls in flight, lag bytes) as last scraped.
fn wait_behind(ft: &Firetail) -> (f64, f64) {
    let addr = ft.metrics_addr();
    let mut seen = (0.0, 0.0);
    let behind = eventually(LONG, || {
        let text = http_get(&addr, "/metrics").1;
        let get = |name| metric(&text, name).unwrap_or(0.0);
        seen = (get("firetail_in_flight_calls"), get("firetail_lag_bytes"));
        seen.0 >= 2.0 && seen.1 >= BEHIND
    });
    assert!(
        behind,
        "never behind with calls in flight (last seen {seen:?}); logs:\n{}",
        ft.dump()
    );
    seen
}

/// Five kills at seeded random moments, each while behind with calls in flight, each
/// followed by a restart on the same checkpoint; then the last run catches up and
/// drains. Nothing lost; no line before a restart's checkpoint sent again; and at
/// every kill, what Firehose already held past that checkpoint (all a restart can
/// send twice) fits in the window, in bytes.
#[test]
fn kill9_while_behind_with_calls_in_flight_resends_at_most_the_window() {
    const SEED: u64 = 0xba_c1_09_09;
    const KILLS: usize = 5;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let fake = FakeFirehose::start(FakeConfig {
        seed: SEED,
        faults: Faults {
            latency: LATENCY,
            latency_jitter: JITTER,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let pod = Pod::new();
    let mut lines = access_lines("backlog", 0..BACKLOG);
    append(&pod.log(), &lines);
    let window = WINDOW.to_string();
    // A call timeout no call reaches: every duplicate here comes from a restart.
    let args = pod.firetail_args(
        &fake.stream_name(),
        &[
            ("--max-unacked-bytes", &window),
            ("--max-in-flight", "4"),
            ("--call-timeout", "10s"),
        ],
    );
    let env = aws_env(&fake.endpoint());

    let mut kills = Vec::new();
    for k in 0..KILLS {
        let mut ft = Firetail::start(&args, &env);
        wait_behind(&ft);
        // A random moment of a run that is behind; then the kill as soon as two
        // calls are under way (each takes at least LATENCY, so they still are).
        std::thread::sleep(Duration::from_millis(rng.u64(0..2000)));
        let (in_flight, lag) = wait_behind(&ft);
        ft.kill9();
        let more = access_lines("backlog", lines.len()..lines.len() + MORE);
        append(&pod.log(), &more);
        lines.extend(more);
        // The kubelet's restart delay: by then the fake has answered (and accepted)
        // every request the dead process got out, since it answers within
        // LATENCY + JITTER.
        std::thread::sleep(LATENCY + JITTER + Duration::from_millis(500));
        let kill = Kill {
            accepted: fake.accepted_lines().len(),
            checkpoint: resume_offset(&pod),
        };
        eprintln!(
            "chaos backlog kill {k}: in_flight={in_flight} lag_bytes={lag} \
             accepted={} checkpoint={}",
            kill.accepted, kill.checkpoint
        );
        kills.push(kill);
    }

    // The last restart, Firehose quicker (answers still out of order): it catches up.
    fake.update_faults(|f| {
        f.latency = Duration::from_millis(10);
        f.latency_jitter = Duration::from_millis(200);
    });
    let mut ft = Firetail::start(&args, &env);
    let unique = |fake: &FakeFirehose| fake.accepted_lines().into_iter().collect::<HashSet<_>>();
    assert!(
        eventually(LONG, || unique(&fake).len() >= lines.len()),
        "not every line arrived: {} of {}; logs:\n{}",
        unique(&fake).len(),
        lines.len(),
        ft.dump()
    );
    let (code, _) = term_and_wait(&mut ft, LONG);
    assert_eq!(code, 0, "{}", ft.dump());
    let report = ft.report();
    assert_eq!(report["undelivered"], 0, "{report}");
    assert_eq!(report["duplicates_possible"], 0, "{report}");

    assert_within_the_window(&lines, &fake.accepted_lines(), &kills);
}

/// The oracle over every kill: see the test.
fn assert_within_the_window(lines: &[String], accepted: &[String], kills: &[Kill]) {
    let mut offsets = HashMap::new();
    let mut at = 0u64;
    for l in lines {
        offsets.insert(l.as_str(), at);
        at += l.len() as u64 + 1;
    }
    let offset = |l: &String| *offsets.get(l.as_str()).expect("a line never written");
    let size = |l: &String| l.len() as u64 + 1;
    let shortest = lines.iter().map(size).min().unwrap();
    let received: HashSet<&String> = accepted.iter().collect();
    assert_eq!(received.len(), lines.len(), "lost or foreign lines");

    let mut resent_total = 0;
    for (k, kill) in kills.iter().enumerate() {
        let (before, after) = accepted.split_at(kill.accepted);
        let next = kills
            .get(k + 1)
            .map_or(after.len(), |n| n.accepted - kill.accepted);
        if let Some(early) = after.iter().find(|l| offset(l) < kill.checkpoint) {
            panic!(
                "after kill {k} a line at offset {} (before the checkpoint, {}) was sent again: {early}",
                offset(early),
                kill.checkpoint
            );
        }
        // What Firehose held past the checkpoint: all this restart could send twice.
        let exposed: HashSet<&String> = before
            .iter()
            .filter(|l| offset(l) >= kill.checkpoint)
            .collect();
        let exposed_bytes: u64 = exposed.iter().map(|l| size(l)).sum();
        let resent: HashSet<&String> = after[..next]
            .iter()
            .filter(|l| exposed.contains(l))
            .collect();
        let resent_bytes: u64 = resent.iter().map(|l| size(l)).sum();
        eprintln!(
            "chaos backlog restart {k}: checkpoint={} exposed_lines={} exposed_bytes={exposed_bytes} \
             resent_lines={} resent_bytes={resent_bytes} bound_lines={} bound_bytes={WINDOW}",
            kill.checkpoint,
            exposed.len(),
            resent.len(),
            WINDOW / shortest
        );
        assert!(
            exposed_bytes <= WINDOW,
            "kill {k}: Firehose held {exposed_bytes} bytes past the checkpoint; the window is {WINDOW}"
        );
        assert!(exposed.len() as u64 <= WINDOW / shortest);
        resent_total += resent.len();
    }
    let duplicated = accepted.len() - lines.len();
    eprintln!(
        "chaos backlog: lines={} duplicated={duplicated} resent_after_restarts={resent_total} \
         bound={}",
        lines.len(),
        kills.len() as u64 * (WINDOW / shortest)
    );
    // Every extra copy is a line a restart sent again from its window: nothing else
    // in this run may duplicate.
    assert!(
        duplicated <= resent_total,
        "{duplicated} extra copies, but the restarts re-sent only {resent_total} lines"
    );
    assert!(
        resent_total > 0,
        "no restart sent anything again: the kills proved nothing"
    );
}
