//! A model-based property test of the follower, in the spirit of Vector's
//! `file_watcher/tests`: random sequences of file-system actions and of reads, run
//! against real files, with none of the old idealising preconditions — firetail may be
//! far behind when a file is truncated (with logrotate's copy kept, or compressed away
//! at once), the app keeps writing into a renamed file until it reopens, many renames
//! happen between two polls, files are shorter than the fingerprint, acknowledgements
//! come in any order, and firetail is killed at any point and restarts from whatever
//! checkpoint was last written, however stale (also one whose file was deleted while it
//! was down).
//!
//! Rotations also cut lines in half: the app writes the first part of a line, the file
//! is renamed or copied and truncated (firetail having read the part or not), and the
//! app writes the rest through its descriptor as the kernel has it then — into the
//! renamed file (the line is whole there), into a new file if it reopened in between,
//! or at offset 0 of the truncated file (`O_APPEND`). Each piece is where the model
//! says; no record may join bytes of two contents, and every fragment goes through
//! the real batch stage: shipped as it is or dead-lettered per `--invalid-json`, and
//! counted as invalid JSON.
//!
//! The model knows exactly which pieces no follower can recover
//! (docs/how-it-works.md#what-can-be-lost-and-why): those the app wrote between
//! logrotate's copy and its truncate; those of a truncated file not yet read when no
//! copy of it is left; those of a file deleted before firetail had it open (it has
//! every file open once a full poll has passed, or while it is down); those of a
//! content truncated before firetail read a byte of it. Every other piece must come
//! out; nothing may be invented or spliced; a line comes out twice only when it was
//! read but not acknowledged when firetail restarted.

mod fragments;
mod multi;
pub(crate) mod reader;
pub(crate) mod world;

use std::collections::HashMap;
use std::time::Duration;

use firetail::config::InvalidJson;
use proptest::prelude::*;

use fragments::check_fragments;
use world::{Part, Piece, World};

#[derive(Clone, Copy, Debug)]
enum Rotation {
    /// Renamed; the app writes the rest through its old descriptor, then reopens.
    Rename,
    /// Renamed, and the app reopens before it writes the rest (a buffered writer
    /// reopened on a signal flushes the rest into the new file).
    RenameReopenFirst,
    CopyTruncate {
        window: usize,
        keep_copy: bool,
    },
}

#[derive(Clone, Debug)]
enum Op {
    /// A whole line; or, while a line is half written, its rest.
    WriteLine(usize),
    /// The first part of a line, cut this far into its pad.
    WritePartial(usize, f64),
    /// Rename rotation (`access.log` → `.0`, older ones shifted); the app goes on
    /// writing into the renamed file until [`Op::Reopen`].
    RenameRotate,
    Reopen,
    /// copytruncate: copy, `window` writes after the copy, truncate; the copy kept, or
    /// removed at once (`compress` without `delaycompress`).
    CopyTruncate {
        window: usize,
        keep_copy: bool,
    },
    /// A line cut by a rotation with firetail not looking in between: the first part,
    /// the rotation, the rest.
    CutBy(Rotation, usize, f64),
    /// The oldest rotated file is deleted (Logger's `shift_age`, logrotate `rotate N`).
    DeleteOldest,
    Poll,
    PollAll,
    /// Acknowledge the read lines in an order given by the seed (some may stay).
    Ack(u64),
    /// The checkpoint writer writes what is acknowledged now.
    Checkpoint,
    /// `kill -9`: firetail stops (its last checkpoint, maybe stale, is what a restart
    /// sees); file actions go on until [`Op::Up`].
    Down,
    Up,
}

