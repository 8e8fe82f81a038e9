//! Recurring tasks: a job enqueued on a schedule, as Solid Queue's recurring tasks.
//!
//! A [`RecurringTask`] has a key (its name, unique), a [`Schedule`], the kind and JSON
//! arguments of the job it enqueues, a queue, a priority, an IANA time zone (UTC by default)
//! and what to do about runs missed while no scheduler ran ([`RunMissed`]).
//!
//! Schedules are cron expressions of 5 fields (`minute hour day month weekday`) or 6 (a
//! second first), read by the `croner` crate (`@daily`, `@hourly` and names such as `MON` or
//! `JAN` work too), or `every <n>s|m|h|d`. An `every` schedule is anchored at the Unix epoch
//! (its run times are the multiples of the interval since 1970-01-01 00:00:00 UTC), so every
//! scheduler computes the same run times and the time zone plays no part in it.
//!
//! Cron run times follow the task's time zone through daylight saving changes: when the clock
//! springs forward over a task's time (02:30 on a day whose 02:00–03:00 does not exist), the
//! task runs once, at the first instant after the gap (03:00); when the clock falls back and
//! repeats an hour, a task at a fixed time in that hour (01:30) runs once, at the first of the
//! two. Tasks that run at many times of the day (`*/15 * * * *`) follow real time: none in the
//! skipped hour, and both halves of a repeated hour.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use solidq::recurring::{RecurringTask, RunMissed};
//!
//! let task = RecurringTask::new("nightly-report", "30 2 * * *", "reports.nightly")
//!     .unwrap()
//!     .arguments(serde_json::json!({"format": "pdf"}))
//!     .queue("reports")
//!     .time_zone("Europe/Berlin")
//!     .unwrap()
//!     .run_missed(RunMissed::Latest);
//! // 2026-03-29 is Berlin's spring-forward day: 02:30 does not exist, the run is at 03:00 CEST.
//! let after = Utc.with_ymd_and_hms(2026, 3, 28, 23, 0, 0).unwrap();
//! assert_eq!(task.next_run_after(after), Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()));
//!
//! let every = RecurringTask::new("heartbeat", "every 30s", "ping").unwrap();
//! let after = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 10).unwrap();
//! assert_eq!(every.next_run_after(after), Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 30).unwrap()));
//! ```
//!
//! This module holds the plain types and the time arithmetic only; the store writes tasks
//! and runs (`solidq_recurring_tasks`, `solidq_recurring_executions`), and the scheduler in
//! every runtime process enqueues them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::model::{name_problem, queue_name_problem};

/// How to write a schedule, shown in error messages.
pub const SCHEDULE_FORM: &str =
    "use a cron expression of 5 fields (minute hour day month weekday, e.g. \"30 2 * * *\") \
     or 6 (with a second first), or every <n>s|m|h|d (e.g. \"every 30s\")";

/// How to write a time zone, shown in error messages.
pub const TIME_ZONE_FORM: &str = "use an IANA time zone name, e.g. UTC, Europe/Berlin or America/New_York";

/// The longest `every` interval accepted: 366 days.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// While a scheduler runs, a run it enqueues up to this late still counts as on time: all runs
/// due within this window are enqueued (a scheduler woken late, or held up by the database,
/// catches up). Of runs due longer ago only the latest is enqueued; the others are skipped.
pub const ON_TIME_WINDOW: Duration = Duration::from_secs(10);

/// At most this many runs of one task are enqueued in one pass.
pub const MAX_RUNS_PER_PASS: usize = 100;

/// Why a recurring task, its schedule, its time zone or a task file is not usable. The text
/// names the task, the value and the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurringError {
    /// The schedule does not parse.
    #[error("schedule {schedule:?} {problem} ({SCHEDULE_FORM})")]
    Schedule {
        /// The schedule as written.
        schedule: String,
        /// What is wrong.
        problem: String,
    },
    /// The time zone is unknown.
    #[error("time zone {0:?} is not an IANA time zone name ({TIME_ZONE_FORM})")]
    TimeZone(String),
    /// Some other field is wrong (empty key or kind, bad queue name).
    #[error("{0}")]
    Invalid(String),
    /// A task of a file or of the store: which one, and what is wrong with it.
    #[error("recurring task {key:?}: {source}")]
    Task {
        /// The task's key.
        key: String,
        /// What is wrong.
        #[source]
        source: Box<RecurringError>,
    },
    /// A task file could not be read or parsed.
    #[error("recurring task file {path}: {problem}")]
    File {
        /// The file's path.
        path: String,
        /// What is wrong (I/O error, syntax error, unknown field).
        problem: String,
    },
}

