//! Glob sources: files that appear while firetail runs, a dateext rotation whose
//! rotated name the glob matches too, and 200 files matched at once under a low soft
//! open-files limit.

use std::io::Write;
use std::path::Path;

use super::{distinct, family_fake, per_stream, source_args, stream, tools_present, Source, LONG};
use crate::files::{App, Writer};
use crate::rotation::logrotate;
use crate::support::eventually;
use crate::support::fake_firehose::{FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, Firetail};

/// Waits until `n` distinct lines arrived, else fails with the logs.
fn wait_distinct(fake: &FakeFirehose, n: usize, ft: &Firetail) {
    assert!(
        eventually(LONG, || distinct(fake) >= n),
        "{} of {n} lines arrived\n{}",
        distinct(fake),
        ft.dump()
    );
}

/// Creates `path` holding `lines`, in one write.
fn create_with(path: &Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(format!("{}\n", lines.join("\n")).as_bytes())
        .unwrap();
}

fn no_duplicates(figures: &std::collections::BTreeMap<String, super::StreamFigures>) {
    for (s, f) in figures {
        assert_eq!(f.duplicated, 0, "{s}: lines shipped twice");
    }
}

/// Every line of `expected` arrives, firetail drains and exits 0 on SIGTERM, and no
/// line of any stream arrived twice.
fn each_line_once(
    name: &str,
    fake: &FakeFirehose,
    ft: &mut Firetail,
    expected: &[(&str, &[String])],
) {
    let total = expected.iter().map(|(_, l)| l.len()).sum();
    wait_distinct(fake, total, ft);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    no_duplicates(&per_stream(name, fake, expected, 0, ft));
}