fn arb_rotation() -> impl Strategy<Value = Rotation> {
    prop_oneof![
        Just(Rotation::Rename),
        Just(Rotation::RenameReopenFirst),
        (0usize..3, any::<bool>())
            .prop_map(|(window, keep_copy)| Rotation::CopyTruncate { window, keep_copy }),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (1usize..400).prop_map(Op::WriteLine),
        6 => (2usize..300, 0.0..1.0f64).prop_map(|(n, c)| Op::WritePartial(n, c)),
        5 => Just(Op::RenameRotate),
        4 => Just(Op::Reopen),
        3 => (0usize..3, any::<bool>()).prop_map(|(window, keep_copy)| Op::CopyTruncate { window, keep_copy }),
        4 => (arb_rotation(), 2usize..300, 0.0..1.0f64).prop_map(|(r, n, c)| Op::CutBy(r, n, c)),
        2 => Just(Op::DeleteOldest),
        10 => Just(Op::Poll),
        4 => Just(Op::PollAll),
        6 => any::<u64>().prop_map(Op::Ack),
        4 => Just(Op::Checkpoint),
        2 => Just(Op::Down),
        2 => Just(Op::Up),
    ]
}

fn apply(w: &mut World, op: &Op) {
    match op {
        Op::WriteLine(n) => w.write_line(*n),
        Op::WritePartial(n, cut) => w.write_partial(*n, *cut),
        Op::RenameRotate => w.rename_rotate(),
        Op::Reopen => w.reopen(),
        Op::CopyTruncate { window, keep_copy } => w.copy_truncate(*window, *keep_copy),
        Op::CutBy(rotation, n, cut) => {
            w.write_partial(*n, *cut);
            match *rotation {
                Rotation::Rename => {
                    w.rename_rotate();
                    w.write_line(0);
                    w.reopen();
                }
                Rotation::RenameReopenFirst => {
                    w.rename_rotate();
                    w.reopen();
                    w.write_line(0);
                }
                Rotation::CopyTruncate { window, keep_copy } => {
                    w.copy_truncate(window, keep_copy);
                    w.write_line(0);
                }
            }
        }
        Op::DeleteOldest => w.delete_oldest(),
        Op::Poll => {
            w.poll();
        }
        Op::PollAll => w.poll_all(),
        Op::Ack(seed) => w.ack(*seed),
        Op::Checkpoint => w.write_checkpoint(),
        Op::Down => w.down(),
        Op::Up => w.up(),
    }
}