impl RecurringError {
    fn task(key: &str, source: RecurringError) -> RecurringError {
        RecurringError::Task { key: key.to_string(), source: Box::new(source) }
    }
}

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
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
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

/// What a scheduler does, when it starts, about the runs missed while no scheduler ran (known
/// from the last run recorded for the task).
///
/// In a task file: `run_missed = "latest"` or `true` (run the latest missed run once, at
/// once), `"skip"` or `false` (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMissed {
    /// Missed runs are skipped; the next run is the next on schedule.
    #[default]
    Skip,
    /// The latest missed run is enqueued once when a scheduler starts (nothing is missed for
    /// a task that never ran).
    Latest,
}

impl RunMissed {
    /// `skip` or `latest`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMissed::Skip => "skip",
            RunMissed::Latest => "latest",
        }
    }

    /// Parses `skip`/`false`/`no` or `latest`/`true`/`yes`.
    pub fn parse(text: &str) -> Result<RunMissed, RecurringError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "skip" | "false" | "no" | "none" => Ok(RunMissed::Skip),
            "latest" | "true" | "yes" => Ok(RunMissed::Latest),
            _ => Err(RecurringError::Invalid(format!("run_missed {text:?} is not one of: latest, skip, true, false"))),
        }
    }
}

impl<'de> Deserialize<'de> for RunMissed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            Word(String),
        }
        match Form::deserialize(deserializer)? {
            Form::Flag(true) => Ok(RunMissed::Latest),
            Form::Flag(false) => Ok(RunMissed::Skip),
            Form::Word(word) => RunMissed::parse(&word).map_err(serde::de::Error::custom),
        }
    }
}

/// A job enqueued on a schedule. Built with [`RecurringTask::new`] and its setters; given to
/// the runtime with `Runtime::recurring` (a static task), or added at runtime through
/// `RecurringTasks` or `solidq recurring add` (a dynamic task).
#[derive(Debug, Clone, PartialEq)]
pub struct RecurringTask {
    /// Unique name of the task; runs are recorded under it.
    pub key: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Kind of the job it enqueues (selects the handler).
    pub kind: String,
    /// The job's arguments (default `null`, which a unit struct reads; a struct job needs an
    /// object).
    pub arguments: serde_json::Value,
    /// Queue of the job (default `default`).
    pub queue: String,
    /// Priority of the job (default 0; lower runs first).
    pub priority: i32,
    /// Time zone in which cron fields are read (default UTC).
    pub time_zone: Tz,
    /// What a starting scheduler does about missed runs (default: skip them).
    pub run_missed: RunMissed,
}

impl RecurringTask {
    /// A task named `key` enqueueing jobs of `kind` on `schedule` (see [`Schedule::parse`]),
    /// with `null` arguments, on queue `default`, priority 0, in UTC, skipping missed runs.
    pub fn new(key: &str, schedule: &str, kind: &str) -> Result<RecurringTask, RecurringError> {
        let task = RecurringTask {
            key: key.trim().to_string(),
            schedule: Schedule::parse(schedule).map_err(|err| RecurringError::task(key, err))?,
            kind: kind.trim().to_string(),
            arguments: serde_json::Value::Null,
            queue: "default".into(),
            priority: 0,
            time_zone: Tz::UTC,
            run_missed: RunMissed::Skip,
        };
        match task.problem() {
            Some(problem) => Err(RecurringError::task(key, RecurringError::Invalid(problem))),
            None => Ok(task),
        }
    }

    /// The job's arguments.
    pub fn arguments(mut self, arguments: serde_json::Value) -> Self {
        self.arguments = arguments;
        self
    }

