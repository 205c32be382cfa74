//! End-to-end latency in scenario 2: a line's write to the sink's acceptance.
//!
//! No clock goes into the lines (they stay the same bytes for every agent): each line
//! carries its `"seq"`, the writer writes `per_tick` lines per tick in order and notes
//! when each tick's write returned, and the fake keeps the records with the time it had
//! read each call (`CallLog::received`; it decides at once, with no injected latency).
//! The records it kept are in the order of the call log (both are appended under one
//! lock), so each line is matched to the call that accepted it. A line accepted twice
//! counts once, at its first acceptance. Fluent Bit re-encodes the JSON; `"seq"` stays.

use std::time::{Duration, Instant};

use crate::fake_firehose::{FakeFirehose, Outcome};

/// When the writer's ticks were written.
pub struct Writes {
    pub per_tick: usize,
    /// Ticks before this one are the warm-up, left out.
    pub first_measured: usize,
    /// When the write of tick `k` returned.
    pub at: Vec<Instant>,
}

/// p50 and p99 in milliseconds over the measured lines the sink accepted, or `None`
/// when it accepted none of them.
pub fn percentiles(fake: &FakeFirehose, writes: &Writes) -> Option<(f64, f64)> {
    let mut latencies = latencies(fake, writes);
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let ms = |p: f64| nearest_rank(&latencies, p).as_secs_f64() * 1e3;
    Some((ms(50.0), ms(99.0)))
}

fn latencies(fake: &FakeFirehose, writes: &Writes) -> Vec<Duration> {
    let records = fake.accepted();
    let mut records = records.iter();
    let mut seen = vec![false; writes.at.len() * writes.per_tick];
    let mut out = Vec::new();
    for call in fake.calls() {
        let accepted = match &call.outcome {
            Outcome::Accepted | Outcome::Raw { accepted: true, .. } => call.records,
            Outcome::PartialFailure { failed } => call.records - failed.len(),
            _ => 0,
        };
        for record in records.by_ref().take(accepted) {
            for line in record.split(|&b| b == b'\n') {
                let Some(seq) = seq_of(line) else { continue };
                let tick = seq / writes.per_tick.max(1);
                if tick < writes.first_measured || seq >= seen.len() || seen[seq] {
                    continue;
                }
                seen[seq] = true;
                out.push(call.received.saturating_duration_since(writes.at[tick]));
            }
        }
    }
    out
}

/// The value of the line's `"seq"` key.
fn seq_of(line: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(line, b"\"seq\":")? + 6;
    let digits = line[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .fold(None, |n: Option<usize>, d| {
            Some(n.unwrap_or(0) * 10 + usize::from(d - b'0'))
        });
    digits
}

/// The smallest value with at least `p` % of `sorted` at or below it.
fn nearest_rank(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_firehose::{FakeConfig, DEFAULT_STREAM};
    use crate::lines::Lines;
    use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
    use bytes::Bytes;

    /// Four ticks of 10 lines (the first a warm-up) in two calls through the SDK, then
    /// the last tick again: each measured line is timed once, from its tick to the call
    /// that first accepted it.
    #[test]
    fn each_measured_line_is_timed_from_its_write_to_the_call_that_first_accepted_it() {
        let fake = FakeFirehose::start(FakeConfig::default());
        let conf = aws_sdk_firehose::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(fake.endpoint())
            .credentials_provider(Credentials::new("bench", "bench", None, None, "test"))
            .build();
        let client = aws_sdk_firehose::Client::from_conf(conf);
        let lines = Lines::generate(40);
        let line = |i| Bytes::copy_from_slice(lines.slice(i, i + 1).strip_suffix(b"\n").unwrap());
        let t0 = Instant::now();
        let at: Vec<Instant> = (0..4).map(|k| t0 + Duration::from_millis(10 * k)).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for range in [0..20, 20..40, 30..40] {
            let batch: Vec<Bytes> = range.map(line).collect();
            runtime
                .block_on(crate::floor::put(&client, DEFAULT_STREAM, &batch))
                .unwrap();
        }
        let writes = Writes {
            per_tick: 10,
            first_measured: 1,
            at,
        };
        let got = latencies(&fake, &writes);
        let calls = fake.calls();
        let expected: Vec<Duration> = (10..40)
            .map(|seq| {
                let call = if seq < 20 { &calls[0] } else { &calls[1] };
                call.received.saturating_duration_since(writes.at[seq / 10])
            })
            .collect();
        assert_eq!(calls.len(), 3);
        assert_eq!(got, expected);
    }

    #[test]
    fn seq_is_read_from_the_lines_json_with_or_without_a_space() {
        assert_eq!(seq_of(br#"{"level":"INFO","seq":1234,"x":1}"#), Some(1234));
        assert_eq!(seq_of(br#"{"seq": 7}"#), Some(7));
        assert_eq!(seq_of(br#"{"sequence":7}"#), None);
        assert_eq!(seq_of(br#"{"seq":"7"}"#), None);
    }

    #[test]
    fn nearest_rank_picks_the_value_at_or_above_the_percentile() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&v, 50.0), Duration::from_millis(50));
        assert_eq!(nearest_rank(&v, 99.0), Duration::from_millis(99));
        assert_eq!(nearest_rank(&v[..1], 99.0), Duration::from_millis(1));
    }
}
