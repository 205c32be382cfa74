//! A fleet of real firetail processes sharing one stream quota (docs/fleet.md): the
//! scenarios of the `fleet` example and of the short test in `tests/it/fleet.rs`.
//!
//! The fake Firehose runs in quota mode with a stream family: pod `i` ships to
//! `fleet-pod-i`, so the fake's per-source counters tell pods apart while they all
//! compete for the one quota. The driver thread appends numbered JSON lines to each
//! pod's file at the offered rate (a multiple of the record quota that changes by
//! phase), samples every second how far each pod is behind, and at the end stops the
//! writers, waits for delivery, sends SIGTERM to every pod and checks each exit and
//! drain report, then counts every written line in what the fake accepted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::fake_firehose::{FakeConfig, FakeFirehose, Quota, QuotaCounts};
use super::fleet_figures::{jain, Tallier, Tally, WriteHistory};
use super::fleet_pod::{stop_all, GaugeSample, Pod, Scraper};

/// The stream family: pod `i` ships to `fleet-pod-i`.
pub const STREAM: &str = "fleet";
/// Offered load as a multiple of the record quota, while overloaded and otherwise.
pub const OVERLOAD: f64 = 1.5;
pub const RELIEF: f64 = 0.5;
/// A pod is caught up when its oldest line not yet accepted is at most this old: a
/// flush interval (1 s) plus a call and a sampling second.
pub const CAUGHT_UP_LAG: f64 = 3.0;
const TICK: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Pods started over a few seconds; 0.5× load, then 1.5× for the overload, then 0.5×.
    Overload,
    /// Every pod started within one second, at 1.5× from the start, then 0.5×.
    Rollout,
    /// As overload, but a tenth of the pods write ten times what the others write.
    Unequal,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Overload, Scenario::Rollout, Scenario::Unequal];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Overload => "overload",
            Scenario::Rollout => "rollout",
            Scenario::Unequal => "unequal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fixed,
    Adaptive,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Fixed, Mode::Adaptive];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Fixed => "fixed",
            Mode::Adaptive => "adaptive",
        }
    }

    /// The flags that select the mode: the one place that says how.
    pub fn args(self) -> Vec<String> {
        match self {
            Mode::Fixed => vec!["--adaptive=false".into()],
            Mode::Adaptive => vec!["--adaptive=true".into()],
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub mode: Mode,
    pub pods: usize,
    pub quota: Quota,
    /// 0.5× before the overload (none in a rollout, which overloads from the start).
    pub warmup: Duration,
    pub overload: Duration,
    /// 0.5× after catching up, to measure the calls a quiet fleet makes.
    pub settle: Duration,
    /// The longest the driver waits for the fleet to catch up after the overload.
    pub catch_up_limit: Duration,
    pub line_bytes: usize,
    /// The firetail binary.
    pub binary: PathBuf,
    /// Where the pods' files go (one directory per pod is made inside).
    pub dir: PathBuf,
    /// Flags for every pod beyond the driver's own (e.g. `--aggregate`).
    pub extra_args: Vec<String>,
}

impl Plan {
    /// Pods that write ten times the others' rate.
    pub fn heavy_pods(&self) -> usize {
        match self.scenario {
            Scenario::Unequal => (self.pods / 10).max(1),
            _ => 0,
        }
    }

    fn weights(&self) -> Vec<f64> {
        (0..self.pods)
            .map(|i| if i < self.heavy_pods() { 10.0 } else { 1.0 })
            .collect()
    }

    fn overload_start(&self) -> f64 {
        match self.scenario {
            Scenario::Rollout => 0.0,
            _ => self.warmup.as_secs_f64(),
        }
    }

    fn overload_end(&self) -> f64 {
        self.overload_start() + self.overload.as_secs_f64()
    }

    /// When pod `i` starts: all within the first 100 ms in a rollout, else spread
    /// over the first half of the warm-up (at most 5 s).
    fn spawn_at(&self, i: usize) -> f64 {
        let spread = match self.scenario {
            Scenario::Rollout => 0.1,
            _ => (self.warmup.as_secs_f64() / 2.0).min(5.0),
        };
        spread * i as f64 / self.pods as f64
    }
}

/// One second of the fake's quota, on the driver's clock.
#[derive(Clone, Copy, Debug)]
pub struct Second {
    pub t: f64,
    pub counts: QuotaCounts,
}

/// One sample of the fleet's lag.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: f64,
    pub max_lag_seconds: f64,
    pub max_lag_lines: u64,
}

