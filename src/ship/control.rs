//! How hard this pod pushes on a stream that many pods share
//! (docs/design.md#firehose-rules).
//!
//! Firehose's quota is per stream and per second (records, requests, bytes). Over it,
//! Firehose answers "Slow down." per record inside a 200, or a whole-call
//! `ServiceUnavailableException`. Every pod sees only its own answers, so each one
//! must find its share from them, the way TCP flows share a link:
//!
//! - **Send rate** (records/s): unlimited until the first throttle, then set to
//!   [`RATE_BETA`] × the larger of what the stream accepted from this pod over the
//!   last second and what the app offers now, cut by [`RATE_BETA`] on
//!   each later throttle and raised by [`RATE_ALPHA`] per second while the pod has
//!   more to send and is not throttled; lifted after a minute in which it held
//!   nothing back. Additive increase with multiplicative decrease
//!   makes equal pods converge to equal shares. A limit on calls in flight alone
//!   cannot do this: a call takes milliseconds, so even one call in flight can send
//!   far more than a per-second quota.
//! - **Who grows faster**: the quota is first come first served within its second,
//!   so which pods are throttled in a second is luck, not their rate. Plain AIMD
//!   then shares fairly only on average: an unlucky pod's cuts add up, and over a
//!   minute equal pods got 0.5 to 1.5 times their share. So the increase is
//!   weighted by how far below its app's demand a pod is held: (0.7 × demand /
//!   rate)², between ¼ and 2 ([`GROWTH_MIN`], [`GROWTH_MAX`]). Demand is the same
//!   for pods that write alike, so the ones luck cut most recover fastest, and a
//!   pod above its peers grows slowest: negative feedback on what each pod got.
//! - **Calls in flight**: `--max-in-flight` is the ceiling; the limit is cut in half
//!   on throttles, server errors, timeouts and a latency far above its baseline, and
//!   grows by one per limit's worth of clean calls that used every slot.
//! - **Flush interval**: under sustained throttling it stretches (×1.5 per throttled
//!   second, at most ×[`MAX_STRETCH`]), so the pod sends fuller calls less often and
//!   spends fewer of the stream's requests; it returns once throttling has stopped.
//!
//! Throttles are counted as one event per second at most: the quota's window is a
//! second, and every call answered in that window reports the same congestion.
//!
//! A throttle that does not answer to the rate is not this pod's to fix: when eight
//! cuts in a row leave the share of throttled records where it was, and partial (a
//! stream that throttles a steady part of every call whatever the rate), the
//! controller lifts the rate and ignores throttles for [`DEAF_FOR`], instead of
//! starving the pod. A quota does not look like that: past it, a pod's calls are
//! throttled whole or not at all, depending on when in the second they arrive.
//!
//! With `--adaptive false` nothing here adapts: `--max-in-flight` calls, no rate limit,
//! the flush interval as given. Pure: the caller supplies the clock.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

mod signal;
pub use signal::Signal;
use signal::Tally;

/// Multiplicative decrease of the send rate on a throttled second. Only the pods
/// throttled in a second cut, so the fleet's total falls by (1 − β) of what it sent
/// past the quota, not of the whole: goodput stays near the quota.
pub const RATE_BETA: f64 = 0.7;
/// Additive increase of the send rate, records/s per second while not throttled,
/// times the growth weight (see "Who grows faster" above). What the fleet sends
/// past the quota settles near pods × α × (mean weight) / (1 − β) a second, so
/// retry amplification is about α × weight / ((1 − β) × a pod's share): 0.15 ×
/// weight for 50 pods sharing 2,000 records/s (the fleet simulation measured
/// 0.17-0.18 in its overload, 0.10 before the weight), 0.02 × weight for a share of
/// 400/s. A larger α converges faster from unequal starts and refuses more records.
pub const RATE_ALPHA: f64 = 2.0;
/// The rate never goes below this: a pod always makes some progress.
pub const RATE_MIN: f64 = 5.0;
/// Bounds of the weight on the additive increase, (β × demand / rate)²: a pod far
/// below its demand grows at most twice as fast, one above it at least a quarter as
/// fast. The upper bound keeps what the fleet sends past the quota, and so retry
/// amplification, within twice that of plain AIMD; it also bounds how much faster a
/// pod that writes ten times its share grows than its peers (4 gave pods that write
/// less than their share Jain 0.989-0.993 in the window model, 2 gives 0.992-0.994,
/// plain AIMD 0.995-0.997; with calls of 30 ms to 1.2 s, out of order, several in
/// flight, 2 gives 0.988-0.993 and plain AIMD 0.992-0.998).
pub const GROWTH_MIN: f64 = 0.25;
pub const GROWTH_MAX: f64 = 2.0;
/// The flush interval stretches to at most this many times `--flush-interval`.
pub const MAX_STRETCH: f64 = 4.0;
/// A limit that held nothing back for this long, without a throttle either, is lifted.
const RATE_RELEASE: Duration = Duration::from_secs(60);
/// The window over which what the app offers is measured.
const OFFERED_OVER: Duration = Duration::from_secs(3);
/// The flush interval starts to return this long after the last throttle.
const STRETCH_HOLD: Duration = Duration::from_secs(5);
/// A call slower than this many times the latency baseline counts as congestion.
const LATENCY_FACTOR: f64 = 3.0;
const LATENCY_FLOOR: Duration = Duration::from_millis(100);
const SECOND: Duration = Duration::from_secs(1);
/// After eight cuts in a row that changed nothing, throttles are not acted on for this long.
pub const DEAF_FOR: Duration = Duration::from_secs(30);
/// Cuts in a row that must have "changed nothing" before the controller stops
/// listening: enough that a pod of a fleet rarely sees as many by chance.
const CUTS_TO_TELL: usize = 8;
/// Cuts "changed nothing" when the share of throttled records answered since
/// the first of them is still at least this part of the share before it, and nearly
/// every call was throttled, only in part. (Past a quota, most of a pod's calls go
/// through whole or are throttled whole; only one that arrives as the second's quota
/// runs out is throttled in part.)
const UNMOVED: f64 = 0.6;