/// What the follower handed on against what the files held: every piece out unless
/// the loss list (docs/how-it-works.md#what-can-be-lost-and-why) explains it, nothing out that no content held whole (a
/// line joined from two contents, an invented one), repeats only after a restart;
/// each piece under its app's source, each file key holding one app's lines, and
/// each app's pieces in the order written within one run of firetail.
fn check(w: &World) -> Result<(), TestCaseError> {
    let pieces = w.all_pieces();
    let by_text: HashMap<&str, Piece> = pieces.iter().map(|p| (w.piece_text(*p), *p)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &w.emitted {
        if !by_text.contains_key(e.as_str()) {
            let joined = w.written.iter().position(|l| &l.text == e);
            prop_assert!(
                joined.is_none(),
                "line {joined:?} joined from bytes of two contents (it was never whole in any file): {e:?}"
            );
            prop_assert!(false, "invented or spliced line: {e:?}");
        }
        *counts.entry(e).or_default() += 1;
    }
    for p in &pieces {
        let text = w.piece_text(*p);
        prop_assert!(
            counts.contains_key(text) || w.unrecoverable.contains(p),
            "lost {p:?} (recoverable): {text:?}"
        );
    }
    for (line, n) in counts {
        prop_assert!(
            n == 1 || w.may_duplicate.contains(line),
            "line emitted {n} times without a restart to explain it: {line:?}"
        );
    }
    check_sources_and_order(w, &by_text)
}

/// Each line under the source of the app that wrote it; one file key, one app; and
/// per file and run, its pieces in the order written. (Across the files of one path
/// the order is the rotation order the tail infers from modification times, which a
/// coarse filesystem clock can leave tied: not asserted.)
fn check_sources_and_order(w: &World, by_text: &HashMap<&str, Piece>) -> Result<(), TestCaseError> {
    let rank = |p: Piece| (p.0, p.1 as u8);
    let mut key_app: HashMap<(usize, u32), usize> = HashMap::new();
    let mut last: HashMap<(usize, u32), Piece> = HashMap::new();
    for ((l, e), run) in w.lines_out.iter().zip(&w.emitted).zip(&w.runs) {
        let p = by_text[e.as_str()];
        let app = w.written[p.0].app;
        let source = w.apps[app].source;
        prop_assert_eq!(
            l.source,
            source,
            "{:?} of {} handed on under source {} (file key {})",
            p,
            w.apps[app].path.display(),
            l.source,
            l.file
        );
        // Keys are a process's own: a restart numbers files from 0 again.
        let first = *key_app.entry((*run, l.file)).or_insert(app);
        prop_assert_eq!(first, app, "file key {} holds lines of two apps", l.file);
        if let Some(before) = last.insert((*run, l.file), p) {
            prop_assert!(
                rank(before) < rank(p),
                "run {}: {:?} handed on after {:?} of the same app ({})",
                run,
                p,
                before,
                w.apps[app].path.display()
            );
        }
    }
    Ok(())
}

fn invalid_json_choice() -> impl Strategy<Value = InvalidJson> {
    prop_oneof![Just(InvalidJson::Ship), Just(InvalidJson::DeadLetter)]
}

proptest! {
    // Beside the unit tests' regressions: one folder for the crate.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/it/follower_model.txt",
            ),
        )),
        ..ProptestConfig::with_cases(160)
    })]

    #[test]
    fn every_recoverable_line_once_nothing_invented(
        ops in prop::collection::vec(arb_op(), 1..80),
        invalid_json in invalid_json_choice(),
        aggregate in any::<bool>(),
    ) {
        let mut w = World::new();
        for op in &ops {
            apply(&mut w, op);
        }
        w.finish();
        check(&w)?;
        check_fragments(&w, invalid_json, aggregate)?;
    }
}

/// Pinned: many rename rotations between two polls (Firehose down, the channel full)
/// with the app reopening each time; no generation skipped.
#[test]
fn many_renames_between_two_polls_lose_nothing() {
    let mut w = World::new();
    for _ in 0..12 {
        w.write_line(50);
        w.rename_rotate();
        w.write_line(50); // a late write into the renamed file
        w.reopen();
    }
    w.write_line(50);
    w.finish();
    check(&w).unwrap();
    assert!(w.unrecoverable.is_empty());
    assert_eq!(w.emitted.len(), w.written.len());
}

/// Pinned: copytruncate while far behind (nothing of the file read yet), the copy kept:
/// the copy is finished from the offset, then the truncated file from 0 — only the
/// window's lines are lost.
#[test]
fn copytruncate_while_behind_reads_the_rest_from_the_copy() {
    let mut w = World::new();
    for _ in 0..40 {
        w.write_line(100);
    }
    w.copy_truncate(2, true);
    w.write_line(5);
    w.finish();
    check(&w).unwrap();
    assert_eq!(w.unrecoverable.len(), 2, "the copy window only");
    assert_eq!(w.emitted.len(), w.written.len() - 2);
}

/// Pinned: a file shorter than the fingerprint, truncated and written again past the
/// old offset before firetail looks: the new content is read from 0, not spliced.
#[test]
fn a_short_file_truncated_and_regrown_is_new_content() {
    let mut w = World::new();
    w.copy_truncate(0, false);
    for _ in 0..3 {
        w.write_line(60);
    }
    w.finish();
    check(&w).unwrap();
    assert_eq!(w.emitted.len(), w.written.len());
}

/// Pinned: the checkpointed file shifted out and deleted while firetail was down; the
/// newer siblings and the current file are shipped.
#[test]
fn restart_after_the_checkpointed_file_was_deleted_ships_the_newer_ones() {
    let mut w = World::new();
    w.write_line(40);
    w.poll_all();
    w.ack(1);
    w.down();
    w.write_line(40);
    w.rename_rotate();
    w.reopen();
    w.write_line(40);
    w.rename_rotate();
    w.reopen();
    w.write_line(40);
    // .1 is the checkpointed one: gone.
    std::thread::sleep(Duration::from_millis(20));
    w.delete_oldest();
    w.finish();
    check(&w).unwrap();
}

