use super::*;

/// A call of `sent` records of which `accepted` went through.
fn throttled_of(accepted: u32, sent: u32) -> Signal {
    Signal {
        sent,
        accepted,
        throttled_records: sent - accepted,
        throttled: true,
        latency: Duration::from_millis(5),
        ..Signal::default()
    }
}

/// Half the call throttled.
fn throttled(accepted: u32) -> Signal {
    throttled_of(accepted, accepted * 2 + 1)
}

fn clean(accepted: u32, in_flight_at_send: usize) -> Signal {
    Signal {
        sent: accepted,
        accepted,
        latency: Duration::from_millis(5),
        in_flight_at_send,
        ..Signal::default()
    }
}

#[test]
fn fixed_mode_never_adapts() {
    let t0 = Instant::now();
    let mut c = Control::new(false, 4, SECOND, t0);
    for i in 0..20 {
        c.observe(t0 + SECOND * i, throttled(10));
    }
    assert_eq!(c.in_flight_limit(), 4);
    assert_eq!(c.flush_interval(), SECOND);
    assert_eq!(c.rate(), None);
    assert_eq!(c.allow(t0 + SECOND * 30, 500), Allow::Now(usize::MAX));
}

#[test]
fn the_first_throttle_sets_the_rate_from_what_was_accepted() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    c.observe(t0, clean(400, 1));
    c.observe(t0 + Duration::from_millis(500), throttled(200));
    let want = 600.0 * RATE_BETA;
    assert!((c.rate().unwrap() - want).abs() < 1e-6, "{:?}", c.rate());
    assert!(c.flush_interval() > SECOND);
    // A second throttle within the same second is the same event.
    c.observe(t0 + Duration::from_millis(700), throttled(0));
    assert!((c.rate().unwrap() - want).abs() < 1e-6);
}

#[test]
fn a_limited_rate_spaces_calls_and_fills_them() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    c.observe(t0, throttled(100)); // rate 85/s
    let rate = c.rate().unwrap();
    // The bucket starts empty: a big queue waits for a full bucket. (The rate may
    // grow meanwhile, and the bucket with it: ask again when told.)
    let Allow::At(mut at) = c.allow(t0, 10_000) else {
        panic!("should wait")
    };
    let n = loop {
        match c.allow(at, 10_000) {
            Allow::Now(n) => break n,
            Allow::At(later) => {
                assert!(later > at && later - t0 < SECOND * 10, "{later:?}");
                at = later;
            }
        }
    };
    let bucket = c.rate().unwrap() * c.flush_interval().as_secs_f64();
    assert!(rate <= c.rate().unwrap());
    assert!((n as f64 - bucket.floor()).abs() <= 1.0, "{n} vs {bucket}");
    c.sent(n);
    assert!(matches!(c.allow(at, 10_000), Allow::At(_)));
    // A small queue goes as soon as the tokens cover it.
    let Allow::At(soon) = c.allow(at, 3) else {
        panic!()
    };
    assert!(soon - at <= Duration::from_secs_f64(3.0 / rate) + Duration::from_millis(1));
}

