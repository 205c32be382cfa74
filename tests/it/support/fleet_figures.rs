//! The figures of a fleet run (docs/fleet.md), computed from what the driver wrote and what
//! the fake Firehose accepted: pure functions, shared by the `fleet` example and the
//! short test, so that both judge a run the same way.

/// Jain's fairness index, `(Σx)² / (n·Σx²)`: 1 when every pod got the same, `1/n` when
/// one pod got everything. An empty or all-zero input is 1 (nobody was treated worse).
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        1.0
    } else {
        sum * sum / (xs.len() as f64 * squares)
    }
}

/// One access-log line of `pod`, numbered `seq` and padded to about `bytes` bytes. The
/// pod and number come first so that [`parse_line`] finds them without a JSON parser.
pub fn line(pod: usize, seq: u64, bytes: usize) -> String {
    let head = format!(
        r#"{{"pod":{pod},"seq":{seq},"method":"GET","path":"/orders/{seq}","status":200,"duration_ms":12.5,"pad":""#
    );
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut line = head;
    line.extend(std::iter::repeat_n('x', pad));
    line.push_str("\"}");
    line
}

/// The pod and number of a line written by [`line`]; `None` for anything else.
pub fn parse_line(line: &[u8]) -> Option<(usize, u64)> {
    let rest = line.strip_prefix(br#"{"pod":"#)?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let pod = std::str::from_utf8(&rest[..comma]).ok()?.parse().ok()?;
    let rest = rest[comma..].strip_prefix(br#","seq":"#)?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let seq = std::str::from_utf8(&rest[..comma]).ok()?.parse().ok()?;
    Some((pod, seq))
}

/// What became of the written lines: each pod wrote the numbers `0..written[pod]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub written: u64,
    /// Written lines accepted at least once.
    pub delivered: u64,
    /// Written lines never accepted.
    pub lost: u64,
    /// Accepted copies beyond the first.
    pub duplicated: u64,
    /// Accepted lines that no pod wrote (should be none).
    pub foreign: u64,
}

/// Counts accepted lines against the written ones, one bit of state per written line.
pub struct Tallier {
    seen: Vec<Vec<bool>>,
    tally: Tally,
}

impl Tallier {
    pub fn new(written: &[u64]) -> Tallier {
        Tallier {
            seen: written.iter().map(|&n| vec![false; n as usize]).collect(),
            tally: Tally {
                written: written.iter().sum(),
                ..Tally::default()
            },
        }
    }

    /// One accepted line.
    pub fn see(&mut self, line: &[u8]) {
        let slot =
            parse_line(line).and_then(|(pod, seq)| self.seen.get_mut(pod)?.get_mut(seq as usize));
        match slot {
            None => self.tally.foreign += 1,
            Some(seen) if *seen => self.tally.duplicated += 1,
            Some(seen) => {
                *seen = true;
                self.tally.delivered += 1;
            }
        }
    }

    pub fn finish(mut self) -> Tally {
        self.tally.lost = self.tally.written - self.tally.delivered;
        self.tally
    }
}

/// When each pod's lines were written (its cumulative count at each driver tick), so
/// that a pod's lag can be told as the age of its oldest line not yet accepted.
#[derive(Default)]
pub struct WriteHistory {
    times: Vec<f64>,
    /// `counts[tick][pod]`: lines written by then.
    counts: Vec<Vec<u64>>,
}

impl WriteHistory {
    /// Records the cumulative counts at `t` seconds; ticks come in time order.
    pub fn push(&mut self, t: f64, written: &[u64]) {
        self.times.push(t);
        self.counts.push(written.to_vec());
    }

    /// Seconds since the first line beyond the first `accepted` of `pod` was written;
    /// 0 when all of its lines were accepted. Firehose keeps no order, so this reads
    /// the accepted count as a prefix: the lag of a pod that ships in order.
    pub fn lag_seconds(&self, pod: usize, accepted: u64, now: f64) -> f64 {
        let first_beyond = self
            .counts
            .partition_point(|counts| counts[pod] <= accepted);
        match self.times.get(first_beyond) {
            Some(&written_at) => (now - written_at).max(0.0),
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_for_equal_shares_and_one_over_n_for_a_monopoly() {
        assert_eq!(jain(&[5.0, 5.0, 5.0, 5.0]), 1.0);
        assert_eq!(jain(&[8.0, 0.0, 0.0, 0.0]), 0.25);
        assert!((jain(&[1.0, 3.0]) - 0.8).abs() < 1e-12);
        assert_eq!(jain(&[]), 1.0);
    }

    #[test]
    fn lines_round_trip_and_tally_finds_lost_duplicated_and_foreign_lines() {
        let l = line(17, 12_345, 200);
        assert_eq!(l.len(), 200);
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok(), "{l}");
        assert_eq!(parse_line(l.as_bytes()), Some((17, 12_345)));
        assert_eq!(parse_line(b"{\"seq\":1}"), None);

        let mut tallier = Tallier::new(&[3, 2]);
        for (pod, seq) in [(0, 0), (0, 2), (1, 0), (1, 1), (0, 2)] {
            tallier.see(line(pod, seq, 80).as_bytes());
        }
        tallier.see(line(2, 0, 80).as_bytes());
        let tally = tallier.finish();
        assert_eq!(
            tally,
            Tally {
                written: 5,
                delivered: 4,
                lost: 1,
                duplicated: 1,
                foreign: 1
            }
        );
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_line_not_accepted() {
        let mut history = WriteHistory::default();
        history.push(1.0, &[10]);
        history.push(2.0, &[20]);
        history.push(3.0, &[30]);
        assert_eq!(history.lag_seconds(0, 30, 5.0), 0.0);
        assert_eq!(history.lag_seconds(0, 20, 5.0), 2.0);
        assert_eq!(history.lag_seconds(0, 9, 5.0), 4.0);
        assert_eq!(history.lag_seconds(0, 0, 5.0), 4.0);
    }
}
