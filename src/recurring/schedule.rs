//! When a task runs: cron expressions (read by `croner`, in the task's time zone) and `every`
//! intervals anchored at the Unix epoch, and how run times show in a time zone.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::error::RecurringError;

/// The longest `every` interval accepted: 366 days.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// When a task runs: a cron expression or a fixed interval from the Unix epoch.
///
/// ```
/// use solidq::recurring::Schedule;
/// assert!(Schedule::parse("*/5 * * * *").is_ok());
/// assert!(Schedule::parse("0 */5 * * * *").is_ok()); // 6 fields: a second first
/// assert!(Schedule::parse("every 90s").is_ok());
/// let err = Schedule::parse("* * *").unwrap_err().to_string();
/// assert!(err.contains("has 3 fields"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    text: String,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Cron(Box<croner::Cron>),
    /// Seconds between runs, at least 1.
    Every(i64),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Schedule {
    /// Parses a schedule: a cron expression of 5 or 6 fields, a cron nickname (`@daily`), or
    /// `every <n>s|m|h|d` (`every 30s`, `every 5m`, `every 2h`, `every 1d`; the words `second`,
    /// `minute`, `hour` and `day`, singular or plural, work too, and `every hour` means
    /// `every 1h`).
    pub fn parse(text: &str) -> Result<Schedule, RecurringError> {
        let trimmed = text.trim();
        let invalid = |problem: String| RecurringError::Schedule { schedule: text.to_string(), problem };
        if trimmed.is_empty() {
            return Err(invalid("is empty".into()));
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("every") {
            let seconds = parse_every(rest.trim()).map_err(invalid)?;
            return Ok(Schedule { text: trimmed.to_string(), rule: Rule::Every(seconds) });
        }
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!("has {fields} field{}", if fields == 1 { "" } else { "s" })));
        }
        let parser = croner::parser::CronParser::builder().year(croner::parser::Year::Disallowed).build();
        let cron = parser.parse(trimmed).map_err(|err| invalid(format!("is not a cron expression: {err}")))?;
        Ok(Schedule { text: trimmed.to_string(), rule: Rule::Cron(Box::new(cron)) })
    }

    /// The schedule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The interval of an `every` schedule.
    pub fn every(&self) -> Option<Duration> {
        match self.rule {
            Rule::Every(seconds) => Some(Duration::from_secs(seconds.unsigned_abs())),
            Rule::Cron(_) => None,
        }
    }

    /// The first run time strictly after `after`, reading cron fields in `zone`. Run times are
    /// whole seconds. `None` when there is none (a cron expression that never matches again).
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let after = whole_second(after);
        match &self.rule {
            Rule::Every(seconds) => {
                let next = after.timestamp().div_euclid(*seconds).checked_add(1)?.checked_mul(*seconds)?;
                DateTime::from_timestamp(next, 0)
            }
            Rule::Cron(cron) => {
                let local = after.with_timezone(&zone);
                cron.find_next_occurrence(&local, false).ok().map(|at| at.with_timezone(&Utc))
            }
        }
    }

    /// The last run time strictly before `before`, reading cron fields in `zone`.
    pub fn latest_before(&self, before: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let floor = whole_second(before);
        // Run times are whole seconds: one at `floor` is before `before` only if `before` is
        // later than `floor`.
        let inclusive = floor < before;
        match &self.rule {
            Rule::Every(seconds) => {
                let bound = if inclusive { floor.timestamp() } else { floor.timestamp().checked_sub(1)? };
                DateTime::from_timestamp(bound.div_euclid(*seconds).checked_mul(*seconds)?, 0)
            }
            Rule::Cron(cron) => {
                let local = floor.with_timezone(&zone);
                cron.find_previous_occurrence(&local, inclusive).ok().map(|at| at.with_timezone(&Utc))
            }
        }
    }

    /// The first run time at or after `at`.
    pub fn at_or_after(&self, at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let floor = whole_second(at);
        if floor == at {
            self.next_after(floor - chrono::Duration::seconds(1), zone)
        } else {
            self.next_after(floor, zone)
        }
    }
}

/// `at` without its fraction of a second.
pub(crate) fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

/// Seconds of `<n><unit>` (the part after `every`).
fn parse_every(text: &str) -> Result<i64, String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit = unit.trim();
    let scale: u64 = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "" => return Err("has no unit after its number".into()),
        _ => return Err(format!("has unit {unit:?}, not s, m, h or d")),
    };
    let count: u64 = if number.is_empty() {
        if unit.len() == 1 {
            return Err("has no number before its unit".into());
        }
        1
    } else {
        number.parse().map_err(|_| "has a number too large".to_string())?
    };
    if count == 0 {
        return Err("has an interval of zero".into());
    }
    match count.checked_mul(scale) {
        Some(seconds) if seconds <= MAX_EVERY.as_secs() => Ok(seconds as i64),
        _ => Err(format!("has an interval longer than {} days", MAX_EVERY.as_secs() / 86_400)),
    }
}

/// Parses an IANA time zone name (`UTC`, `Europe/Berlin`, `America/New_York`).
///
/// ```
/// assert!(solidq::recurring::parse_time_zone("America/New_York").is_ok());
/// assert!(solidq::recurring::parse_time_zone("Mars/Olympus").is_err());
/// ```
pub fn parse_time_zone(name: &str) -> Result<Tz, RecurringError> {
    name.trim().parse::<Tz>().map_err(|_| RecurringError::TimeZone(name.to_string()))
}

/// `at` (a run time, UTC) in `zone`, for logs and listings.
pub fn local_time(at: DateTime<Utc>, zone: Tz) -> String {
    zone.from_utc_datetime(&at.naive_utc()).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}
