//! `meta.activate.schedule`: parsed and validated here, and the time arithmetic the runner
//! uses to decide whether a sync is due.
//!
//! Every schedule except `always` is a set of slots in UTC (a cron expression; the named ones
//! are `*/15 * * * *`, `0 * * * *` and `0 0 * * *`). A sync is due when a slot has passed since
//! the start of its last successful run, so a run started a few seconds after a slot still
//! counts for that slot, and a late run catches up once rather than once per missed slot.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `dbt-activate run` (the default).
    Always,
    Every15Minutes,
    EveryHour,
    EveryDay,
    /// A five-field cron expression (minute hour day-of-month month day-of-week), in UTC.
    Cron(String),
}

impl Schedule {
    pub const NAMED: &'static [&'static str] =
        &["always", "every_15_minutes", "every_hour", "every_day"];

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "always" => return Ok(Self::Always),
            "every_15_minutes" => return Ok(Self::Every15Minutes),
            "every_hour" => return Ok(Self::EveryHour),
            "every_day" => return Ok(Self::EveryDay),
            _ => {}
        }
        let expr = match text.strip_prefix("cron") {
            Some(rest) => rest.trim().trim_matches(|c| c == '"' || c == '\''),
            None => text,
        };
        let cron = Cron::parse(expr)?;
        // A date that does not exist (`0 0 30 2 *`) would never fire: say so now.
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if epoch.is_some_and(|t| cron.next_after(t).is_none()) {
            return Err(format!(
                "cron `{expr}` never fires (no such date in the calendar)"
            ));
        }
        Ok(Self::Cron(
            expr.split_whitespace().collect::<Vec<_>>().join(" "),
        ))
    }

    /// The cron expression of the schedule's slots; `None` for `always`.
    fn cron(&self) -> Option<Cron> {
        let expr = match self {
            Self::Always => return None,
            Self::Every15Minutes => "*/15 * * * *",
            Self::EveryHour => "0 * * * *",
            Self::EveryDay => "0 0 * * *",
            Self::Cron(expr) => expr.as_str(),
        };
        Cron::parse(expr).ok()
    }

    /// When a sync whose last successful run started at `last_run` is next due: the first slot
    /// after it. `None` for `always` (due on every run).
    pub fn next_due(&self, last_run: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron()?.next_after(last_run)
    }

    /// Whether the sync is due at `now`; a sync that never succeeded is always due.
    pub fn is_due(&self, last_run: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match (self, last_run) {
            (Self::Always, _) | (_, None) => true,
            (_, Some(last)) => self.next_due(last).is_some_and(|due| due <= now),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Every15Minutes => f.write_str("every_15_minutes"),
            Self::EveryHour => f.write_str("every_hour"),
            Self::EveryDay => f.write_str("every_day"),
            Self::Cron(expr) => write!(f, "cron \"{expr}\""),
        }
    }
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// A parsed five-field cron expression: the allowed values of each field as bits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Sunday is 0 (a 7 is folded onto it).
    days_of_week: u64,
    /// Whether day-of-month / day-of-week start with `*`: as in classic cron, when both are
    /// restricted a day matches either; when one is `*`, the other alone decides.
    dom_star: bool,
    dow_star: bool,
}

/// How far ahead a slot is searched: leap days come back within 8 years.
const SEARCH_DAYS: i64 = 366 * 8 + 2;

impl Cron {
    fn parse(expr: &str) -> Result<Self, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != FIELDS.len() {
            return Err(format!(
                "`{expr}` is neither one of {} nor a five-field cron expression like `cron \"0 * * * *\"`",
                Schedule::NAMED.join(", ")
            ));
        }
        let mut sets = [0u64; 5];
        for ((part, (name, lo, hi)), set) in parts.iter().zip(FIELDS).zip(sets.iter_mut()) {
            for item in part.split(',') {
                *set |= parse_item(item, lo, hi)
                    .map_err(|why| format!("cron `{expr}`: {name} field `{part}`: {why}"))?;
            }
        }
        let mut days_of_week = sets[4];
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Self {
            minutes: sets[0],
            hours: sets[1],
            days_of_month: sets[2],
            months: sets[3],
            days_of_week,
            dom_star: parts[2].starts_with('*'),
            dow_star: parts[4].starts_with('*'),
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if !has(self.months, date.month()) {
            return false;
        }
        let dom = has(self.days_of_month, date.day());
        let dow = has(self.days_of_week, date.weekday().num_days_from_sunday());
        match (self.dom_star, self.dow_star) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first slot strictly after `t` (to the minute), or `None` if none within 8 years.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let first_day = start.date_naive();
        for offset in 0..SEARCH_DAYS {
            let date = first_day + Duration::days(offset);
            if !self.day_matches(date) {
                continue;
            }
            let same_day = offset == 0;
            for hour in 0..24 {
                if !has(self.hours, hour) || (same_day && hour < start.hour()) {
                    continue;
                }
                for minute in 0..60 {
                    if !has(self.minutes, minute)
                        || (same_day && hour == start.hour() && minute < start.minute())
                    {
                        continue;
                    }
                    return date.and_hms_opt(hour, minute, 0).map(|n| n.and_utc());
                }
            }
        }
        None
    }
}