/// The figures the issue asks for.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Accepted records per second while overloaded, over the record quota.
    pub goodput: f64,
    /// Rejected records (per record or with their call) over accepted records.
    pub amplification: f64,
    /// Jain's index of accepted records per equal pod while overloaded.
    pub jain: f64,
    pub max_lag_seconds: f64,
    pub max_lag_lines: u64,
    /// Seconds from the end of the overload until every pod was caught up.
    pub catch_up_seconds: Option<f64>,
    /// PutRecordBatch calls per pod per second at 0.5× once caught up.
    pub requests_per_pod_second: f64,
    /// The pods' mean effective in-flight limit and flush interval (s) while
    /// overloaded, when exported.
    pub overload_gauges: Option<(f64, f64)>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Run {
    pub plan: Plan,
    pub tally: Tally,
    pub exit_codes: Vec<Option<i32>>,
    /// Everything that went wrong beyond the figures: bad exits, bad drain reports,
    /// ERROR logs, lines not accepted in time. Empty for a clean run.
    pub problems: Vec<String>,
    pub figures: Figures,
    pub seconds: Vec<Second>,
    pub samples: Vec<Sample>,
    /// The pods' mean effective in-flight limit and flush interval, each second (empty
    /// when the binary does not export them).
    pub gauges: Vec<GaugeSample>,
    /// When the overload began and ended, on the driver's clock.
    pub overload: (f64, f64),
    pub wall: Duration,
}

