//! The follower model with several sources sharing one ledger: each app writes its
//! own path and rotates it by its own script (rename, copytruncate, numbered or dated
//! names) while the others write, all in one directory; a glob's files appear and are
//! deleted with their apps while firetail runs, and the glob also matches the rotated
//! files of a literal path (logrotate's `dateext` with `extension .log`) and of its own
//! files. firetail, behind at every event (inotify's events come late), acknowledges
//! in any order with one source's lines stuck at times (its stream throttled), and is
//! killed and restarted from the real checkpoint at random points. Every line of every
//! file is checked as the one-file model checks it, and each under its own source,
//! once, never joined with another file's bytes, in its file's order.

use proptest::prelude::*;

use super::world::{Naming, World};
use super::{apply, arb_op, check, Op};

#[derive(Clone, Debug)]
enum MultiOp {
    /// An action of one app (picked by this number among the apps), or of firetail.
    On(usize, Op),
    /// Acknowledgement with every line of this source left unacknowledged.
    AckBut(u64, u16),
    /// The app ends for good; its files are deleted with it.
    End(usize),
    /// A job starts writing `app-<letter>.log` (the glob's), its rotations numbered
    /// or dated, both with the extension last.
    Spawn(u8, bool),
    /// inotify's event for a created file reaches the tail.
    Notify,
}

fn arb_multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        20 => (any::<usize>(), arb_op()).prop_map(|(a, op)| MultiOp::On(a, op)),
        1 => (any::<u64>(), 0u16..3).prop_map(|(s, src)| MultiOp::AckBut(s, src)),
        1 => any::<usize>().prop_map(MultiOp::End),
        2 => (0u8..4, any::<bool>()).prop_map(|(l, d)| MultiOp::Spawn(l, d)),
        2 => Just(MultiOp::Notify),
    ]
}

/// A known gap the property test steps around: a glob's path that a restart finds
/// with no checkpoint entry takes the rotated files beside it for files older than
/// firetail (a restart cannot tell them from files shipped before and dropped from
/// the checkpoint); firetail WARNs and does not ship them. Stepped around by
/// rotating a glob's file only once a checkpoint holds it. (A path first listed
/// while firetail runs ships its rotated files:
/// `a_glob_file_rotated_before_the_tail_saw_it_is_shipped`.)
const GAP_GLOB_FILE_ROTATED_BEFORE_A_RESTART: bool = true;

/// A literal path rotated with `dateext` and `extension .log`, whose rotated files
/// the glob matches; another literal path; a glob (in the first one's lane) with one
/// job writing at first.
fn three_sources(worker_dated: bool) -> World {
    three_sources_with(Naming::DatedExt, worker_dated)
}

fn three_sources_with(app: Naming, worker_dated: bool) -> World {
    let worker = if worker_dated {
        Naming::Dated
    } else {
        Naming::Numbered
    };
    World::with(
        &[
            ("app", "app.log"),
            ("worker", "worker.log"),
            ("jobs", "app-*.log"),
        ],
        &[&[0, 2], &[1]],
        &[
            (0, "app.log", app),
            (1, "worker.log", worker),
            (2, "app-a.log", Naming::NumberedExt),
        ],
    )
}

/// Firetail's own actions, which no app's state holds back.
fn of_firetail(op: &Op) -> bool {
    matches!(
        op,
        Op::Poll | Op::PollAll | Op::Ack(_) | Op::Checkpoint | Op::Down | Op::Up
    )
}

fn rotates(op: &Op) -> bool {
    matches!(
        op,
        Op::RenameRotate | Op::CopyTruncate { .. } | Op::CutBy(..)
    )
}

/// The step around the known gap (see its flag): true when `op` of app `a` would
/// run into it.
fn into_known_bug(w: &World, a: usize, op: &Op) -> bool {
    let app = &w.apps[a];
    let glob_unanchored = app.source == 2 && !app.anchored;
    GAP_GLOB_FILE_ROTATED_BEFORE_A_RESTART && glob_unanchored && rotates(op)
}

fn run(w: &mut World, ops: &[MultiOp]) {
    for op in ops {
        match op {
            MultiOp::On(a, op) => {
                let a = a % w.apps.len();
                if w.ended(a) && !of_firetail(op) {
                    continue;
                }
                if into_known_bug(w, a, op) {
                    continue;
                }
                w.select(a);
                apply(w, op);
            }
            MultiOp::AckBut(seed, source) => w.ack_but(*seed, Some(*source)),
            MultiOp::End(a) => {
                w.select(a % w.apps.len());
                w.end_app();
            }
            MultiOp::Spawn(letter, dated) => {
                let naming = if *dated {
                    Naming::DatedExt
                } else {
                    Naming::NumberedExt
                };
                let name = format!("app-{}.log", char::from(b'a' + letter));
                w.spawn(2, &name, naming);
            }
            MultiOp::Notify => w.notify(),
        }
    }
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/it/follower_model.txt",
            ),
        )),
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn several_sources_every_line_once_under_its_source_in_order(
        ops in prop::collection::vec(arb_multi_op(), 1..240),
        worker_dated in any::<bool>(),
    ) {
        let mut w = three_sources(worker_dated);
        run(&mut w, &ops);
        check(&w)?;
    }
}