    /// The job's queue (checked when the task is stored or the runtime starts).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// The job's priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Reads the cron fields in the IANA time zone `name`.
    pub fn time_zone(mut self, name: &str) -> Result<Self, RecurringError> {
        self.time_zone = parse_time_zone(name).map_err(|err| RecurringError::task(&self.key, err))?;
        Ok(self)
    }

    /// What a starting scheduler does about missed runs.
    pub fn run_missed(mut self, run_missed: RunMissed) -> Self {
        self.run_missed = run_missed;
        self
    }

    /// What is wrong with this task, if anything: a key, kind or queue name that breaks the
    /// rules of names ([`name_problem`], [`queue_name_problem`]).
    pub fn problem(&self) -> Option<String> {
        name_problem("task key", &self.key)
            .or_else(|| name_problem("kind", &self.kind))
            .or_else(|| queue_name_problem(&self.queue))
    }

    /// The first run strictly after `after` (UTC).
    pub fn next_run_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.next_after(after, self.time_zone)
    }

    /// Where a scheduler that starts watching this task at `now` begins, given the last run
    /// recorded for it (`last`). A run due in the current second is not missed; earlier runs
    /// since `last` are, and [`RunMissed::Latest`] enqueues the latest of them.
    pub fn start(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Start {
        let floor = whole_second(now);
        let mut from = floor - chrono::Duration::seconds(1);
        if let Some(last) = last {
            from = from.max(last);
        }
        let catch_up = match (self.run_missed, last) {
            (RunMissed::Latest, Some(last)) => {
                self.schedule.latest_before(floor, self.time_zone).filter(|missed| *missed > last)
            }
            _ => None,
        };
        Start { catch_up, next: self.next_run_after(from) }
    }

    /// The runs to enqueue at `now` for a scheduler whose next run of this task is `next`:
    /// every run due within [`ON_TIME_WINDOW`] of `now` (at most [`MAX_RUNS_PER_PASS`]), or,
    /// when all due runs are older, the latest of them; and the next run after those.
    pub fn due(&self, next: DateTime<Utc>, now: DateTime<Utc>) -> Due {
        let mut due = Due { runs: Vec::new(), skipped: None, next: Some(next) };
        if next > now {
            return due;
        }
        let window = chrono::Duration::from_std(ON_TIME_WINDOW).unwrap_or_default();
        let window_start = now - window;
        let mut cursor = Some(next);
        if next < window_start {
            let latest_old = self.schedule.latest_before(window_start, self.time_zone).unwrap_or(next);
            cursor = self.schedule.at_or_after(window_start, self.time_zone);
            if cursor.is_none_or(|at| at > now) {
                // Nothing is due within the window: the latest overdue run still runs, late.
                due.runs.push(latest_old);
                if latest_old > next {
                    let last_skipped = self.schedule.latest_before(latest_old, self.time_zone).unwrap_or(next);
                    due.skipped = Some((next, last_skipped));
                }
            } else {
                due.skipped = Some((next, latest_old));
            }
        }
        while let Some(at) = cursor.filter(|at| *at <= now) {
            if due.runs.len() >= MAX_RUNS_PER_PASS {
                break;
            }
            due.runs.push(at);
            cursor = self.next_run_after(at);
        }
        due.next = cursor;
        due
    }
}

/// Where a scheduler begins with a task (see [`RecurringTask::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// A missed run to enqueue at once ([`RunMissed::Latest`]).
    pub catch_up: Option<DateTime<Utc>>,
    /// The next run on schedule (`None`: the schedule never matches again).
    pub next: Option<DateTime<Utc>>,
}

/// What is due (see [`RecurringTask::due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Run times to enqueue, oldest first.
    pub runs: Vec<DateTime<Utc>>,
    /// The first and last run times skipped as too late, if any were.
    pub skipped: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The next run after these.
    pub next: Option<DateTime<Utc>>,
}

/// One task of a task file, keyed by its name in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDefinition {
    kind: String,
    schedule: String,
    #[serde(default, alias = "args")]
    arguments: Option<serde_json::Value>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, alias = "timezone")]
    time_zone: Option<String>,
    #[serde(default)]
    run_missed: Option<RunMissed>,
}