/// Whether a call may go now, with how many records at most, or when to ask again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Allow {
    Now(usize),
    At(Instant),
}

pub struct Control {
    adaptive: bool,
    max_in_flight: usize,
    limit: f64,
    base_flush: Duration,
    stretch: f64,
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
    /// Records that arrived from the batch stage over the last [`OFFERED_OVER`].
    intake: VecDeque<(Instant, u32)>,
    /// When this pod started: what it offered is measured over the time it has run.
    born: Instant,
    /// Records/s the app offered at most since the rate was set, measured only from
    /// batches that came at the batch stage's own pace (see [`Control::backed_up`]).
    demand: f64,
    /// When the ship stage last held a full call's worth and took no batch: batches
    /// that arrive then come when there is room, not when the app wrote them.
    backed_up: Option<Instant>,
    /// Calls of the last second: (when, sent, accepted, throttled records).
    recent: VecDeque<(Instant, u32, u32, u32)>,
    /// (records answered per record, of them throttled) per interval between cuts,
    /// the last nine; and the same counted since the last cut.
    intervals: VecDeque<Tally>,
    since_cut: Tally,
    deaf_until: Option<Instant>,
    last_throttle: Option<Instant>,
    last_cut: Option<Instant>,
    last_step: Instant,
    /// The part of a full bucket the next paced call waits for.
    fill: f64,
    /// The rate held records back since the last step: only then may it grow.
    held_back: bool,
    /// When it last did: a limit that holds nothing back for a minute is lifted.
    last_held: Instant,
    latency_baseline: Option<f64>,
}

impl Control {
    pub fn new(adaptive: bool, max_in_flight: usize, flush: Duration, now: Instant) -> Control {
        Control {
            adaptive,
            max_in_flight,
            // A pod of a rollout starts gently and grows to what it needs.
            limit: if adaptive { 1.0 } else { max_in_flight as f64 },
            base_flush: flush,
            stretch: 1.0,
            rate: None,
            tokens: 0.0,
            refilled: now,
            intake: VecDeque::new(),
            born: now,
            demand: 0.0,
            backed_up: None,
            recent: VecDeque::new(),
            intervals: VecDeque::new(),
            since_cut: Tally::default(),
            deaf_until: None,
            last_throttle: None,
            last_cut: None,
            last_step: now,
            held_back: false,
            last_held: now,
            fill: 1.0,
            latency_baseline: None,
        }
    }