/// Pinned: every app rotates (each its own way) while the others write and firetail
/// is behind; one source's acknowledgements stuck across a kill: all three files'
/// lines come out, each under its source.
#[test]
fn rotations_of_three_files_interleaved_while_behind() {
    // `dateext` without the extension: the glob matches none of app.log's rotations.
    let mut w = three_sources_with(Naming::Dated, true);
    for round in 0..6 {
        for a in 0..3 {
            w.select(a);
            w.write_line(40 + a);
            w.write_partial(60, 0.5);
            match (round + a) % 3 {
                0 => {
                    w.rename_rotate();
                    w.write_line(0);
                    w.reopen();
                }
                1 => {
                    w.copy_truncate(0, true);
                    w.write_line(0);
                }
                _ => w.write_line(0),
            }
        }
        w.poll();
        w.ack_but(round as u64, Some(1));
        w.write_checkpoint();
        if round == 3 {
            w.down();
            w.up();
        }
    }
    w.finish();
    check(&w).unwrap();
    for a in 0..3 {
        let out = w
            .lines_out
            .iter()
            .filter(|l| usize::from(l.source) == a)
            .count();
        assert!(out >= 6 * 2, "source {a}: {out} lines out");
    }
}

/// A job's file under the glob, rotated before the tail listed the directory again
/// (its loop held up sending to a full channel), is followed with no checkpoint
/// entry: the rotated file present then was rotated while firetail ran, and ships
/// from 0 before the new file (see `GAP_GLOB_FILE_ROTATED_BEFORE_A_RESTART`).
#[test]
fn a_glob_file_rotated_before_the_tail_saw_it_is_shipped() {
    let mut w = three_sources(false);
    let job = w.spawn(2, "app-b.log", Naming::NumberedExt).unwrap();
    w.select(job);
    w.write_line(30);
    w.rename_rotate(); // app-b.log → app-b.0.log, which the glob matches too
    w.reopen();
    w.write_line(30);
    w.finish();
    check(&w).unwrap();
}

/// `app.log` (a literal source) rotated by logrotate with `dateext` and `extension
/// .log` makes `app-20261207NNNN.log`, which the glob `app-*.log` of another source
/// matches. When the glob's listing sees that file before the literal path's
/// follower has it open (logrotate's copy, always: the follower opens it only once
/// it sees the truncation; or two renames between two polls), it is still the
/// literal path's: a rotation of any source's literal path is no file of a glob's,
/// so its lines are shipped once, under their own source.
#[test]
fn a_literal_paths_copy_a_glob_matches_is_shipped_once() {
    let mut w = three_sources_with(Naming::DatedExt, false);
    w.select(0);
    w.write_line(30);
    w.copy_truncate(0, true); // app.log's copy: app-202612070000.log
    w.write_line(30);
    w.finish();
    check(&w).unwrap();
}

/// The same bug through renames: two between two polls, so the follower of app.log
/// never had the first renamed-to file open when the glob lists it.
#[test]
fn a_literal_paths_rotated_file_a_glob_matches_is_shipped_once() {
    let mut w = three_sources_with(Naming::DatedExt, false);
    w.select(0);
    for _ in 0..2 {
        w.write_line(30);
        w.rename_rotate();
        w.reopen();
    }
    w.write_line(30);
    w.finish();
    check(&w).unwrap();
}

/// Files rotated while firetail was behind are read oldest first by modification
/// time, then by their rotation number — also where logrotate's `extension .log`
/// puts it (`app-a.1.log`, not only `app.log.1`): two such files written within one
/// tick of a coarse filesystem clock are read `.1` before `.0`, in the order written.
#[test]
fn rotated_files_with_the_extension_last_are_read_oldest_first() {
    let mut w = three_sources(false);
    w.select(2); // app-a.log, the glob's, numbered with the extension last
    for _ in 0..3 {
        w.write_line(30);
        w.rename_rotate();
        w.reopen();
    }
    w.write_line(30);
    w.same_mtimes();
    w.finish();
    check(&w).unwrap();
    let app_a: Vec<&str> = w
        .lines_out
        .iter()
        .filter(|l| l.source == 2)
        .map(|l| std::str::from_utf8(&l.data).unwrap())
        .collect();
    let seqs: Vec<usize> = app_a
        .iter()
        .map(|t| t["{\"seq\":".len()..t.find(',').unwrap()].parse().unwrap())
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "app-a's lines in the order written");
}
