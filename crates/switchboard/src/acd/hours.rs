//! Business hours of a queue: when it takes calls, as a weekly schedule in
//! a time zone. Pure: [`Hours::is_open`] takes the time as an argument.
//!
//! The schedule is text, the same in the admin API and the CLI: groups
//! separated by `;`, each a day list and time ranges, e.g.
//! `mon-fri 09:00-12:30,13:30-18:00; sat 10:00-14:00`. Days are `mon tue
//! wed thu fri sat sun`, as single days, ranges (`mon-fri`, `fri-mon`
//! wraps) or comma lists (`sat,sun`). Times are `HH:MM`, 24 h, local to the
//! zone; a range ends after it starts, and `24:00` ends at midnight. A day
//! that no group names is closed. The zone is an IANA name
//! (`Europe/Paris`); summer time follows the tz database compiled into the
//! binary (jiff).

use std::fmt;

use jiff::tz::TimeZone;

/// Minutes since local midnight, 0–1440.
type Minute = u16;

/// A parsed schedule: for each weekday (Monday first), its open ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    week: [Vec<(Minute, Minute)>; 7],
    zone: TimeZone,
    zone_name: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a schedule or zone was refused: a message naming the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursError(pub String);

impl fmt::Display for HoursError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(msg: impl Into<String>) -> HoursError {
    HoursError(msg.into())
}

fn day(s: &str) -> Result<usize, HoursError> {
    DAYS.iter()
        .position(|d| *d == s)
        .ok_or_else(|| bad(format!("`{s}` is not a day (mon … sun)")))
}

fn minute(s: &str) -> Result<Minute, HoursError> {
    let parsed = s.split_once(':').and_then(|(h, m)| {
        let ok = h.len() == 2 && m.len() == 2;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (ok && m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    });
    parsed.ok_or_else(|| bad(format!("`{s}` is not a time (HH:MM, 00:00–24:00)")))
}

fn days(spec: &str) -> Result<Vec<usize>, HoursError> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (mut d, end) = (day(a)?, day(b)?);
                loop {
                    out.push(d);
                    if d == end {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out.push(day(part)?),
        }
    }
    Ok(out)
}

impl Hours {
    /// Parses `schedule` in the IANA zone `zone`.
    ///
    /// # Errors
    /// [`HoursError`] naming the bad day, time, range or zone; also for an
    /// empty schedule, a schedule over 500 bytes, or overlapping ranges on
    /// one day.
    pub fn parse(schedule: &str, zone: &str) -> Result<Self, HoursError> {
        if schedule.len() > 500 {
            return Err(bad("hours must be at most 500 bytes"));
        }
        let tz = TimeZone::get(zone)
            .map_err(|_| bad(format!("`{zone}` is not a time zone (e.g. Europe/Paris)")))?;
        let mut week: [Vec<(Minute, Minute)>; 7] = Default::default();
        let groups: Vec<&str> = schedule
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect();
        if groups.is_empty() {
            return Err(bad("hours name no day; leave them out to be always open"));
        }
        for group in groups {
            let (d, ranges) = group
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(format!("`{group}`: days, a space, then time ranges")))?;
            let d = days(d)?;
            let ranges: Vec<(Minute, Minute)> = ranges
                .split(',')
                .map(|r| {
                    let r = r.trim();
                    let (a, b) = r
                        .split_once('-')
                        .ok_or_else(|| bad(format!("`{r}` is not a range (HH:MM-HH:MM)")))?;
                    let (a, b) = (minute(a)?, minute(b)?);
                    if b <= a {
                        return Err(bad(format!("`{r}` ends before it starts")));
                    }
                    Ok((a, b))
                })
                .collect::<Result<_, _>>()?;
            for d in d {
                week[d].extend(ranges.iter().copied());
            }
        }
        for (d, ranges) in week.iter_mut().enumerate() {
            ranges.sort_unstable();
            if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
                return Err(bad(format!("ranges overlap on {}", DAYS[d])));
            }
        }
        Ok(Self {
            week,
            zone: tz,
            zone_name: zone.to_string(),
        })
    }

    /// Whether the queue is open at `now_ms` (ms since the Unix epoch).
    pub fn is_open(&self, now_ms: u64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms.min(i64::MAX as u64) as i64) else {
            return false;
        };
        let local = ts.to_zoned(self.zone.clone());
        let d = local.weekday().to_monday_zero_offset() as usize;
        let m = local.hour() as Minute * 60 + local.minute() as Minute;
        self.week[d].iter().any(|&(a, b)| a <= m && m < b)
    }

    /// The zone's IANA name.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The start of the local day of `now_ms` in this schedule's zone, ms
    /// since the Unix epoch (a queue's "today").
    pub fn start_of_day(&self, now_ms: u64) -> u64 {
        start_of_day_in(&self.zone, now_ms)
    }
}

