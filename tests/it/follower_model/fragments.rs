//! The follower's fragments through the real batch stage: a line cut by a rotation
//! leaves as two lines that are not JSON, each shipped alone and as it is, or
//! dead-lettered, per `--invalid-json`, and each counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use firetail::batch::{self, BatchSettings};
use firetail::config::InvalidJson;
use firetail::deadletter::DeadLetter;
use firetail::flush_clock::{Due, Pace};
use firetail::metrics::Metrics;
use firetail::outcome::DeadLetterReason;
use firetail::progress::Progress;
use proptest::prelude::*;

use super::world::{self, World};

/// What the real batch stage made of every line the follower handed on.
struct Shipped {
    records: Vec<Bytes>,
    invalid_json: u64,
    dead_lettered_invalid_json: u64,
}

/// Runs the follower's output, in its order, through the real batch stage (its own
/// classification, dead-letter file and counters).
fn through_batch_stage(w: &World, invalid_json: InvalidJson, aggregate: bool) -> Shipped {
    let dir = tempfile::tempdir_in(world::shm()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let dead_letter = Arc::new(DeadLetter::new(
        &dir.path().join("dead.json"),
        1 << 30,
        metrics.clone(),
    ));
    let settings = BatchSettings {
        aggregate,
        aggregate_max_lines: 100,
        invalid_json,
        pace: Arc::new(Pace::new(Duration::from_millis(200))),
        due: Arc::new(Due::new()),
        fields: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records = rt.block_on(async {
        let (line_tx, line_rx) = tokio::sync::mpsc::channel(w.lines_out.len() + 1);
        let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel(4);
        for l in &w.lines_out {
            line_tx.send(vec![l.clone()]).await.unwrap();
        }
        drop(line_tx);
        let stage = batch::run(
            line_rx,
            batch_tx,
            settings,
            Arc::new(Progress::default()),
            metrics.clone(),
            dead_letter,
        );
        let collect = async {
            let mut records = Vec::new();
            while let Some(b) = batch_rx.recv().await {
                records.extend(b.records);
            }
            records
        };
        tokio::join!(stage, collect).1
    });
    let dead_lettered_invalid_json = metrics.dead_lettered(DeadLetterReason::InvalidJson);
    Shipped {
        records,
        invalid_json: metrics.total_invalid_json(),
        dead_lettered_invalid_json,
    }
}

/// Fragments (heads and tails of cut lines) are not JSON: each is shipped alone and as
/// it is, or dead-lettered, per `--invalid-json`, and every one is counted.
pub fn check_fragments(
    w: &World,
    invalid_json: InvalidJson,
    aggregate: bool,
) -> Result<(), TestCaseError> {
    let whole: std::collections::HashSet<&str> =
        w.written.iter().map(|l| l.text.as_str()).collect();
    let is_fragment = |l: &firetail::tail::Line| !whole.contains(world::text_of(l).as_str());
    let fragments: Vec<Bytes> = w
        .lines_out
        .iter()
        .filter(|l| is_fragment(l))
        .map(|l| l.data.clone())
        .collect();
    let s = through_batch_stage(w, invalid_json, aggregate);
    prop_assert_eq!(
        s.invalid_json,
        fragments.len() as u64,
        "every fragment counted"
    );
    let shipped_fragments: Vec<Bytes> = s
        .records
        .iter()
        .filter(|r| {
            fragments
                .iter()
                .any(|f| r.windows(f.len()).any(|x| x == &f[..]))
        })
        .cloned()
        .collect();
    match invalid_json {
        InvalidJson::Ship => {
            prop_assert_eq!(
                &shipped_fragments,
                &fragments,
                "every fragment shipped alone, as it is"
            );
            prop_assert_eq!(s.dead_lettered_invalid_json, 0);
        }
        InvalidJson::DeadLetter => {
            prop_assert!(shipped_fragments.is_empty(), "a fragment was shipped");
            prop_assert_eq!(s.dead_lettered_invalid_json, fragments.len() as u64);
        }
    }
    let whole_lines = w.lines_out.len() - fragments.len();
    if !aggregate {
        prop_assert_eq!(s.records.len() - shipped_fragments.len(), whole_lines);
    }
    Ok(())
}