/// Pinned: a copy made while firetail was down of content it never saw (the file was
/// empty when it was checkpointed) is newer than the checkpoint, so it is shipped.
#[test]
fn a_copy_of_unseen_content_made_while_down_is_shipped() {
    let mut w = World::new();
    w.copy_truncate(0, false);
    w.poll();
    w.ack(298107941316);
    w.write_line(23);
    w.copy_truncate(0, true);
    w.down();
    w.write_line(135);
    w.finish();
    check(&w).unwrap();
}

/// The follower's output as pieces, in order.
fn pieces_out(w: &World) -> Vec<Piece> {
    let pieces = w.all_pieces();
    w.emitted
        .iter()
        .map(|e| {
            *pieces
                .iter()
                .find(|p| w.piece_text(**p) == e)
                .unwrap_or_else(|| panic!("not a piece any file held: {e:?}"))
        })
        .collect()
}

/// Pinned: renamed in the middle of a line with firetail holding its first part; the
/// app writes the rest through its old descriptor, into the renamed file, where the
/// line is whole: it comes out whole, once.
#[test]
fn a_line_half_written_when_renamed_is_finished_in_the_renamed_file() {
    let mut w = World::new();
    w.write_partial(80, 0.5);
    w.poll_all();
    w.rename_rotate();
    w.poll_all();
    w.write_line(0);
    w.reopen();
    w.write_line(30);
    w.finish();
    check(&w).unwrap();
    assert_eq!(
        pieces_out(&w)[1..],
        [(1, Part::Whole), (2, Part::Whole)],
        "the cut line whole, then the new file's"
    );
}

/// Pinned: copytruncate in the middle of a line, firetail behind (nothing of the file
/// read): the first part is the copy's last bytes, the rest the truncated file's first
/// (`O_APPEND` writes at its new end, 0). Two fragments, never one joined line; both
/// shipped as they are and counted, or dead-lettered.
#[test]
fn a_line_cut_by_copytruncate_leaves_as_two_fragments() {
    for read_first in [false, true] {
        let mut w = World::new();
        w.write_line(40);
        w.write_partial(80, 0.3);
        if read_first {
            w.poll_all();
        }
        w.copy_truncate(0, true);
        w.write_line(0);
        w.write_line(40);
        w.finish();
        check(&w).unwrap();
        let mut out = pieces_out(&w);
        out.sort_unstable_by_key(|p| (p.0, p.1 as u8));
        assert_eq!(
            out,
            [
                (0, Part::Whole),
                (1, Part::Whole),
                (2, Part::Head),
                (2, Part::Tail),
                (3, Part::Whole)
            ],
            "read_first={read_first}"
        );
        for invalid_json in [InvalidJson::Ship, InvalidJson::DeadLetter] {
            check_fragments(&w, invalid_json, true).unwrap();
        }
    }
}

/// Pinned: renamed in the middle of a line and the app reopened before writing the
/// rest: the head ends the renamed file, the tail starts the new one; firetail killed
/// in between, with the head read but not handed on.
#[test]
fn a_line_split_across_a_reopen_is_never_joined_across_a_restart() {
    let mut w = World::new();
    w.write_partial(120, 0.7);
    w.poll_all();
    w.write_checkpoint();
    w.rename_rotate();
    w.reopen();
    w.write_line(0);
    w.poll_all();
    w.down();
    w.write_line(10);
    w.finish();
    check(&w).unwrap();
    let out = pieces_out(&w);
    assert!(out.contains(&(1, Part::Head)) && out.contains(&(1, Part::Tail)));
    check_fragments(&w, InvalidJson::Ship, false).unwrap();
}
