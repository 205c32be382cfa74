//! log_throttle: one log line per interval for an event that repeats, with the count
//! since the last — so a burst of failures is a line a second, not a line each.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One log line per interval for a repeating event, with the count since the last: a
/// burst of 10,000 throttled records is one WARN a second, not 10,000.
pub struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Adds `n` occurrences; returns the total to report when a line is due.
    pub fn note(&self, n: u64) -> Option<u64> {
        let mut s = self.state.lock().unwrap();
        s.1 += n;
        let now = Instant::now();
        match s.0 {
            Some(last) if now < last + self.every => None,
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reports_counts_once_per_interval() {
        let t = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(
            t.note(5),
            Some(5),
            "the first occurrence is reported at once"
        );
        assert_eq!(t.note(7), None);
        assert_eq!(t.note(1), None);
        let mut s = t.state.lock().unwrap();
        s.0 = Some(Instant::now() - Duration::from_secs(7200));
        drop(s);
        assert_eq!(
            t.note(2),
            Some(10),
            "the next line carries the count since the last"
        );
    }
}
