//! The follower model with several sources sharing one ledger: each app writes its
//! own path and rotates it by its own script (rename, copytruncate, numbered or dated
//! names) while the others write, all in one directory; firetail, behind at every
//! event, acknowledges in any order with one source's lines stuck at times (its
//! stream throttled), and is killed and restarted from the real checkpoint at random
//! points. Every line of every file is checked as the one-file model checks it, and
//! each under its own source, never joined with another file's bytes, in its file's
//! order.

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
}

fn arb_multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        20 => (any::<usize>(), arb_op()).prop_map(|(a, op)| MultiOp::On(a, op)),
        1 => (any::<u64>(), 0u16..3).prop_map(|(s, src)| MultiOp::AckBut(s, src)),
        1 => any::<usize>().prop_map(MultiOp::End),
    ]
}

fn naming(dated: bool) -> Naming {
    if dated {
        Naming::Dated
    } else {
        Naming::Numbered
    }
}

/// Three literal paths in one directory, each its own source.
fn three_sources(dated: [bool; 3]) -> World {
    World::with(
        &[
            ("app", "app.log"),
            ("worker", "worker.log"),
            ("cron", "cron.log"),
        ],
        &[
            (0, "app.log", naming(dated[0])),
            (1, "worker.log", naming(dated[1])),
            (2, "cron.log", naming(dated[2])),
        ],
    )
}

fn run(w: &mut World, ops: &[MultiOp]) {
    for op in ops {
        match op {
            MultiOp::On(a, op) => {
                w.select(a % w.apps.len());
                apply(w, op);
            }
            MultiOp::AckBut(seed, source) => w.ack_but(*seed, Some(*source)),
            MultiOp::End(a) => {
                w.select(a % w.apps.len());
                w.end_app();
            }
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
        ..ProptestConfig::with_cases(96)
    })]

    #[test]
    fn several_sources_every_line_once_under_its_source_in_order(
        ops in prop::collection::vec(arb_multi_op(), 1..160),
        dated in any::<[bool; 3]>(),
    ) {
        let mut w = three_sources(dated);
        run(&mut w, &ops);
        check(&w)?;
    }
}

/// Pinned: every app rotates (each its own way) while the others write and firetail
/// is behind; one source's acknowledgements stuck across a kill: all three files'
/// lines come out, each under its source.
#[test]
fn rotations_of_three_files_interleaved_while_behind() {
    let mut w = three_sources([false, true, false]);
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