fn has(set: u64, value: u32) -> bool {
    set & (1u64 << value) != 0
}

/// One comma-separated item (`*`, `5`, `1-5`, `*/15`, `10-50/10`) as a set of values.
fn parse_item(item: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let step = match step {
        Some(step) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step `{step}` is not a number"))?;
            if step == 0 {
                return Err("a step of 0 never fires".into());
            }
            step
        }
        None => 1,
    };
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let (from, to) = if range == "*" {
        (lo, hi)
    } else {
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range {a}-{b} runs backwards"));
                }
                (a, b)
            }
            // `5/15` means from 5 to the end, every 15.
            None if step > 1 => (number(range)?, hi),
            None => {
                let n = number(range)?;
                (n, n)
            }
        }
    };
    Ok((from..=to)
        .step_by(step as usize)
        .fold(0u64, |set, v| set | (1u64 << v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a test timestamp")
            .with_timezone(&Utc)
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .expect("a valid schedule")
            .next_due(at(after))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn parses_named_and_cron() {
        assert_eq!(Schedule::parse("every_hour"), Ok(Schedule::EveryHour));
        assert_eq!(
            Schedule::parse("cron \"0 * * * *\""),
            Ok(Schedule::Cron("0 * * * *".into()))
        );
        assert_eq!(
            Schedule::parse("*/15 9-17 * * 1-5"),
            Ok(Schedule::Cron("*/15 9-17 * * 1-5".into()))
        );
    }

    #[test]
    fn rejects_bad_cron() {
        assert!(Schedule::parse("every_hours").is_err());
        let err = Schedule::parse("cron \"61 * * * *\"").unwrap_err();
        assert!(err.contains("minute"), "{err}");
        assert!(Schedule::parse("cron \"*/0 * * * *\"").is_err());
        let err = Schedule::parse("0 0 30 2 *").unwrap_err();
        assert!(err.contains("never fires"), "{err}");
    }

    #[test]
    fn named_schedules_are_slots_in_utc() {
        assert_eq!(
            next("every_15_minutes", "2026-03-01T10:00:05Z"),
            "2026-03-01T10:15:00+00:00"
        );
        assert_eq!(
            next("every_15_minutes", "2026-03-01T10:14:59Z"),
            "2026-03-01T10:15:00+00:00"
        );
        assert_eq!(
            next("every_hour", "2026-03-01T10:00:00Z"),
            "2026-03-01T11:00:00+00:00"
        );
        assert_eq!(
            next("every_day", "2026-12-31T23:59:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(next("always", "2026-03-01T10:00:00Z"), "none");
    }

    #[test]
    fn cron_fields_steps_ranges_and_days() {
        // Weekdays 9-17 every 15 minutes: Friday evening -> Monday 09:00 (2026-03-06 is a Friday).
        assert_eq!(
            next("*/15 9-17 * * 1-5", "2026-03-06T17:50:00Z"),
            "2026-03-09T09:00:00+00:00"
        );
        // Lists and a step from an offset.
        assert_eq!(
            next("5/20 0,12 * * *", "2026-03-01T00:25:00Z"),
            "2026-03-01T00:45:00+00:00"
        );
        // Day-of-month and day-of-week both restricted: either matches (the 13th or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z"),
            "2026-03-06T00:00:00+00:00"
        );
        // Sunday as 7.
        assert_eq!(
            next("30 6 * * 7", "2026-03-01T07:00:00Z"),
            "2026-03-08T06:30:00+00:00"
        );
        // Leap day.
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn due_after_a_slot_passed_since_the_last_run() {
        let hourly = Schedule::EveryHour;
        let last = Some(at("2026-03-01T10:00:03Z"));
        assert!(!hourly.is_due(last, at("2026-03-01T10:59:59Z")));
        assert!(hourly.is_due(last, at("2026-03-01T11:00:00Z")));
        assert!(hourly.is_due(None, at("2026-03-01T10:30:00Z")));
        assert!(Schedule::Always.is_due(last, at("2026-03-01T10:00:04Z")));
    }
}
