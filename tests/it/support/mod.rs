//! Helpers shared by the integration tests: peers (moto, the fake Firehose) and a
//! handle on a running firetail child process.
#![allow(dead_code)]

pub mod fake_firehose;
pub mod firetail;
pub mod fleet;
pub mod fleet_figures;
pub mod fleet_pod;
pub mod moto;
pub mod pod;
pub mod skip;

use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it holds or `timeout` passes; true if it held. For
/// waiting on an outside system (S3 in moto) that cannot notify; the assertion is on
/// what arrived, never on how fast.
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sorted copy, for comparing what was written with what arrived (Firehose does not
/// promise order).
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