/// A model of `n` backlogged pods sharing a quota of `quota` records a second,
/// where the pods that ask last in a second (a random order each second) are
/// throttled. Returns, over the last 200 of 400 seconds: Jain's index of what
/// each pod got through, goodput as a share of the quota, and retry
/// amplification (records refused over records accepted).
fn model(n: usize, quota: f64, seed: u64) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let mut pods: Vec<Control> = (0..n).map(|_| Control::new(true, 4, SECOND, t0)).collect();
    // Unequal starts: pod i's first second got between 0.5 and 1.5 fair shares.
    for (i, p) in pods.iter_mut().enumerate() {
        let got = (quota / n as f64 * (0.5 + i as f64 / n as f64)) as u32;
        p.observe(t0, throttled(got));
    }
    let (mut accepted, mut refused) = (0.0, 0.0);
    let mut got_by_pod = vec![0.0f64; n];
    let mut rng = fastrand::Rng::with_seed(seed);
    for sec in 1..400u32 {
        let now = t0 + SECOND * sec;
        let mut wants: Vec<(usize, f64)> = pods
            .iter_mut()
            .enumerate()
            .map(|(i, p)| {
                let _ = p.allow(now, 1_000_000);
                // A pod that stopped listening sends all it has.
                (i, p.rate().unwrap_or(quota / n as f64 * 4.0))
            })
            .collect();
        rng.shuffle(&mut wants);
        let mut left = quota;
        for (i, want) in wants {
            let got = want.min(left);
            left -= got;
            if sec > 200 {
                got_by_pod[i] += got;
                accepted += got;
                refused += want - got;
            }
            let s = if got < want {
                throttled_of(got as u32, want as u32)
            } else {
                clean(got as u32, 1)
            };
            pods[i].observe(now, s);
            pods[i].held_back = true; // backlogged: the rate held records back
        }
    }
    let sum: f64 = got_by_pod.iter().sum();
    let sq: f64 = got_by_pod.iter().map(|r| r * r).sum();
    let jain = sum * sum / (n as f64 * sq);
    (jain, accepted / (quota * 199.0), refused / accepted)
}

/// Equal pods that start with unequal rates converge toward equal shares near
/// the quota, with few refused records: what makes a fleet fair and cheap.
/// The model predicted the fleet simulation's retry amplification (1.6 with an
/// earlier choice of α = 10, β = 0.85, where the simulation measured 1.59);
/// the constants were chosen with it.
#[test]
fn aimd_converges_to_fair_shares_near_the_quota() {
    for (n, quota) in [(10, 2_000.0), (50, 2_000.0), (50, 20_000.0)] {
        let (jain, goodput, amplification) = model(n, quota, 11);
        eprintln!("aimd model, {n} pods, quota {quota}/s: Jain {jain:.3}, goodput {goodput:.3}, amplification {amplification:.3}");
        assert!(jain > 0.9, "{n} pods, quota {quota}: Jain {jain}");
        assert!(goodput > 0.95, "{n} pods, quota {quota}: goodput {goodput}");
        assert!(
            amplification < 0.3,
            "{n} pods, quota {quota}: amplification {amplification}"
        );
    }
}

#[test]
fn the_flush_interval_stretches_at_most_four_times_and_returns() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    // Throttling that answers each cut: its share falls, but does not end.
    for i in 0..12 {
        let share = 0.9 * 0.7f64.powi(i);
        let accepted = (1000.0 * (1.0 - share)).round() as u32;
        c.observe(t0 + SECOND * i as u32, throttled_of(accepted, 1000));
        assert!(c.flush_interval() <= SECOND.mul_f64(MAX_STRETCH));
    }
    assert_eq!(c.flush_interval(), SECOND.mul_f64(MAX_STRETCH));
    let mut t = t0 + SECOND * 20;
    for _ in 0..60 {
        t += SECOND;
        let _ = c.allow(t, 0);
    }
    assert_eq!(c.flush_interval(), SECOND);
    // And after a quiet minute the rate limit is lifted.
    assert_eq!(c.rate(), None);
}

/// A stream that throttles a fifth of every call whatever the rate: eight cuts
/// change nothing, so the pod stops cutting instead of starving at the minimum.
#[test]
fn throttling_that_ignores_the_rate_does_not_starve_the_pod() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    let mut lowest = f64::MAX;
    for i in 0..30u32 {
        c.observe(t0 + SECOND * i, throttled_of(800, 1000));
        lowest = lowest.min(c.rate().unwrap_or(f64::MAX));
    }
    assert!(
        lowest >= 800.0 * RATE_BETA.powi(CUTS_TO_TELL as i32) - 1e-6,
        "rate fell to {lowest}"
    );
    assert_eq!(
        c.rate(),
        None,
        "still limited after the cuts changed nothing"
    );
    // And it listens again later.
    let later = t0 + SECOND * 30 + DEAF_FOR;
    c.observe(later, throttled_of(500, 1000));
    assert!(c.rate().is_some());
}