/// The start of the day of `now_ms` in `zone`, ms since the Unix epoch;
/// `now_ms` itself when it is out of range.
pub fn start_of_day_in(zone: &TimeZone, now_ms: u64) -> u64 {
    let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms.min(i64::MAX as u64) as i64) else {
        return now_ms;
    };
    ts.to_zoned(zone.clone())
        .start_of_day()
        .ok()
        .and_then(|z| u64::try_from(z.timestamp().as_millisecond()).ok())
        .unwrap_or(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms since the Unix epoch of a civil time in `zone`.
    fn at(zone: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        let dt = jiff::civil::date(y, mo, d).at(h, mi, 0, 0);
        dt.in_tz(zone).unwrap().timestamp().as_millisecond() as u64
    }

    #[test]
    fn weekdays_ranges_and_lunch_breaks() {
        let h = Hours::parse(
            "mon-fri 09:00-12:30,13:30-18:00; sat 10:00-14:00",
            "Europe/Paris",
        )
        .unwrap();
        // 2026-12-07 is a Monday.
        let p = |d, hh, mm| h.is_open(at("Europe/Paris", 2026, 12, d, hh, mm));
        assert!(!p(7, 8, 59));
        assert!(p(7, 9, 0));
        assert!(p(7, 12, 29));
        assert!(!p(7, 12, 30), "the end is exclusive");
        assert!(!p(7, 13, 0), "lunch");
        assert!(p(11, 17, 59), "friday");
        assert!(p(12, 11, 0), "saturday morning");
        assert!(!p(12, 15, 0));
        assert!(!p(13, 11, 0), "sunday");
        assert_eq!(h.zone(), "Europe/Paris");
    }

    #[test]
    fn the_zone_and_summer_time_decide_the_local_hour() {
        let h = Hours::parse("mon-sun 09:00-17:00", "America/New_York").unwrap();
        // 09:30 in New York is 14:30 UTC in winter and 13:30 UTC in summer.
        assert!(h.is_open(at("UTC", 2026, 1, 14, 14, 30)));
        assert!(!h.is_open(at("UTC", 2026, 1, 14, 13, 30)));
        assert!(h.is_open(at("UTC", 2026, 7, 14, 13, 30)));
    }

    #[test]
    fn wrapping_day_ranges_lists_and_midnight() {
        let h = Hours::parse("fri-mon 00:00-24:00; wed,thu 20:00-22:00", "UTC").unwrap();
        // 2026-12-09 is a Wednesday.
        let p = |d, hh, mm| h.is_open(at("UTC", 2026, 12, d, hh, mm));
        assert!(
            p(11, 0, 0) && p(13, 23, 59) && p(14, 12, 0),
            "fri, sun, mon"
        );
        assert!(!p(15, 12, 0), "tuesday");
        assert!(p(9, 21, 0) && p(10, 20, 0));
        assert!(!p(9, 22, 0));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (sched, zone, part) in [
            ("mon-fri 09:00-17:00", "Mars/Olympus", "Mars/Olympus"),
            ("mon-fry 09:00-17:00", "UTC", "fry"),
            ("mon 9:00-17:00", "UTC", "9:00"),
            ("mon 09:00-25:00", "UTC", "25:00"),
            ("mon 17:00-09:00", "UTC", "ends before"),
            ("mon 09:00", "UTC", "range"),
            ("mon", "UTC", "days, a space"),
            ("mon 09:00-12:00; mon 11:00-13:00", "UTC", "overlap on mon"),
            ("  ;  ", "UTC", "no day"),
        ] {
            let e = Hours::parse(sched, zone).unwrap_err();
            assert!(e.0.contains(part), "{sched}: {e}");
        }
        assert!(Hours::parse(&"mon 09:00-10:00;".repeat(40), "UTC").is_err());
    }
}
