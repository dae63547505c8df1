//! `meta.activate.schedule`: parsed and validated here; enforced by the scheduler.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `dbt-activate run` (the default).
    Always,
    Every15Minutes,
    EveryHour,
    EveryDay,
    /// A five-field cron expression (minute hour day-of-month month day-of-week).
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
        validate_cron(expr)?;
        Ok(Self::Cron(
            expr.split_whitespace().collect::<Vec<_>>().join(" "),
        ))
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

fn validate_cron(expr: &str) -> Result<(), String> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != FIELDS.len() {
        return Err(format!(
            "`{expr}` is neither one of {} nor a five-field cron expression like `cron \"0 * * * *\"`",
            Schedule::NAMED.join(", ")
        ));
    }
    for (part, (name, lo, hi)) in parts.iter().zip(FIELDS) {
        for item in part.split(',') {
            validate_cron_item(item, lo, hi)
                .map_err(|why| format!("cron `{expr}`: {name} field `{part}`: {why}"))?;
        }
    }
    Ok(())
}

fn validate_cron_item(item: &str, lo: u32, hi: u32) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        let step: u32 = step
            .parse()
            .map_err(|_| format!("step `{step}` is not a number"))?;
        if step == 0 {
            return Err("a step of 0 never fires".into());
        }
    }
    if range == "*" {
        return Ok(());
    }
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    match range.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
        }
        None => {
            number(range)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