/// The first rate a pod sets when a call of `sent` records is throttled whole at
/// `throttled_at`, after batches of `(when, records)` arrived from the batch stage.
fn first_rate(t0: Instant, batches: &[(Instant, usize)], throttled_at: Instant, sent: u32) -> f64 {
    let mut c = Control::new(true, 4, SECOND, t0);
    for &(t, n) in batches {
        c.arrived(t, n);
    }
    c.observe(throttled_at, throttled_of(0, sent));
    c.rate().expect("a throttle sets the rate")
}

/// Pods that start together get what luck gives them in the first second; the
/// first rate is at least what the app offers, so equal pods start alike.
#[test]
fn the_first_rate_is_at_least_what_the_app_offers() {
    let t0 = Instant::now();
    // 60 records/s for 5 s; nothing got through in the last second.
    let batches: Vec<_> = (0..50u32).map(|i| (t0 + SECOND * i / 10, 6)).collect();
    let rate = first_rate(t0, &batches, t0 + SECOND * 5, 500);
    assert!((rate - 60.0 * RATE_BETA).abs() < 2.0, "{rate}");
}

/// A pod of a rollout is throttled a second or two after it starts: what it offered
/// is measured over the time it has run, not over five seconds it has not.
#[test]
fn a_young_pod_measures_its_offer_over_the_time_it_has_run() {
    let t0 = Instant::now();
    // 60 records/s for 1.5 s.
    let batches: Vec<_> = (0..15u32).map(|i| (t0 + SECOND * i / 10, 6)).collect();
    let rate = first_rate(t0, &batches, t0 + SECOND * 3 / 2, 90);
    assert!((rate - 60.0 * RATE_BETA).abs() < 2.0, "{rate}");
}

/// An overload begins: the app wrote 20 records/s for a minute, then 60. A pod
/// throttled two seconds into it starts from what the app offers now, not from an
/// average that still holds the quiet minute.
#[test]
fn the_first_rate_follows_what_the_app_offers_now() {
    let t0 = Instant::now();
    // Batches every 0.9 s: 18 records (20/s) for a minute, then 54 (60/s).
    let batches: Vec<_> = (1..=63u32)
        .map(|i| (t0 + SECOND * i * 9 / 10, if i <= 60 { 18 } else { 54 }))
        .collect();
    let rate = first_rate(t0, &batches, batches[62].0, 54);
    assert!((rate - 60.0 * RATE_BETA).abs() < 2.0, "{rate}");
}

/// Whole calls throttled (the request quota, or an outage's 503s) stretch the
/// flush interval and halve the calls in flight, but leave the send rate alone:
/// when the stream comes back, the pod is not left crawling.
#[test]
fn whole_call_throttles_do_not_cut_the_rate() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    for i in 0..30u32 {
        c.observe(
            t0 + SECOND * i,
            Signal {
                throttled: true,
                latency: Duration::from_millis(5),
                ..Signal::default()
            },
        );
    }
    assert_eq!(c.rate(), None);
    assert_eq!(c.flush_interval(), SECOND.mul_f64(MAX_STRETCH));
    assert_eq!(c.in_flight_limit(), 1);
}

#[test]
fn the_drain_lifts_the_rate_and_the_stretch() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    c.observe(t0, throttled(100));
    assert!(c.rate().is_some() && c.flush_interval() > SECOND);
    c.drain();
    assert_eq!(c.rate(), None);
    assert_eq!(c.flush_interval(), SECOND);
    assert_eq!(c.allow(t0, 10_000), Allow::Now(usize::MAX));
}

/// A pod with a backlog grows its rate by up to [`RATE_ALPHA`] a second once not
/// throttled, however long ago the last throttle was; its limit is lifted only
/// after a minute in which it held nothing back.
#[test]
fn a_held_rate_grows_additively_and_an_unused_one_is_lifted() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 4, SECOND, t0);
    c.observe(t0, throttled(1000));
    let start = c.rate().unwrap();
    let mut t = t0;
    for _ in 0..120 {
        t += SECOND;
        if let Allow::Now(n) = c.allow(t, 1_000_000) {
            c.sent(n);
        }
    }
    // Its demand (the 1,000 records accepted in the first second) puts the first
    // rate at weight 1; above it the weight falls, to 0.6 at 900 records/s.
    let grown = c.rate().unwrap() - start;
    assert!(
        (RATE_ALPHA * 0.6 * 100.0..=RATE_ALPHA * 120.0).contains(&grown),
        "grew {grown} in 120 s"
    );
    for _ in 0..61 {
        t += SECOND;
        let _ = c.allow(t, 0);
    }
    assert_eq!(c.rate(), None);
}