    /// Calls that may be in flight now.
    pub fn in_flight_limit(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.max_in_flight)
    }

    /// The flush interval the batch stage should use now.
    pub fn flush_interval(&self) -> Duration {
        self.base_flush.mul_f64(self.stretch)
    }

    /// The send rate limit in records/s, `None` while unlimited.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Records one call may carry at most: a flush interval's worth of the rate.
    fn bucket(&self, rate: f64) -> f64 {
        (rate * self.flush_interval().as_secs_f64()).max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + rate * dt).min(self.bucket(rate));
        }
        self.refilled = now;
    }

    /// May a call with up to `queued` records go now? Under a rate limit it waits
    /// until it can take what is queued or a full bucket, whichever is less: fuller
    /// calls, less often.
    pub fn allow(&mut self, now: Instant, queued: usize) -> Allow {
        self.step(now);
        self.refill(now);
        let Some(rate) = self.rate else {
            return Allow::Now(usize::MAX);
        };
        let need = (queued as f64).min(self.bucket(rate) * self.fill).max(1.0);
        if self.tokens + 1e-9 >= need {
            // Less than what waits: the rate holds the rest back.
            self.held_back |= self.tokens < queued as f64;
            Allow::Now(self.tokens.floor().max(1.0) as usize)
        } else {
            self.held_back = true;
            Allow::At(now + Duration::from_secs_f64((need - self.tokens) / rate))
        }
    }

    /// A call with `records` records was sent.
    pub fn sent(&mut self, records: usize) {
        if self.rate.is_some() {
            self.tokens = (self.tokens - records as f64).max(0.0);
            // The next paced call waits for a random half to all of a bucket: its
            // moment in the quota's second is drawn anew, so no pod keeps a lucky
            // (or unlucky) phase for long. The average rate does not change.
            self.fill = 0.5 + 0.5 * fastrand::f64();
        }
    }

    /// The ship stage holds a call's worth and takes no more batches: the batch stage
    /// (and the file) hold the rest, and batches come as room appears.
    pub fn backed_up(&mut self, now: Instant) {
        self.backed_up = Some(now);
    }

    /// `records` arrived from the batch stage: what the app offers, unless the ship
    /// stage was backed up within the last flush interval (the batch then waited for
    /// room, and its arrival says how fast this pod sends, not what the app wrote).
    pub fn arrived(&mut self, now: Instant, records: usize) {
        let paced_by_us = self
            .backed_up
            .is_some_and(|t| now.saturating_duration_since(t) <= self.flush_interval());
        if paced_by_us {
            self.intake.clear();
            return;
        }
        self.intake.push_back((now, records as u32));
        while self
            .intake
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > OFFERED_OVER)
        {
            self.intake.pop_front();
        }
    }

    /// Records per second the app offered lately: from the batches that arrived over
    /// the last [`OFFERED_OVER`], the records after the first over the time from the
    /// first to the last (each batch holds what came since the one before it). A
    /// rate over a fixed window would count a batch more or less by chance, and
    /// would mix in what the app wrote before an overload began: pods throttled at
    /// its start would then get a first rate far below that of pods throttled a few
    /// seconds later, and additive growth takes long to even that out. With fewer
    /// than two batches a second apart, the records over the time the pod has run.
    fn offered(&self, now: Instant) -> f64 {
        let recent: Vec<&(Instant, u32)> = self
            .intake
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= OFFERED_OVER)
            .collect();
        if let (Some(first), Some(last)) = (recent.first(), recent.last()) {
            let span = last.0.saturating_duration_since(first.0);
            if span >= SECOND {
                let after: u64 = recent[1..].iter().map(|(_, n)| u64::from(*n)).sum();
                return after as f64 / span.as_secs_f64();
            }
        }
        let n: u64 = recent.iter().map(|(_, n)| u64::from(*n)).sum();
        let over = now
            .saturating_duration_since(self.born)
            .clamp(SECOND, OFFERED_OVER);
        n as f64 / over.as_secs_f64()
    }

    /// Learns from one finished call.
    pub fn observe(&mut self, now: Instant, s: Signal) {
        self.recent
            .push_back((now, s.sent, s.accepted, s.throttled_records));
        self.since_cut.add(&s);
        while self
            .recent
            .front()
            .is_some_and(|(t, ..)| now.saturating_duration_since(*t) > SECOND)
        {
            self.recent.pop_front();
        }
        if !self.adaptive {
            return;
        }
        let slow = self.slow(s.latency);
        let deaf = self.deaf_until.is_some_and(|t| now < t);
        let s = Signal {
            throttled: s.throttled && !deaf,
            ..s
        };
        if s.throttled {
            self.last_throttle = Some(now);
        }
        if s.throttled || s.failed || slow {
            self.cut(now, s.throttled, s.throttled_records > 0);
        } else if s.in_flight_at_send >= self.in_flight_limit() {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max_in_flight as f64);
        }
    }

    /// Tracks the latency of calls as a slowly moving baseline; true when this one
    /// is far above it.
    fn slow(&mut self, latency: Duration) -> bool {
        let l = latency.as_secs_f64();
        let base = *self.latency_baseline.get_or_insert(l);
        let slow = l > (base * LATENCY_FACTOR).max(base + LATENCY_FLOOR.as_secs_f64());
        if !slow {
            self.latency_baseline = Some(base * 0.9 + l * 0.1);
        }
        slow
    }

    /// One congestion event per second at most: halve the calls in flight; on a
    /// throttle, also cut the rate and stretch the flush interval.
    fn cut(&mut self, now: Instant, throttled: bool, per_record: bool) {
        if self
            .last_cut
            .is_some_and(|t| now.saturating_duration_since(t) < SECOND)
        {
            return;
        }
        self.last_cut = Some(now);
        self.limit = (self.limit / 2.0).max(1.0);
        if !throttled {
            return;
        }
        // Fewer, fuller calls answer a request quota (and an outage's 503s, which
        // look the same); only records answered "Slow down." say the records are
        // too many. A rate cut on whole-call throttles would leave a pod crawling
        // after an outage.
        self.stretch = (self.stretch * 1.5).min(MAX_STRETCH);
        if !per_record || self.unanswered(now) {
            return;
        }
        self.refill(now);
        let rate = match self.rate {
            Some(r) => r * RATE_BETA,
            None => {
                // What the stream took from this pod in the last second is luck
                // when many pods start at once; what the app offered is the same
                // for pods that write alike. The larger of the two sets the rate;
                // the demand that weighs its growth is what the app offered, not
                // luck (what was taken only when nothing arrived at the app's pace).
                let got = f64::from(self.recent.iter().map(|(_, _, a, _)| a).sum::<u32>());
                let offered = self.offered(now);
                self.demand = if offered > 0.0 { offered } else { got };
                got.max(offered) * RATE_BETA
            }
        };
        self.rate = Some(rate.max(RATE_MIN));
        self.tokens = self.tokens.min(self.bucket(rate.max(RATE_MIN)));
        self.last_step = now;
        self.held_back = false;
    }

    /// Whether the last eight cuts left the throttled share where it was; if so,
    /// stop listening to throttles for a while. Shares are counted over the whole
    /// intervals between cuts: a second's worth of records is too few to compare.
    fn unanswered(&mut self, now: Instant) -> bool {
        let interval = std::mem::take(&mut self.since_cut);
        self.intervals.push_back(interval);
        if self.intervals.len() < CUTS_TO_TELL + 1 {
            return false;
        }
        let before = self.intervals[0].share();
        let mut since = Tally::default();
        for i in self.intervals.iter().skip(1) {
            since.merge(i);
        }
        let after = since.share();
        self.intervals.pop_front();
        // Nearly every call throttled, each only in part.
        let partial = since.partial_calls == since.throttled_calls
            && since.throttled_calls as f64 >= 0.8 * since.calls as f64
            && since.throttled_calls > 0;
        if !(before > 0.0 && after >= before * UNMOVED && partial) {
            return false;
        }
        self.intervals.clear();
        let share = after;
        self.deaf_until = Some(now + DEAF_FOR);
        self.last_throttle = None;
        self.rate = None;
        self.demand = 0.0;
        self.stretch = 1.0;
        tracing::info!(
            throttled_share = share,
            "Throttling does not follow this pod's send rate (eight cuts changed nothing); not cutting it further for 30 s."
        );
        true
    }

    /// The weight on the additive increase: (β × demand / rate)², bounded. 1 at
    /// β × demand (a first rate set from what the app offered); more for a pod that
    /// luck cut below it, less for one that grew above it. Without a measured
    /// demand, plain AIMD.
    fn growth(&self, rate: f64) -> f64 {
        if self.demand <= 0.0 {
            return 1.0;
        }
        (RATE_BETA * self.demand / rate)
            .powi(2)
            .clamp(GROWTH_MIN, GROWTH_MAX)
    }

    /// The drain: every line read must go before the grace period ends, and a stream
    /// that throttles will say so call by call; the rate limit and the stretched
    /// flush no longer help anyone.
    pub fn drain(&mut self) {
        self.rate = None;
        self.stretch = 1.0;
    }

    /// Once a second: raise the rate if it held records back and nothing was
    /// throttled; let the flush interval return; lift the rate after a quiet minute.
    fn step(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.last_step);
        if since < SECOND {
            return;
        }
        self.last_step = now;
        let calm = self
            .last_throttle
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        if self.held_back {
            self.last_held = now;
        }
        if let Some(rate) = self.rate {
            self.demand = self.demand.max(self.offered(now));
            let unused = now.saturating_duration_since(self.last_held);
            if unused >= RATE_RELEASE && calm >= RATE_RELEASE {
                self.rate = None;
                self.demand = 0.0;
                self.intervals.clear();
            } else if self.held_back && calm >= SECOND {
                // Additive, whatever the time since the last throttle: in a fleet a
                // pod may go long without one while its peers are cut, and growth
                // that sped up with time would take their share.
                self.refill(now);
                let step = RATE_ALPHA * self.growth(rate) * since.as_secs_f64().min(5.0);
                self.rate = Some(rate + step);
            }
        }
        self.held_back = false;
        if calm >= STRETCH_HOLD {
            self.stretch = (self.stretch / 1.25).max(1.0);
        }
    }
}

#[cfg(test)]
mod tests;