impl TaskDefinition {
    fn into_task(self, key: &str) -> Result<RecurringTask, RecurringError> {
        let mut task = RecurringTask::new(key, &self.schedule, &self.kind)?;
        if let Some(arguments) = self.arguments {
            task.arguments = arguments;
        }
        if let Some(queue) = self.queue {
            task.queue = queue;
        }
        if let Some(priority) = self.priority {
            task.priority = priority;
        }
        if let Some(zone) = self.time_zone {
            task = task.time_zone(&zone)?;
        }
        task.run_missed = self.run_missed.unwrap_or_default();
        match task.problem() {
            Some(problem) => Err(RecurringError::task(key, RecurringError::Invalid(problem))),
            None => Ok(task),
        }
    }
}

/// Reads a task file (`SOLIDQ_RECURRING`): TOML when its name ends in `.toml`, JSON when in
/// `.json`. Each top-level table (TOML) or member (JSON) is one task, named by its key:
///
/// ```toml
/// [nightly-report]
/// kind = "reports.nightly"          # required: the job's kind
/// schedule = "30 2 * * *"           # required: cron (5 or 6 fields) or "every 30s"
/// time_zone = "Europe/Berlin"       # default UTC
/// arguments = { format = "pdf" }    # the job's JSON arguments, default null
/// queue = "reports"                 # default "default"
/// priority = 5                      # default 0
/// run_missed = "latest"             # or true; default "skip" (false)
/// ```
///
/// Returns the tasks ordered by key, or every problem found (one per line).
pub fn load_file(path: &Path) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let shown = path.display().to_string();
    let file_error = |problem: String| vec![RecurringError::File { path: shown.clone(), problem }];
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let text = std::fs::read_to_string(path).map_err(|err| file_error(format!("cannot be read: {err}")))?;
    let definitions: BTreeMap<String, TaskDefinition> = match extension.as_deref() {
        Some("toml") => {
            toml::from_str(&text).map_err(|err| file_error(format!("is not valid: {}", err.to_string().trim())))?
        }
        Some("json") => serde_json::from_str(&text).map_err(|err| file_error(format!("is not valid: {err}")))?,
        _ => return Err(file_error("has neither a .toml nor a .json extension".into())),
    };
    parse_definitions(definitions)
}

/// Reads tasks from the text of a task file in `format` (`toml` or `json`), as
/// [`load_file`] does.
pub fn parse_tasks(text: &str, format: &str) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let text_error = |problem: String| vec![RecurringError::File { path: format!("({format})"), problem }];
    let definitions: BTreeMap<String, TaskDefinition> = match format {
        "toml" => {
            toml::from_str(text).map_err(|err| text_error(format!("is not valid: {}", err.to_string().trim())))?
        }
        "json" => serde_json::from_str(text).map_err(|err| text_error(format!("is not valid: {err}")))?,
        _ => return Err(text_error("is neither toml nor json".into())),
    };
    parse_definitions(definitions)
}

fn parse_definitions(definitions: BTreeMap<String, TaskDefinition>) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    for (key, definition) in definitions {
        match definition.into_task(&key) {
            Ok(task) => tasks.push(task),
            Err(err) => problems.push(err),
        }
    }
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(problems)
    }
}