/// Runs one scenario in one mode, start to finish.
pub fn run(plan: &Plan) -> Run {
    let fake = FakeFirehose::start(FakeConfig {
        stream_name: STREAM.to_owned(),
        quota: Some(plan.quota),
        stream_family: true,
        ..FakeConfig::default()
    });
    let fake_epoch = Instant::now();
    let mut pods: Vec<Pod> = (0..plan.pods).map(|i| Pod::prepare(plan, i)).collect();
    let t0 = Instant::now();
    let scraper = Scraper::start(&pods, t0);
    let mut driver = Driver::new(plan, &fake);
    driver.drive(&mut pods, t0);
    let gauges = scraper.finish();

    let mut problems = driver.problems.clone();
    let written: Vec<u64> = pods.iter().map(|p| p.written).collect();
    let total: u64 = written.iter().sum();
    if !fake.wait_until(Duration::from_secs(120), |c| c.lines_accepted >= total) {
        problems.push(format!(
            "The fake had accepted {} of {total} lines 120 s after the writers stopped.",
            fake.lines_accepted()
        ));
    }
    let exit_codes = stop_all(&mut pods, &mut problems);
    let mut tallier = Tallier::new(&written);
    fake.for_each_accepted_line(|l| tallier.see(l));
    let tally = tallier.finish();

    let offset = t0.duration_since(fake_epoch).as_secs_f64();
    let seconds: Vec<Second> = fake
        .quota_series()
        .into_iter()
        .enumerate()
        .map(|(w, counts)| Second {
            t: w as f64 - offset,
            counts,
        })
        .filter(|s| s.t > -1.0)
        .collect();
    let mut figures = driver.figures(&seconds, &fake.quota_sources());
    let overloaded: Vec<&GaugeSample> = gauges
        .iter()
        .filter(|g| g.t >= plan.overload_start() && g.t <= plan.overload_end())
        .collect();
    if !overloaded.is_empty() {
        let n = overloaded.len() as f64;
        figures.overload_gauges = Some((
            overloaded.iter().map(|g| g.in_flight_limit).sum::<f64>() / n,
            overloaded
                .iter()
                .map(|g| g.flush_interval_seconds)
                .sum::<f64>()
                / n,
        ));
    }
    Run {
        plan: plan.clone(),
        tally,
        exit_codes,
        problems,
        figures,
        seconds,
        samples: driver.samples,
        gauges,
        overload: (plan.overload_start(), plan.overload_end()),
        wall: t0.elapsed(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Warmup,
    Overload,
    CatchUp,
    Settle,
    Done,
}

/// The driver's loop state: phases, write targets, samples and snapshots.
struct Driver<'a> {
    plan: &'a Plan,
    fake: &'a FakeFirehose,
    phase: Phase,
    /// Lines per second each pod writes at 1× the record quota.
    rates: Vec<f64>,
    targets: Vec<f64>,
    history: WriteHistory,
    samples: Vec<Sample>,
    /// Per-source counts when the overload began and ended, and when settling began
    /// and ended (with the time).
    at_overload: Option<BTreeMap<String, QuotaCounts>>,
    after_overload: Option<BTreeMap<String, QuotaCounts>>,
    at_settle: Option<(f64, BTreeMap<String, QuotaCounts>)>,
    after_settle: Option<(f64, BTreeMap<String, QuotaCounts>)>,
    caught_up_at: Option<f64>,
    problems: Vec<String>,
}

impl<'a> Driver<'a> {
    fn new(plan: &'a Plan, fake: &'a FakeFirehose) -> Driver<'a> {
        let weights = plan.weights();
        let total: f64 = weights.iter().sum();
        let quota = plan.quota.records_per_second as f64;
        Driver {
            plan,
            fake,
            phase: Phase::Warmup,
            rates: weights.iter().map(|w| quota * w / total).collect(),
            targets: vec![0.0; plan.pods],
            history: WriteHistory::default(),
            samples: Vec::new(),
            at_overload: None,
            after_overload: None,
            at_settle: None,
            after_settle: None,
            caught_up_at: None,
            problems: Vec::new(),
        }
    }

    fn drive(&mut self, pods: &mut [Pod], t0: Instant) {
        let (mut last, mut next_sample) = (0.0, 1.0);
        while self.phase != Phase::Done {
            let now = t0.elapsed().as_secs_f64();
            for (i, pod) in pods.iter_mut().enumerate() {
                if pod.child.is_none() && now >= self.plan.spawn_at(i) {
                    pod.spawn(self.plan, &self.fake.endpoint());
                }
            }
            self.advance(now);
            let load = match self.phase {
                Phase::Overload => OVERLOAD,
                _ => RELIEF,
            };
            for (i, pod) in pods.iter_mut().enumerate() {
                self.targets[i] += self.rates[i] * load * (now - last);
                pod.write_up_to(self.targets[i] as u64, self.plan.line_bytes);
            }
            last = now;
            let written: Vec<u64> = pods.iter().map(|p| p.written).collect();
            self.history.push(now, &written);
            if now >= next_sample {
                self.sample(now, &written);
                next_sample += 1.0;
            }
            std::thread::sleep(TICK.saturating_sub(t0.elapsed() - Duration::from_secs_f64(now)));
        }
    }

    /// Moves through the phases on the clock (and, after the overload, on the lag).
    fn advance(&mut self, now: f64) {
        let plan = self.plan;
        if self.phase == Phase::Warmup && now >= plan.overload_start() {
            self.phase = Phase::Overload;
            self.at_overload = Some(self.fake.quota_sources());
        }
        if self.phase == Phase::Overload && now >= plan.overload_end() {
            self.phase = Phase::CatchUp;
            self.after_overload = Some(self.fake.quota_sources());
        }
        let caught_up_by_limit = now >= plan.overload_end() + plan.catch_up_limit.as_secs_f64();
        if self.phase == Phase::CatchUp && (self.caught_up_at.is_some() || caught_up_by_limit) {
            // Not catching up is a figure (the table says so), not a loss: the run
            // goes on and every line is still checked.
            self.phase = Phase::Settle;
            self.at_settle = Some((now, self.fake.quota_sources()));
        }
        if let (Phase::Settle, Some((since, _))) = (self.phase, &self.at_settle) {
            if now - since >= plan.settle.as_secs_f64() {
                self.phase = Phase::Done;
                self.after_settle = Some((now, self.fake.quota_sources()));
            }
        }
    }

    fn sample(&mut self, now: f64, written: &[u64]) {
        let sources = self.fake.quota_sources();
        let (mut max_lag_seconds, mut max_lag_lines) = (0.0f64, 0u64);
        for (i, &written) in written.iter().enumerate() {
            let accepted = accepted_lines(&sources, i);
            max_lag_seconds = max_lag_seconds.max(self.history.lag_seconds(i, accepted, now));
            max_lag_lines = max_lag_lines.max(written.saturating_sub(accepted));
        }
        self.samples.push(Sample {
            t: now,
            max_lag_seconds,
            max_lag_lines,
        });
        if self.phase == Phase::CatchUp
            && self.caught_up_at.is_none()
            && max_lag_seconds <= CAUGHT_UP_LAG
        {
            self.caught_up_at = Some(now);
        }
    }

    fn figures(&self, seconds: &[Second], sources: &BTreeMap<String, QuotaCounts>) -> Figures {
        let plan = self.plan;
        let quota = plan.quota.records_per_second as f64;
        let overloaded: Vec<f64> = seconds
            .iter()
            .filter(|s| s.t >= plan.overload_start() && s.t + 1.0 <= plan.overload_end())
            .map(|s| s.counts.records_accepted as f64)
            .collect();
        let goodput = overloaded.iter().sum::<f64>() / overloaded.len().max(1) as f64 / quota;
        let total = sources.values().fold(QuotaCounts::default(), |mut sum, c| {
            sum.add(c);
            sum
        });
        let empty = BTreeMap::new();
        let before = self.at_overload.as_ref().unwrap_or(&empty);
        let after = self.after_overload.as_ref().unwrap_or(sources);
        let shares: Vec<f64> = (plan.heavy_pods()..plan.pods)
            .map(|i| (accepted(after, i) - accepted(before, i)) as f64)
            .collect();
        let requests_per_pod_second = match (&self.at_settle, &self.after_settle) {
            (Some((t1, before)), Some((t2, after))) => {
                let calls = |m: &BTreeMap<String, QuotaCounts>| -> u64 {
                    m.values()
                        .map(|c| c.calls_admitted + c.calls_rejected)
                        .sum()
                };
                (calls(after) - calls(before)) as f64 / plan.pods as f64 / (t2 - t1)
            }
            _ => f64::NAN,
        };
        Figures {
            goodput,
            amplification: total.records_rejected() as f64 / total.records_accepted.max(1) as f64,
            jain: jain(&shares),
            max_lag_seconds: self
                .samples
                .iter()
                .map(|s| s.max_lag_seconds)
                .fold(0.0, f64::max),
            max_lag_lines: self
                .samples
                .iter()
                .map(|s| s.max_lag_lines)
                .max()
                .unwrap_or(0),
            catch_up_seconds: self.caught_up_at.map(|t| t - plan.overload_end()),
            requests_per_pod_second,
            overload_gauges: None,
        }
    }
}

pub(crate) fn stream(i: usize) -> String {
    format!("{STREAM}-pod-{i}")
}

fn accepted(sources: &BTreeMap<String, QuotaCounts>, i: usize) -> u64 {
    sources.get(&stream(i)).map_or(0, |c| c.records_accepted)
}

/// Lines of pod `i` accepted: its records unless it aggregates.
fn accepted_lines(sources: &BTreeMap<String, QuotaCounts>, i: usize) -> u64 {
    sources.get(&stream(i)).map_or(0, |c| c.lines_accepted)
}