#[test]
fn files_appearing_under_a_glob_are_picked_up_and_ship_their_first_line_unprompted() {
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.log");
    let (workers_stream, web_stream) = (stream(&fake, "workers"), stream(&fake, "web"));
    let args = source_args(
        &[
            Source::new("web", &web, &web_stream),
            Source::new("workers", &dir.path().join("worker-*.log"), &workers_stream),
        ],
        &[],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let web_lines = access_lines("web", 0..300);
    append(&web, &web_lines[..100]);

    let mut workers = Vec::new();
    for i in 0..5 {
        let path = dir.path().join(format!("worker-{i}.log"));
        let lines = access_lines(&format!("worker{i}"), 0..301);
        if i == 4 {
            // Written under another name, then renamed into the pattern, as tools
            // that create files atomically do.
            let part = dir.path().join("worker-4.part");
            create_with(&part, &lines[..1]);
            std::fs::rename(&part, &path).unwrap();
        } else {
            create_with(&path, &lines[..1]);
        }
        // Nothing else is written until the new file's one line has arrived: it is
        // found by its creation, not by a later write.
        assert!(
            eventually(LONG, || fake
                .accepted_lines_of(&workers_stream)
                .contains(&lines[0])),
            "the first line of {} never shipped\n{}",
            path.display(),
            ft.dump()
        );
        workers.push((path, lines));
    }
    // Names the pattern does not match are never shipped.
    append(
        &dir.path().join("worker-9.txt"),
        &access_lines("stray", 0..50),
    );
    append(
        &dir.path().join("worker-4.part"),
        &access_lines("part", 0..50),
    );
    for (path, lines) in &workers {
        append(path, &lines[1..]);
    }
    append(&web, &web_lines[100..]);
    let worker_lines: Vec<String> = workers.iter().flat_map(|(_, l)| l.clone()).collect();
    each_line_once(
        "glob_new_files",
        &fake,
        &mut ft,
        &[
            (workers_stream.as_str(), &worker_lines),
            (web_stream.as_str(), &web_lines),
        ],
    );
}

/// logrotate `dateext` with `extension .log` renames `app.log` to `app-YYYYMMDD.log`:
/// a name the glob `app*.log` matches too. It is the file already followed, moved:
/// its lines ship once, not again as a new file's.
#[test]
fn a_dateext_rotation_the_glob_also_matches_ships_every_line_once() {
    if !tools_present(&["logrotate"]) {
        return;
    }
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = tempfile::tempdir().unwrap();
    let app_stream = stream(&fake, "app");
    let args = source_args(
        &[Source::new(
            "app",
            &dir.path().join("app*.log"),
            &app_stream,
        )],
        &[],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    // Ready: the tail has taken its first look, so every file after it is new.
    crate::support::pod::wait_ready(&ft);
    let mut writer = Writer::start(App::open(&log, "dateext", false));
    // The second rotation the same day needs a finer name: logrotate refuses to
    // rotate onto an existing one.
    for format in ["-%Y%m%d", "-%Y%m%d-%H%M%S"] {
        writer.write_more(1500);
        writer.paused(|app| {
            logrotate(
                state.path(),
                &log,
                &format!(
                    "dateext\ndateformat {format}\nextension .log\ncreate\nrotate 10\nnocompress\nmissingok"
                ),
            );
            app.reopen(false);
        });
    }
    writer.write_more(1500);
    let (written, _) = writer.stop();
    let rotated: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app-") && n.ends_with(".log"))
        .collect();
    assert_eq!(
        rotated.len(),
        2,
        "logrotate made app-YYYYMMDD.log and app-YYYYMMDD-HHMMSS.log: {rotated:?}"
    );
    each_line_once(
        "glob_dateext",
        &fake,
        &mut ft,
        &[(app_stream.as_str(), &written)],
    );
}

/// The hard open-files limit for the child: 4,096, or ours when lower (raising a hard
/// limit needs CAP_SYS_RESOURCE).
fn hard_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max.min(4096)
}

#[test]
fn two_hundred_files_matched_at_once_under_a_soft_limit_of_64_all_ship() {
    const FILES: usize = 200;
    if !tools_present(&["prlimit"]) {
        return;
    }
    let hard = hard_limit();
    if hard < 1024 {
        crate::support::skip::skip_or_fail(&format!(
            "the hard open-files limit here is {hard}: no room for 200 files"
        ));
        return;
    }
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let many_stream = stream(&fake, "many");
    let files: Vec<(std::path::PathBuf, Vec<String>)> = (0..FILES)
        .map(|i| {
            let path = dir.path().join(format!("f-{i:03}.log"));
            (path, access_lines(&format!("f{i:03}"), 0..60))
        })
        .collect();
    for (path, lines) in &files {
        append(path, &lines[..50]);
    }
    let args = source_args(
        &[Source::new(
            "many",
            &dir.path().join("f-*.log"),
            &many_stream,
        )],
        &[],
    );
    let nofile = format!("--nofile=64:{hard}");
    let mut ft = Firetail::start_via(
        &["prlimit", &nofile, "--"],
        &args,
        &aws_env(&fake.endpoint()),
    );
    ft.wait_message("firetail started.", LONG);
    let limit = ft.wait_message("Open-files limit.", LONG);
    assert_eq!(
        limit["soft_before"], 64,
        "not started under the low limit: {limit}"
    );
    wait_distinct(&fake, FILES * 50, &ft);
    // Every file is still followed: lines added to each of them arrive too.
    for (path, lines) in &files {
        append(path, &lines[50..]);
    }
    let all: Vec<String> = files.iter().flat_map(|(_, l)| l.clone()).collect();
    each_line_once(
        "glob_200_files_soft_limit_64",
        &fake,
        &mut ft,
        &[(many_stream.as_str(), &all)],
    );
    assert!(
        ft.logs().iter().all(|v| !v["message"]
            .as_str()
            .unwrap_or("")
            .contains("No file descriptor free")),
        "EMFILE\n{}",
        ft.dump()
    );
}

/// A file the glob matches, created, written and renamed to a rotation of its own name
/// before firetail lists the directory (firetail stopped with SIGSTOP, as a tail held
/// up by back-pressure would be), and its name created again: both files were written
/// while firetail ran, so both ship, each line once, the rotated one first.
#[test]
fn a_glob_file_rotated_before_it_was_first_listed_ships() {
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let jobs = stream(&fake, "jobs");
    let args = source_args(
        &[Source::new("jobs", &dir.path().join("job-*.log"), &jobs)],
        &[],
    );
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    // Ready: the tail has taken its first look (files present then are older).
    crate::support::pod::wait_ready(&ft);
    let path = dir.path().join("job-a.log");
    ft.signal(libc::SIGSTOP);
    let before = access_lines("before", 0..10);
    create_with(&path, &before);
    std::fs::rename(&path, dir.path().join("job-a.log.1")).unwrap();
    let after = access_lines("after", 0..10);
    create_with(&path, &after);
    ft.signal(libc::SIGCONT);
    let all: Vec<String> = [before, after].concat();
    each_line_once(
        "glob_rotated_unseen",
        &fake,
        &mut ft,
        &[(jobs.as_str(), &all)],
    );
    let got = fake.accepted_lines_of(&jobs);
    let first_after = got.iter().position(|l| l.contains("after")).unwrap();
    assert!(
        got[..first_after]
            .iter()
            .filter(|l| l.contains("before"))
            .count()
            == 10,
        "the rotated file's lines ship before the new file's: {got:?}"
    );
}

/// At a restart, a glob's path without a checkpoint entry whose rotated files no
/// follower knows: a restart cannot tell files rotated while firetail was down from
/// files shipped before and dropped from the checkpoint, so they are not shipped —
/// never silently: a WARN names the path and counts them.
#[test]
fn a_glob_files_unknown_rotations_at_a_restart_are_reported() {
    let fake = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let jobs = stream(&fake, "jobs");
    let args = source_args(
        &[Source::new("jobs", &dir.path().join("job-*.log"), &jobs)],
        &[],
    );
    let first = access_lines("first", 0..5);
    create_with(&dir.path().join("job-x.log"), &first);
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    wait_distinct(&fake, first.len(), &ft);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let path = dir.path().join("job-a.log");
    create_with(&path, &access_lines("before", 0..10));
    std::fs::rename(&path, dir.path().join("job-a.log.1")).unwrap();
    let after = access_lines("after", 0..10);
    create_with(&path, &after);
    let ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let warned = ft.wait_message(
        "A file the glob matches was first seen with rotated files beside it that no follower read; they are taken for files older than firetail and not shipped.",
        LONG,
    );
    assert_eq!(warned["rotated_files"], 1, "{warned}");
    assert_eq!(warned["source"], "jobs", "{warned}");
    wait_distinct(&fake, first.len() + after.len(), &ft);
}
