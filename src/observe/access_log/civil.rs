//! Civil (calendar) dates in UTC, without a date crate: the two timestamp
//! shapes the access log writes.
//!
//! This module owns the arithmetic from a [`SystemTime`] to a date and time
//! of day, and their text; which line carries which shape is
//! [`super::format`]'s job. Everything is UTC: a log line's time must not
//! depend on the host's time zone.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millisecond: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// Times before 1970 (a clock set very wrong) are logged as the epoch.
    pub(super) fn from_system_time(time: SystemTime) -> Civil {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs();
        let days = (secs / 86_400) as i64;
        let of_day = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            millisecond: since_epoch.subsec_millis(),
        }
    }

    /// `21/Nov/2026:10:00:00 +0000`, nginx's `$time_local` in UTC.
    pub(super) fn write_clf(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day,
            MONTHS[self.month as usize - 1],
            self.year,
            self.hour,
            self.minute,
            self.second
        );
    }

    /// `2026-11-21T10:00:00.123Z`.
    pub(super) fn write_rfc3339_millis(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond
        );
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`: counts in 400-year
/// eras starting on March 1st, so the leap day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-11-21T10:00:00.123Z
    pub(crate) fn fixed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_255_200_123)
    }

    #[test]
    fn civil_dates() {
        let date = civil_from_days;
        assert_eq!(date(0), (1970, 1, 1));
        assert_eq!(date(-1), (1969, 12, 31));
        assert_eq!(date(10_956), (1999, 12, 31));
        assert_eq!(date(11_016), (2000, 2, 29)); // leap day of a year divisible by 400
        assert_eq!(date(11_017), (2000, 3, 1));
        assert_eq!(date(19_782), (2024, 2, 29));
        assert_eq!(date(19_783), (2024, 3, 1));
        assert_eq!(date(20_778), (2026, 11, 21));
        assert_eq!(date(47_540), (2100, 2, 28)); // 2100 is not a leap year
        assert_eq!(date(47_541), (2100, 3, 1));
    }

    #[test]
    fn time_formats() {
        let civil = Civil::from_system_time(fixed_time());
        let (mut clf, mut rfc) = (String::new(), String::new());
        civil.write_clf(&mut clf);
        civil.write_rfc3339_millis(&mut rfc);
        assert_eq!(clf, "21/Nov/2026:10:00:00 +0000");
        assert_eq!(rfc, "2026-11-21T10:00:00.123Z");

        let leap = Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(1_709_251_199));
        let mut rfc = String::new();
        leap.write_rfc3339_millis(&mut rfc);
        assert_eq!(rfc, "2024-02-29T23:59:59.000Z");
    }
}
