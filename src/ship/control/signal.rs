//! signal: what one finished call tells the controller ([`Signal`]), and the tally of
//! those answers between two cuts of the send rate.

use std::time::Duration;

/// Answers per record between two cuts.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tally {
    /// Calls answered per record.
    pub(super) calls: u64,
    pub(super) sent: u64,
    pub(super) throttled: u64,
    pub(super) throttled_calls: u64,
    /// Calls throttled in part: some records accepted, some "Slow down.".
    pub(super) partial_calls: u64,
}

impl Tally {
    pub(super) fn add(&mut self, s: &Signal) {
        self.calls += u64::from(s.sent > 0);
        self.sent += u64::from(s.sent);
        self.throttled += u64::from(s.throttled_records);
        if s.throttled_records > 0 {
            self.throttled_calls += 1;
            if s.accepted > 0 {
                self.partial_calls += 1;
            }
        }
    }

    pub(super) fn merge(&mut self, o: &Tally) {
        self.calls += o.calls;
        self.sent += o.sent;
        self.throttled += o.throttled;
        self.throttled_calls += o.throttled_calls;
        self.partial_calls += o.partial_calls;
    }

    /// Whole-call throttles (the request quota) answer no share.
    pub(super) fn share(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.throttled as f64 / self.sent as f64
        }
    }
}

/// What one finished call tells the controller.
#[derive(Clone, Copy, Debug, Default)]
pub struct Signal {
    /// Records of the call when Firehose answered per record (a 200; 0 otherwise),
    /// how many it accepted and how many it answered "Slow down.".
    pub sent: u32,
    pub accepted: u32,
    pub throttled_records: u32,
    /// Records answered "Slow down.", or a whole call throttled.
    pub throttled: bool,
    /// A server error, timeout or connection failure: back off, but not a quota.
    pub failed: bool,
    pub latency: Duration,
    /// Calls in flight when this one was sent: it only says the limit is too low when
    /// every slot was in use.
    pub in_flight_at_send: usize,
}