#[test]
fn the_in_flight_limit_grows_when_used_and_halves_on_trouble() {
    let t0 = Instant::now();
    let mut c = Control::new(true, 8, SECOND, t0);
    assert_eq!(c.in_flight_limit(), 1);
    // Calls that did not use every slot say nothing about the limit.
    for _ in 0..50 {
        c.observe(t0, clean(500, 0));
    }
    assert_eq!(c.in_flight_limit(), 1);
    let mut t = t0;
    for _ in 0..100 {
        let l = c.in_flight_limit();
        c.observe(t, clean(500, l));
        t += Duration::from_millis(10);
    }
    assert_eq!(c.in_flight_limit(), 8);
    c.observe(
        t,
        Signal {
            failed: true,
            ..clean(0, 8)
        },
    );
    assert_eq!(c.in_flight_limit(), 4);
    // A call far slower than the baseline is congestion too.
    t += SECOND * 2;
    c.observe(
        t,
        Signal {
            latency: Duration::from_secs(2),
            ..clean(500, 4)
        },
    );
    assert_eq!(c.in_flight_limit(), 2);
}

/// The fleet as the fake Firehose and the pods make it, to the 10 ms: the quota over
/// fixed one-second windows, first come first served; each pod's lines written every
/// 50 ms at its offered rate (as the fleet driver writes), read every 250 ms, cut
/// into batches at the deadlines `batch::due_at` draws, sent through [`Control`] as
/// `queue.rs` sends them: up to its in-flight limit at once, each call taking its own
/// latency (so answers come back out of order, and a call reaches the quota's second
/// half a latency after it left), a throttled call holding its slot for the adaptive
/// backoff (up to 100 ms) before its records queue again. What decides a pod's share
/// here is when in the second its calls arrive, which the other model leaves out.
///
/// The tail reads a quiet app once per batch, just before it is due
/// (`tail/cadence.rs`), not every 250 ms; while lines keep coming both give the same
/// cut times, since a batch is due a draw after the last cut whenever it opened.
struct WindowFleet {
    quota: f64,
    /// Offered records/s per pod: `(until, rate)` phases.
    phases: Vec<(f64, f64)>,
    /// The first `heavy` pods offer ten times as much; Jain counts the others.
    heavy: usize,
    starts: Vec<f64>,
    /// Jain, goodput and amplification are measured over these seconds.
    measure: (f64, f64),
    /// A call's latency in seconds: `base` plus a uniform draw in `0..jitter`.
    latency: (f64, f64),
    /// `--max-in-flight`.
    max_in_flight: usize,
}

/// How often the model reads (the tail's cadence with no batch open).
const READ_EVERY: f64 = 0.25;
/// The model's clock tick, seconds.
const TICK: f64 = 0.01;

/// One call under way: when it reaches Firehose and when its answer is back.
struct ModelCall {
    sent_at: f64,
    arrives: f64,
    answered: f64,
    records: usize,
    in_flight_at_send: usize,
    /// Records the quota took, once the call has arrived.
    took: Option<usize>,
    /// When the call gives up its slot, once answered.
    free_at: Option<f64>,
}

#[derive(Default)]
struct ModelPod {
    arrived: f64,
    batch: usize,
    deadline: f64,
    queued: usize,
    got: f64,
    pending: usize,
    last_read: f64,
    last_flush: Option<f64>,
    calls: Vec<ModelCall>,
}

