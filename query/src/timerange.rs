//! Time ranges: parsing `--from`/`--to`/`--last`, and the UTC days (`datepath`) a range
//! must scan.
//!
//! `datepath` is the UTC day Firehose *received* a line (its S3 prefix), not the day the
//! app wrote it, so the days scanned are wider than the range: a line written at
//! 23:59:59 may be received after midnight. Search widens the end by [`SEARCH_LATE`];
//! verify widens by a whole day on each side, so that a line is found
//! whatever the clocks and buffers did.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sql::{DayRange, TimeBounds};

/// How long after it was written a line may still land in S3: Firehose's buffer
/// interval is at most 900 s, plus firetail's flush and retries. A line later than this
/// is missed by a search ending near midnight, never by verify.
pub const SEARCH_LATE: Duration = Duration::from_secs(3600);

const DAY: u64 = 86_400;

/// A time range, `from` inclusive, `to` exclusive, `from < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub from: SystemTime,
    pub to: SystemTime,
}

impl TimeRange {
    /// Checks `from < to`; the message names the flags.
    pub fn new(from: SystemTime, to: SystemTime) -> Result<TimeRange, String> {
        if from >= to {
            return Err(format!(
                "--from ({}) must be before --to ({})",
                humantime::format_rfc3339(from),
                humantime::format_rfc3339(to)
            ));
        }
        Ok(TimeRange { from, to })
    }

    /// The days a search scans: the day of `from` to the day of `to` + [`SEARCH_LATE`].
    pub fn search_days(&self) -> DayRange {
        DayRange {
            first: utc_day(self.from),
            last: utc_day(self.to + SEARCH_LATE),
        }
    }

    /// The days a verify scans: one more day on each side of the range.
    pub fn verify_days(&self) -> DayRange {
        let day = Duration::from_secs(DAY);
        DayRange {
            first: utc_day(self.from.checked_sub(day).unwrap_or(UNIX_EPOCH)),
            last: utc_day(self.to + day),
        }
    }

    /// The bounds compared with the `time` column, in ISO-8601 UTC.
    pub fn bounds(&self) -> TimeBounds {
        TimeBounds {
            from: humantime::format_rfc3339_millis(self.from).to_string(),
            to: humantime::format_rfc3339_millis(self.to).to_string(),
        }
    }
}

/// Parse an RFC 3339 time in UTC (`2026-11-26T17:33:00Z`, fractions allowed).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z').trim_end_matches('z'))
        .map_err(|e| format!("{text:?} is not a UTC time like 2026-11-26T17:33:00Z: {e}"))
}

/// The UTC day of `t` as `yyyy/MM/dd`, the format of `datepath`.
pub fn utc_day(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / DAY) as i64);
    format!("{y:04}/{m:02}/{d:02}")
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, public domain, reimplemented from its description).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SystemTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn utc_day_matches_humantime_for_every_day_of_four_centuries() {
        // Every day from 1970 to 2400, against humantime's own date formatting.
        for day in 0..(430 * 366) {
            let at = UNIX_EPOCH + Duration::from_secs(day * DAY + 12 * 3600);
            let iso = humantime::format_rfc3339(at).to_string();
            assert_eq!(utc_day(at), iso[..10].replace('-', "/"), "day {day}");
        }
    }

    #[test]
    fn verify_widens_by_a_day_on_each_side() {
        let r = TimeRange::new(t("2026-12-31T23:00:00Z"), t("2027-01-01T00:30:00Z")).unwrap();
        let days = r.verify_days();
        assert_eq!(
            (days.first.as_str(), days.last.as_str()),
            ("2026/12/30", "2027/01/02")
        );
    }

    #[test]
    fn search_covers_lines_received_after_midnight() {
        let r = TimeRange::new(t("2026-11-26T10:00:00Z"), t("2026-11-26T23:30:00Z")).unwrap();
        let days = r.search_days();
        assert_eq!(
            (days.first.as_str(), days.last.as_str()),
            ("2026/11/26", "2026/11/27")
        );
        let r = TimeRange::new(t("2026-11-26T10:00:00Z"), t("2026-11-26T12:00:00Z")).unwrap();
        assert_eq!(r.search_days().last, "2026/11/26");
    }

    #[test]
    fn bounds_are_iso_utc_and_empty_ranges_are_refused() {
        let r = TimeRange::new(t("2026-11-26T10:00:00Z"), t("2026-11-26T10:00:01.5Z")).unwrap();
        assert_eq!(r.bounds().from, "2026-11-26T10:00:00.000Z");
        assert_eq!(r.bounds().to, "2026-11-26T10:00:01.500Z");
        let e = TimeRange::new(r.to, r.from).unwrap_err();
        assert!(e.contains("--from") && e.contains("--to"), "{e}");
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }
}