/// `at` (a run time, UTC) in `zone`, for logs and listings.
pub fn local_time(at: DateTime<Utc>, zone: Tz) -> String {
    zone.from_utc_datetime(&at.naive_utc()).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// Every run of `task` from `from` to `to` (UTC), in order.
    fn runs_between(task: &RecurringTask, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut runs = Vec::new();
        let mut cursor = from;
        while let Some(next) = task.next_run_after(cursor).filter(|at| *at <= to) {
            runs.push(next);
            cursor = next;
        }
        runs
    }

    /// The runs of `task` whose local date in its zone is `day`.
    fn runs_on_local_day(task: &RecurringTask, day: NaiveDate) -> Vec<String> {
        let from = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap()) - chrono::Duration::days(2);
        let to = from + chrono::Duration::days(4);
        runs_between(task, from, to)
            .into_iter()
            .filter(|at| at.with_timezone(&task.time_zone).date_naive() == day)
            .map(|at| local_time(at, task.time_zone))
            .collect()
    }

    #[test]
    fn cron_schedules_of_five_and_six_fields_and_nicknames() {
        let five = RecurringTask::new("a", "*/15 * * * *", "k").unwrap();
        assert_eq!(five.next_run_after(utc(2026, 1, 1, 10, 7, 30)), Some(utc(2026, 1, 1, 10, 15, 0)));
        let six = RecurringTask::new("b", "*/20 * * * * *", "k").unwrap();
        assert_eq!(six.next_run_after(utc(2026, 1, 1, 10, 7, 30)), Some(utc(2026, 1, 1, 10, 7, 40)));
        let daily = RecurringTask::new("c", "@daily", "k").unwrap();
        assert_eq!(daily.next_run_after(utc(2026, 1, 1, 10, 0, 0)), Some(utc(2026, 1, 2, 0, 0, 0)));
        let named = RecurringTask::new("d", "0 9 * * MON", "k").unwrap();
        // 2026-01-01 is a Thursday: the next Monday is the 5th.
        assert_eq!(named.next_run_after(utc(2026, 1, 1, 10, 0, 0)), Some(utc(2026, 1, 5, 9, 0, 0)));
        // Strictly after: a run exactly at `after` is not next.
        assert_eq!(five.next_run_after(utc(2026, 1, 1, 10, 15, 0)), Some(utc(2026, 1, 1, 10, 30, 0)));
        assert_eq!(
            five.next_run_after(utc(2026, 1, 1, 10, 14, 59) + chrono::Duration::milliseconds(999)),
            Some(utc(2026, 1, 1, 10, 15, 0))
        );
    }

    #[test]
    fn bad_schedules_name_the_problem_and_the_accepted_form() {
        for (text, problem) in [
            ("", "is empty"),
            ("* * *", "has 3 fields"),
            ("0 0 0 * * * 2026", "has 7 fields"),
            ("61 * * * *", "is not a cron expression"),
            ("* * * * FOO", "is not a cron expression"),
            ("every", "has no unit"),
            ("every 10", "has no unit"),
            ("every s", "has no number"),
            ("every 0s", "zero"),
            ("every 5w", "unit \"w\""),
            ("every -5s", "unit"),
            ("every 400d", "longer than 366 days"),
            ("every 99999999999999999999999s", "too large"),
        ] {
            let err = Schedule::parse(text).expect_err(text).to_string();
            assert!(err.contains(problem), "{text:?}: {err}");
            assert!(err.contains("every <n>s|m|h|d"), "{text:?}: {err}");
        }
        let err = RecurringTask::new("nightly", "* * *", "k").unwrap_err().to_string();
        assert!(err.starts_with("recurring task \"nightly\": schedule \"* * *\" has 3 fields"), "{err}");
    }

    #[test]
    fn every_is_anchored_at_the_epoch() {
        for (text, seconds) in [
            ("every 30s", 30),
            ("every 1s", 1),
            ("every 5m", 300),
            ("every 5 minutes", 300),
            ("every 2h", 7200),
            ("every hour", 3600),
            ("every 1d", 86_400),
            ("EVERY 7S", 7),
        ] {
            let schedule = Schedule::parse(text).unwrap();
            assert_eq!(schedule.every(), Some(Duration::from_secs(seconds)), "{text}");
            let after = utc(2026, 3, 8, 7, 13, 21);
            let next = schedule.next_after(after, Tz::America__New_York).unwrap();
            assert_eq!(next.timestamp() % seconds as i64, 0, "{text}: a multiple of the interval since the epoch");
            assert!(next > after && next.timestamp() - after.timestamp() <= seconds as i64, "{text}");
            let previous = schedule.latest_before(next, Tz::UTC).unwrap();
            assert_eq!(next.timestamp() - previous.timestamp(), seconds as i64, "{text}");
        }
        // Two schedulers, whenever they start, compute the same run times.
        let task = RecurringTask::new("e", "every 7s", "k").unwrap();
        let a = runs_between(&task, utc(2026, 1, 1, 0, 0, 3), utc(2026, 1, 1, 0, 1, 0));
        let b = runs_between(&task, utc(2026, 1, 1, 0, 0, 17), utc(2026, 1, 1, 0, 1, 0));
        assert!(a.ends_with(&b));
        assert!(a.iter().all(|at| at.timestamp() % 7 == 0));
    }

    #[test]
    fn cron_fields_are_read_in_the_time_zone() {
        let task = RecurringTask::new("tz", "0 9 * * *", "k").unwrap().time_zone("Asia/Tokyo").unwrap();
        assert_eq!(task.next_run_after(utc(2026, 1, 1, 12, 0, 0)), Some(utc(2026, 1, 2, 0, 0, 0)));
        let err =
            RecurringTask::new("tz", "0 9 * * *", "k").unwrap().time_zone("Europe/Berln").unwrap_err().to_string();
        assert!(err.contains("\"Europe/Berln\" is not an IANA time zone name"), "{err}");
    }

    #[test]
    fn spring_forward_runs_a_task_in_the_skipped_hour_once() {
        // America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let task = RecurringTask::new("sf", "30 2 * * *", "k").unwrap().time_zone("America/New_York").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(runs_on_local_day(&task, day), ["2026-03-08 03:00:00 EDT"]);
        assert_eq!(runs_on_local_day(&task, day.pred_opt().unwrap()), ["2026-03-07 02:30:00 EST"]);
        assert_eq!(runs_on_local_day(&task, day.succ_opt().unwrap()), ["2026-03-09 02:30:00 EDT"]);
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let berlin = RecurringTask::new("sf", "30 2 * * *", "k").unwrap().time_zone("Europe/Berlin").unwrap();
        assert_eq!(
            runs_on_local_day(&berlin, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()),
            ["2026-03-29 03:00:00 CEST"]
        );
        // A task of many times a day follows real time: none in the hour that does not exist.
        let quarterly = RecurringTask::new("q", "*/15 * * * *", "k").unwrap().time_zone("America/New_York").unwrap();
        assert_eq!(runs_on_local_day(&quarterly, day).len(), 23 * 4);
    }

    #[test]
    fn fall_back_runs_a_task_in_the_repeated_hour_once() {
        // America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00–01:59 twice.
        let task = RecurringTask::new("fb", "30 1 * * *", "k").unwrap().time_zone("America/New_York").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(runs_on_local_day(&task, day), ["2026-11-01 01:30:00 EDT"]);
        // Even for a scheduler that starts between the two 01:30s.
        let between = utc(2026, 11, 1, 6, 0, 0); // 01:00 EST, the second pass
        assert_eq!(task.next_run_after(between), Some(utc(2026, 11, 2, 6, 30, 0)));
        // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET.
        let berlin = RecurringTask::new("fb", "30 2 * * *", "k").unwrap().time_zone("Europe/Berlin").unwrap();
        assert_eq!(
            runs_on_local_day(&berlin, NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()),
            ["2026-10-25 02:30:00 CEST"]
        );
        // A task of many times a day follows real time: both halves of the repeated hour.
        let quarterly = RecurringTask::new("q", "*/15 * * * *", "k").unwrap().time_zone("America/New_York").unwrap();
        assert_eq!(runs_on_local_day(&quarterly, day).len(), 25 * 4);
    }

    #[test]
    fn a_starting_scheduler_skips_missed_runs_or_runs_the_latest() {
        let task = RecurringTask::new("m", "every 1m", "k").unwrap();
        let now = utc(2026, 1, 1, 12, 5, 30);
        let last = Some(utc(2026, 1, 1, 12, 1, 0));
        assert_eq!(task.start(last, now), Start { catch_up: None, next: Some(utc(2026, 1, 1, 12, 6, 0)) });
        let latest = task.clone().run_missed(RunMissed::Latest);
        assert_eq!(latest.start(last, now).catch_up, Some(utc(2026, 1, 1, 12, 5, 0)));
        // Nothing missed: the last run is the latest due.
        assert_eq!(latest.start(Some(utc(2026, 1, 1, 12, 5, 0)), now).catch_up, None);
        // A task that never ran missed nothing.
        assert_eq!(latest.start(None, now).catch_up, None);
        // A run due in this very second is not missed.
        let on_the_minute = utc(2026, 1, 1, 12, 6, 0) + chrono::Duration::milliseconds(300);
        assert_eq!(task.start(last, on_the_minute).next, Some(utc(2026, 1, 1, 12, 6, 0)));
        // Another scheduler already ran past now: start after its last run.
        assert_eq!(task.start(Some(utc(2026, 1, 1, 12, 6, 0)), on_the_minute).next, Some(utc(2026, 1, 1, 12, 7, 0)));
    }

    #[test]
    fn a_running_scheduler_catches_up_within_the_window_and_runs_the_latest_of_older_runs() {
        let task = RecurringTask::new("d", "every 1s", "k").unwrap();
        let next = utc(2026, 1, 1, 12, 0, 0);
        assert!(task.due(next, next - chrono::Duration::milliseconds(1)).runs.is_empty());
        let on_time = task.due(next, next + chrono::Duration::milliseconds(2_500));
        assert_eq!(on_time.runs, [next, utc(2026, 1, 1, 12, 0, 1), utc(2026, 1, 1, 12, 0, 2)]);
        assert_eq!((on_time.skipped, on_time.next), (None, Some(utc(2026, 1, 1, 12, 0, 3))));
        // Woken a minute late: the runs of the last 10 s, the rest skipped.
        let late = task.due(next, next + chrono::Duration::seconds(60));
        assert_eq!(late.runs.len(), 11);
        assert_eq!(late.skipped, Some((next, utc(2026, 1, 1, 12, 0, 49))));
        // A daily run held up by a 40 s database outage still runs, late.
        let daily = RecurringTask::new("n", "0 3 * * *", "k").unwrap();
        let due = daily.due(utc(2026, 1, 1, 3, 0, 0), utc(2026, 1, 1, 3, 0, 40));
        assert_eq!(due.runs, [utc(2026, 1, 1, 3, 0, 0)]);
        assert_eq!((due.skipped, due.next), (None, Some(utc(2026, 1, 2, 3, 0, 0))));
    }

    #[test]
    fn task_files_in_toml_and_json() {
        let toml = r#"
            [nightly]
            kind = "reports.nightly"
            schedule = "30 2 * * *"
            time_zone = "Europe/Berlin"
            arguments = { format = "pdf" }
            queue = "reports"
            priority = 5
            run_missed = "latest"

            [ping]
            kind = "ping"
            schedule = "every 30s"
            run_missed = true
        "#;
        let tasks = parse_tasks(toml, "toml").unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].key, "nightly");
        assert_eq!(tasks[0].arguments, serde_json::json!({"format": "pdf"}));
        assert_eq!((tasks[0].queue.as_str(), tasks[0].priority), ("reports", 5));
        assert_eq!(tasks[0].time_zone, Tz::Europe__Berlin);
        assert_eq!(tasks[1].run_missed, RunMissed::Latest);
        assert_eq!(tasks[1].arguments, serde_json::Value::Null);
        let json = r#"{"ping": {"kind": "ping", "schedule": "every 30s", "args": [1, 2]}}"#;
        assert_eq!(parse_tasks(json, "json").unwrap()[0].arguments, serde_json::json!([1, 2]));

        let bad = r#"
            [a]
            kind = "k"
            schedule = "* *"
            [b]
            kind = "k"
            schedule = "every 1m"
            time_zone = "Nowhere/City"
            [c]
            kind = "k"
            schedule = "every 1m"
            clas = "typo"
        "#;
        let problems: Vec<String> = parse_tasks(bad, "toml").unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 1, "an unknown field fails the whole file: {problems:?}");
        assert!(problems[0].contains("clas"), "{problems:?}");
        let problems: Vec<String> = parse_tasks(&bad.replace("clas = \"typo\"", ""), "toml")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("recurring task \"a\": schedule \"* *\" has 2 fields"), "{problems:?}");
        assert!(problems[1].contains("\"Nowhere/City\" is not an IANA time zone"), "{problems:?}");
        let queue = parse_tasks(r#"{"q": {"kind": "k", "schedule": "every 1m", "queue": "a*"}}"#, "json").unwrap_err();
        assert!(queue[0].to_string().contains("queue name \"a*\""), "{queue:?}");
    }
}
