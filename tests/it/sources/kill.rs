//! `kill -9` at random moments while several files are behind: a literal source and a
//! glob matching three files, Firehose slow with answers out of order, so calls are in
//! flight and the window is full at every kill. Each restart resumes from the
//! checkpoint; nothing is lost, and what a restart sends again fits in the duplicate
//! window (`--max-unacked-bytes`), in bytes, counted from what the fake received.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::{distinct, family_fake, per_stream, source_args, stream, Source, LONG};
use crate::support::eventually;
use crate::support::fake_firehose::Faults;
use crate::support::firetail::{access_lines, append, aws_env, Firetail};

const WINDOW: u64 = 4 * 1024 * 1024;
const LATENCY: Duration = Duration::from_millis(100);
const JITTER: Duration = Duration::from_millis(1500);
const KILLS: usize = 5;
/// Lines per file before the first start, and added to each after every kill.
const BACKLOG: [usize; 4] = [16_000, 6_000, 6_000, 6_000];
const MORE: usize = 500;

/// One file of the scenario: where, its tag, everything written to it.
struct File {
    path: PathBuf,
    tag: String,
    lines: Vec<String>,
}

impl File {
    fn write(&mut self, n: usize) {
        let more = access_lines(&self.tag, self.lines.len()..self.lines.len() + n);
        append(&self.path, &more);
        self.lines.extend(more);
    }
}

#[test]
fn kill9_at_random_moments_with_several_files_behind_resends_at_most_the_window() {
    const SEED: u64 = 0x5_0c_e5_09;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let fake = family_fake(Faults {
        latency: LATENCY,
        latency_jitter: JITTER,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (web_stream, workers_stream) = (stream(&fake, "web"), stream(&fake, "workers"));
    let mut files: Vec<File> = ["web", "worker-0", "worker-1", "worker-2"]
        .iter()
        .map(|name| File {
            path: dir.path().join(format!("{name}.log")),
            tag: (*name).to_owned(),
            lines: Vec::new(),
        })
        .collect();
    for (f, n) in files.iter_mut().zip(BACKLOG) {
        f.write(n);
    }
    let checkpoint = format!(
        "--checkpoint={}",
        dir.path().join("firetail.json").display()
    );
    let args = source_args(
        &[
            Source::new("web", &files[0].path, &web_stream),
            Source::new("workers", &dir.path().join("worker-*.log"), &workers_stream),
        ],
        &[
            "--max-unacked-bytes=4MiB",
            "--max-in-flight=4",
            // No call reaches it: every duplicate comes from a restart.
            "--call-timeout=10s",
            &checkpoint,
        ],
    );
    let env = aws_env(&fake.endpoint());

    let mut kills = Vec::new();
    for k in 0..KILLS {
        let calls = fake.counters().calls;
        let mut ft = Firetail::start(&args, &env);
        assert!(
            fake.wait_for_calls(calls + 2, LONG),
            "restart {k} made no calls\n{}",
            ft.dump()
        );
        std::thread::sleep(Duration::from_millis(rng.u64(0..2000)));
        let behind = files_behind(&files, &fake.accepted_lines());
        ft.kill9();
        assert!(
            behind.len() >= 2,
            "kill {k}: only {behind:?} behind; the scenario needs several files behind"
        );
        for f in &mut files {
            f.write(MORE);
        }
        // The restart delay: by then the fake has answered (and accepted) every call
        // the dead process got out.
        std::thread::sleep(LATENCY + JITTER + Duration::from_millis(500));
        let accepted = fake.accepted_lines().len();
        eprintln!("sources kill {k}: files behind {behind:?}, accepted {accepted}");
        kills.push(accepted);
    }

    fake.set_faults(Faults {
        latency: Duration::from_millis(10),
        latency_jitter: Duration::from_millis(200),
        ..Faults::default()
    });
    let mut ft = Firetail::start(&args, &env);
    let total: usize = files.iter().map(|f| f.lines.len()).sum();
    assert!(
        eventually(LONG, || distinct(&fake) >= total),
        "{} of {total} lines arrived\n{}",
        distinct(&fake),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(ft.report()["undelivered"], 0, "{}", ft.report());

    let workers: Vec<String> = files[1..].iter().flat_map(|f| f.lines.clone()).collect();
    per_stream(
        "kill9_several_files_behind",
        &fake,
        &[
            (web_stream.as_str(), &files[0].lines),
            (workers_stream.as_str(), &workers),
        ],
        0,
        &ft,
    );
    assert_resent_within_the_window(&fake.accepted_lines(), &kills);
}

/// The files with lines written and not accepted yet.
fn files_behind(files: &[File], accepted: &[String]) -> Vec<String> {
    let got: HashSet<&String> = accepted.iter().collect();
    files
        .iter()
        .filter(|f| f.lines.iter().any(|l| !got.contains(l)))
        .map(|f| f.tag.clone())
        .collect()
}

/// For each restart: the lines it sent that Firehose had accepted before the kill,
/// in bytes (line and newline), at most the window; and every extra copy in the whole
/// run is one of these.
fn assert_resent_within_the_window(accepted: &[String], kills: &[usize]) {
    let size = |l: &String| l.len() as u64 + 1;
    let mut resent_total = 0usize;
    for (k, &at) in kills.iter().enumerate() {
        let end = kills.get(k + 1).copied().unwrap_or(accepted.len());
        let before: HashSet<&String> = accepted[..at].iter().collect();
        let resent: HashSet<&String> = accepted[at..end]
            .iter()
            .filter(|l| before.contains(l))
            .collect();
        let bytes: u64 = resent.iter().map(|l| size(l)).sum();
        eprintln!(
            "sources kill9 restart {k}: resent_lines={} resent_bytes={bytes} window={WINDOW}",
            resent.len()
        );
        assert!(
            bytes <= WINDOW,
            "restart {k} sent {bytes} bytes again, more than the window ({WINDOW})"
        );
        resent_total += resent.len();
    }
    let mut copies: HashMap<&String, usize> = HashMap::new();
    for l in accepted {
        *copies.entry(l).or_default() += 1;
    }
    let duplicated: usize = copies.values().map(|n| n - 1).sum();
    println!(
        "sources kill9_several_files_behind: kills={} duplicated={duplicated} resent_after_restarts={resent_total} window_bytes={WINDOW}",
        kills.len()
    );
    assert!(
        duplicated <= resent_total,
        "{duplicated} extra copies, but the restarts sent again only {resent_total} lines"
    );
    assert!(
        resent_total > 0,
        "no restart sent anything again: the kills proved nothing"
    );
}