/// Jain's index over the pods that are not heavy, goodput as a share of the quota,
/// retry amplification (refused over accepted), what each of those pods got; and
/// (calls, calls sent while another of the same pod was under way, answers seen
/// before that of a call sent earlier).
struct Figures {
    jain: f64,
    goodput: f64,
    amplification: f64,
    got: Vec<f64>,
    crossed: (u64, u64, u64),
}

/// What the fleet measured: records accepted and refused in all, and how often the
/// orderings the world allows happened: calls sent while another of the same pod was
/// under way, answers seen before that of a call sent earlier.
#[derive(Default)]
struct Measured {
    accepted: f64,
    refused: f64,
    calls: u64,
    overlapped: u64,
    reordered: u64,
}

impl WindowFleet {
    fn offered(&self, t: f64) -> f64 {
        self.phases
            .iter()
            .find(|(until, _)| t < *until)
            .map_or(0.0, |(_, r)| *r)
    }

    /// What the fleet got over `measure`.
    fn run(&self, seed: u64) -> Figures {
        fastrand::seed(seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = self.starts.len();
        let t0 = Instant::now();
        let mut control: Vec<Control> = (0..n)
            .map(|_| Control::new(true, self.max_in_flight, SECOND, t0))
            .collect();
        let mut pods: Vec<ModelPod> = (0..n).map(|_| ModelPod::default()).collect();
        let mut m = Measured::default();
        let (mut window, mut left) = (u64::MAX, 0.0);
        let mut order: Vec<usize> = (0..n).collect();
        let end = self.phases.last().map_or(0.0, |p| p.0);
        let mut tick = 0u64;
        loop {
            let t = tick as f64 * TICK;
            if t >= end {
                break;
            }
            tick += 1;
            if t as u64 != window {
                window = t as u64;
                left = self.quota;
            }
            rng.shuffle(&mut order);
            for &i in &order {
                if t < self.starts[i] {
                    continue;
                }
                let weight = if i < self.heavy { 10.0 } else { 1.0 };
                let (p, c) = (&mut pods[i], &mut control[i]);
                self.write_and_cut(p, c, t0, t, tick, weight);
                let measured = t >= self.measure.0 && t < self.measure.1;
                self.calls_arrive(p, t, measured, &mut left, &mut m);
                self.calls_end(p, c, t0, t, &mut rng, &mut m);
                self.calls_start(p, c, t0, t, &mut rng, &mut m);
            }
        }
        let got: Vec<f64> = pods[self.heavy..].iter().map(|p| p.got).collect();
        let sum: f64 = got.iter().sum();
        let sq: f64 = got.iter().map(|r| r * r).sum();
        let seconds = self.measure.1 - self.measure.0;
        Figures {
            jain: sum * sum / (got.len() as f64 * sq),
            goodput: m.accepted / (self.quota * seconds),
            amplification: m.refused / m.accepted.max(1.0),
            got,
            crossed: (m.calls, m.overlapped, m.reordered),
        }
    }

    /// The app writes; the tail reads; the batch stage cuts and hands over.
    fn write_and_cut(
        &self,
        p: &mut ModelPod,
        c: &mut Control,
        t0: Instant,
        t: f64,
        tick: u64,
        weight: f64,
    ) {
        let at = |t: f64| t0 + Duration::from_secs_f64(t);
        p.arrived += weight * self.offered(t) * TICK;
        // The driver writes every 50 ms; the tail reads at most every READ_EVERY.
        if tick % 5 == 1 {
            let lines = p.arrived.floor();
            p.arrived -= lines;
            p.pending += lines as usize;
        }
        let lines = if t - p.last_read < READ_EVERY {
            0
        } else {
            std::mem::take(&mut p.pending)
        };
        if lines > 0 {
            p.last_read = t;
        }
        if p.batch == 0 && lines > 0 {
            let jitter = crate::flush_clock::jittered(c.flush_interval());
            let due = crate::flush_clock::due_at(at(t), p.last_flush.map(at), jitter);
            p.deadline = (due - t0).as_secs_f64();
        }
        p.batch += lines;
        if p.batch > 0 && (t >= p.deadline || p.batch >= 500) {
            c.arrived(at(t), p.batch);
            p.queued += p.batch;
            p.batch = 0;
            p.last_flush = Some(t);
        }
    }

    /// Calls that reach Firehose now meet what is left of the quota's second.
    fn calls_arrive(
        &self,
        p: &mut ModelPod,
        t: f64,
        measured: bool,
        left: &mut f64,
        m: &mut Measured,
    ) {
        for call in p
            .calls
            .iter_mut()
            .filter(|c| c.took.is_none() && c.arrives <= t)
        {
            let took = (call.records as f64).min(left.floor());
            *left -= took;
            call.took = Some(took as usize);
            if measured {
                p.got += took;
                m.accepted += took;
                m.refused += call.records as f64 - took;
            }
        }
    }

    /// Answers back (in whatever order their latencies give): the controller learns,
    /// throttled records queue again, once the call's backoff is over.
    fn calls_end(
        &self,
        p: &mut ModelPod,
        c: &mut Control,
        t0: Instant,
        t: f64,
        rng: &mut fastrand::Rng,
        m: &mut Measured,
    ) {
        let mut k = 0;
        while k < p.calls.len() {
            let call = &mut p.calls[k];
            if call.answered > t {
                k += 1;
                continue;
            }
            let took = call.took.expect("answered after it arrived");
            // `Backoff::default().hold` on a throttled call: it keeps its slot.
            let backoff = if took < call.records {
                0.1 * rng.f64()
            } else {
                0.0
            };
            let free_at = *call.free_at.get_or_insert(call.answered + backoff);
            if free_at > t {
                k += 1;
                continue;
            }
            let call = p.calls.swap_remove(k);
            m.reordered += u64::from(p.calls.iter().any(|o| o.sent_at < call.sent_at));
            let latency = Duration::from_secs_f64(call.answered - call.sent_at);
            let s = if took < call.records {
                throttled_of(took as u32, call.records as u32)
            } else {
                clean(took as u32, call.in_flight_at_send)
            };
            p.queued += call.records - took;
            c.observe(t0 + Duration::from_secs_f64(t), Signal { latency, ..s });
        }
    }

    /// New calls, up to the in-flight limit, as the controller allows.
    fn calls_start(
        &self,
        p: &mut ModelPod,
        c: &mut Control,
        t0: Instant,
        t: f64,
        rng: &mut fastrand::Rng,
        m: &mut Measured,
    ) {
        while p.queued > 0 && p.calls.len() < c.in_flight_limit() {
            let Allow::Now(k) = c.allow(t0 + Duration::from_secs_f64(t), p.queued) else {
                break;
            };
            let records = k.min(p.queued).min(500);
            c.sent(records);
            p.queued -= records;
            m.calls += 1;
            m.overlapped += u64::from(!p.calls.is_empty());
            let latency = self.latency.0 + self.latency.1 * rng.f64();
            p.calls.push(ModelCall {
                sent_at: t,
                arrives: t + latency / 2.0,
                answered: t + latency,
                records,
                in_flight_at_send: p.calls.len() + 1,
                took: None,
                free_at: None,
            });
        }
    }
}

const FLEET_PODS: usize = 50;
/// Call latencies (base, uniform jitter, seconds), the world's two hostile ends.
/// Steady (20 to 60 ms): a pod's calls keep their moment in the quota's second, the
/// phase that made a third of a rollout's pods never throttled (see below). Jittery
/// (30 ms to 1.23 s): under a send rate a pod makes about a call a second, so a tail
/// this long is what makes its calls overlap (a fifth of them) and their answers
/// cross (one in twenty); with calls of at most 0.5 s, one in 600 overlapped.
const LATENCIES: [(&str, (f64, f64)); 2] = [("steady", (0.02, 0.04)), ("jittery", (0.03, 1.2))];
const FLEET_QUOTA: f64 = 2_000.0;

/// The fleet simulation's overload: pods started over 5 s, 0.5× the quota for 10 s,
/// 1.5× for 60 s (measured), then 0.5× again.
fn overload_fleet() -> WindowFleet {
    let (n, share) = (FLEET_PODS, FLEET_QUOTA / FLEET_PODS as f64);
    WindowFleet {
        quota: FLEET_QUOTA,
        phases: vec![
            (10.0, 0.5 * share),
            (70.0, 1.5 * share),
            (100.0, 0.5 * share),
        ],
        starts: (0..n).map(|i| 5.0 * i as f64 / n as f64).collect(),
        heavy: 0,
        measure: (10.0, 70.0),
        latency: LATENCIES[1].1,
        max_in_flight: 4,
    }
}

/// The fleet simulation's unequal pods: as the overload, but a tenth of the pods
/// write ten times as much as the others.
fn unequal_fleet() -> WindowFleet {
    let heavy = FLEET_PODS / 10;
    let light = FLEET_QUOTA / (FLEET_PODS + 9 * heavy) as f64;
    WindowFleet {
        phases: vec![
            (10.0, 0.5 * light),
            (70.0, 1.5 * light),
            (100.0, 0.5 * light),
        ],
        heavy,
        ..overload_fleet()
    }
}

/// The fleet simulation's rollout: every pod started within 0.1 s, 1.5× the quota
/// from the start for 30 s (measured), then 0.5×.
fn rollout_fleet() -> WindowFleet {
    let (n, share) = (FLEET_PODS, FLEET_QUOTA / FLEET_PODS as f64);
    WindowFleet {
        quota: FLEET_QUOTA,
        phases: vec![(30.0, 1.5 * share), (60.0, 0.5 * share)],
        starts: (0..n).map(|i| 0.1 * i as f64 / n as f64).collect(),
        heavy: 0,
        measure: (0.0, 30.0),
        latency: LATENCIES[1].1,
        max_in_flight: 4,
    }
}

/// The fleet simulation's three scenarios (50 pods, 2,000 records/s), phases and
/// all: every pod gets its share, not the ones whose calls happen to arrive early
/// in the quota's second.
#[test]
fn pods_share_a_windowed_quota_fairly_whatever_their_phase() {
    type Scenario = (&'static str, fn() -> WindowFleet);
    let fleets: [Scenario; 3] = [
        ("overload", overload_fleet),
        ("rollout", rollout_fleet),
        ("unequal", unequal_fleet),
    ];
    for (name, fleet) in fleets {
        for (regime, latency) in LATENCIES {
            let fleet = WindowFleet { latency, ..fleet() };
            for seed in [1, 2, 3] {
                let f = fleet.run(seed);
                let (jain, goodput, amplification) = (f.jain, f.goodput, f.amplification);
                let mut got = f.got;
                got.sort_by(f64::total_cmp);
                eprintln!(
                    "window model {name} {regime} seed {seed}: Jain {jain:.3}, goodput \
                     {goodput:.3}, amplification {amplification:.3}, least {:.0}, most {:.0}, \
                     (calls, overlapped, crossed) {:?}",
                    got[0],
                    got[got.len() - 1],
                    f.crossed
                );
                // With deadlines drawn from the last tenth of the interval, the rollout
                // gave 0.80-0.87 here when calls were answered at once, one at a time,
                // 0.86-0.91 with steady latency and several in flight (0.96 with
                // jittery latency, which hides it), and 0.77-0.85 in the fleet
                // simulation: a third of the pods, never throttled, took all they offered.
                assert!(jain > 0.9, "{name}, {regime}, seed {seed}: Jain {jain}");
                assert!(
                    goodput > 0.93,
                    "{name}, {regime}, seed {seed}: goodput {goodput}"
                );
                assert!(
                    amplification < 0.3,
                    "{name}, {regime}, seed {seed}: amplification {amplification}"
                );
                let (_, overlapped, crossed) = f.crossed;
                assert!(
                    regime == "steady" || overlapped > 0 && crossed > 0,
                    "{name}: the jittery model never overlapped or crossed calls: {:?}",
                    f.crossed
                );
            }
        }
    }
}

/// Which pods the quota's second throttles is luck, not their rate, so with the same
/// increase for every pod the cuts of an unlucky pod added up: over the minute of
/// overload equal pods got Jain 0.948-0.975 here (seeds 1-5; the fleet simulation
/// measured 0.961-0.967, against 0.962-0.973 for fixed pods). Weighting the
/// increase by how far below its demand a pod is held evens that luck out: 0.983-0.987.
/// With up to four calls in flight: 0.979-0.989 at steady latency, 0.982-0.988 at
/// jittery latency (plain AIMD there: 0.957-0.969).
#[test]
fn luck_in_the_quota_second_evens_out_over_an_overload() {
    for (regime, latency) in LATENCIES {
        let fleet = WindowFleet {
            latency,
            ..overload_fleet()
        };
        for seed in 1..=5 {
            let Figures {
                jain,
                goodput,
                amplification,
                ..
            } = fleet.run(seed);
            eprintln!(
                "window model overload {regime} seed {seed}: Jain {jain:.3}, goodput \
                 {goodput:.3}, amplification {amplification:.3}"
            );
            assert!(jain > 0.978, "{regime}, seed {seed}: Jain {jain}");
            assert!(goodput > 0.98, "{regime}, seed {seed}: goodput {goodput}");
            assert!(
                amplification < 0.3,
                "{regime}, seed {seed}: amplification {amplification}"
            );
        }
    }
}

/// A pod that writes 60 records/s: batches every 100 ms for 5 s from `t0`, then a
/// call throttled whole, which sets its rate to 0.7 × 60.
fn limited_at_60_per_second(t0: Instant) -> (Control, Instant) {
    let mut c = Control::new(true, 4, SECOND, t0);
    for i in 0..50u32 {
        c.arrived(t0 + SECOND * i / 10, 6);
    }
    let t = t0 + SECOND * 5;
    c.observe(t, throttled_of(0, 60));
    (c, t)
}

/// The rate's next step, one second after `t`, for a pod with a backlog.
fn one_step(c: &mut Control, t: Instant) -> f64 {
    let before = c.rate().expect("limited");
    c.held_back = true;
    c.last_step = t;
    c.step(t + SECOND);
    c.rate().expect("limited") - before
}

/// Two pods whose apps write alike: the one that luck cut twice more grows back
/// twice as fast as the one at its first rate; a pod above its first rate grows
/// slower.
#[test]
fn a_pod_cut_below_its_demand_grows_faster() {
    let t0 = Instant::now();
    let (mut lucky, t) = limited_at_60_per_second(t0);
    let (mut unlucky, _) = limited_at_60_per_second(t0);
    for k in 1..=2u32 {
        unlucky.observe(t + SECOND * k, throttled_of(0, 20));
    }
    let t = t + SECOND * 3;
    // 42 records/s against 20.6 = 42 × 0.7²: weights 1 and 4.2, bounded to 2.
    assert!((one_step(&mut lucky, t) - RATE_ALPHA).abs() < 1e-9);
    assert!((one_step(&mut unlucky, t) - RATE_ALPHA * GROWTH_MAX).abs() < 1e-9);
    lucky.rate = Some(63.0);
    let above = one_step(&mut lucky, t + SECOND);
    assert!(
        (above - RATE_ALPHA * (42.0f64 / 63.0).powi(2)).abs() < 1e-9,
        "{above}"
    );
}

/// Once the ship stage is backed up, batches come whenever a call frees room (full
/// ones, in bursts): they say how fast this pod sends, not what its app writes, and
/// must not raise its demand, which would speed its growth past its peers'.
#[test]
fn batches_that_waited_for_room_are_not_demand() {
    for backed_up in [true, false] {
        let (mut c, mut t) = limited_at_60_per_second(Instant::now());
        for _ in 0..6 {
            t += SECOND;
            if backed_up {
                c.backed_up(t - SECOND / 10);
            }
            c.arrived(t, 500);
            let _ = c.allow(t, 500);
        }
        if backed_up {
            assert!((c.demand - 60.0).abs() < 3.0, "demand {}", c.demand);
        } else {
            assert!(c.demand > 200.0, "demand {}", c.demand);
        }
    }
}
