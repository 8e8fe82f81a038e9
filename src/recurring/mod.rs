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
//! Here: the task and its runs' arithmetic (this file), schedules ([`schedule`](Schedule)),
//! task files ([`load_file`]) and the handle that adds and removes dynamic tasks at runtime
//! ([`RecurringTasks`]). The store writes tasks and runs (`solidq_recurring_tasks`,
//! `solidq_recurring_executions`), and the scheduler service
//! (`maintenance::scheduler`) of every runtime process enqueues them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::model::{name_problem, queue_name_problem};

mod error;
mod file;
mod handle;
mod schedule;

pub use error::{RecurringError, SCHEDULE_FORM, TIME_ZONE_FORM};
pub use file::{load_file, parse_tasks};
pub use handle::RecurringTasks;
use schedule::whole_second;
pub use schedule::{local_time, parse_time_zone, Schedule, MAX_EVERY};

/// While a scheduler runs, a run it enqueues up to this late still counts as on time: all runs
/// due within this window are enqueued (a scheduler woken late, or held up by the database,
/// catches up). Of runs due longer ago only the latest is enqueued; the others are skipped.
pub const ON_TIME_WINDOW: Duration = Duration::from_secs(10);

/// At most this many runs of one task are enqueued in one pass.
pub const MAX_RUNS_PER_PASS: usize = 100;

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// Task `name` on `schedule` in time zone `zone`.
    fn zoned(name: &str, schedule: &str, zone: &str) -> RecurringTask {
        RecurringTask::new(name, schedule, "k").unwrap().time_zone(zone).unwrap()
    }

    /// The runs of `task` on the local day `y-mo-d`.
    fn runs_on(task: &RecurringTask, y: i32, mo: u32, d: u32) -> Vec<String> {
        runs_on_local_day(task, NaiveDate::from_ymd_opt(y, mo, d).unwrap())
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
        let task = zoned("tz", "0 9 * * *", "Asia/Tokyo");
        assert_eq!(task.next_run_after(utc(2026, 1, 1, 12, 0, 0)), Some(utc(2026, 1, 2, 0, 0, 0)));
        let err =
            RecurringTask::new("tz", "0 9 * * *", "k").unwrap().time_zone("Europe/Berln").unwrap_err().to_string();
        assert!(err.contains("\"Europe/Berln\" is not an IANA time zone name"), "{err}");
    }

    #[test]
    fn spring_forward_runs_a_task_in_the_skipped_hour_once() {
        // America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let task = zoned("sf", "30 2 * * *", "America/New_York");
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(runs_on_local_day(&task, day), ["2026-03-08 03:00:00 EDT"]);
        assert_eq!(runs_on_local_day(&task, day.pred_opt().unwrap()), ["2026-03-07 02:30:00 EST"]);
        assert_eq!(runs_on_local_day(&task, day.succ_opt().unwrap()), ["2026-03-09 02:30:00 EDT"]);
        // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let berlin = zoned("sf", "30 2 * * *", "Europe/Berlin");
        assert_eq!(runs_on(&berlin, 2026, 3, 29), ["2026-03-29 03:00:00 CEST"]);
        // A task of many times a day follows real time: none in the hour that does not exist.
        let quarterly = zoned("q", "*/15 * * * *", "America/New_York");
        assert_eq!(runs_on_local_day(&quarterly, day).len(), 23 * 4);
    }

    #[test]
    fn fall_back_runs_a_task_in_the_repeated_hour_once() {
        // America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00–01:59 twice.
        let task = zoned("fb", "30 1 * * *", "America/New_York");
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(runs_on_local_day(&task, day), ["2026-11-01 01:30:00 EDT"]);
        // Even for a scheduler that starts between the two 01:30s.
        let between = utc(2026, 11, 1, 6, 0, 0); // 01:00 EST, the second pass
        assert_eq!(task.next_run_after(between), Some(utc(2026, 11, 2, 6, 30, 0)));
        // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET.
        let berlin = zoned("fb", "30 2 * * *", "Europe/Berlin");
        assert_eq!(runs_on(&berlin, 2026, 10, 25), ["2026-10-25 02:30:00 CEST"]);
        // A task of many times a day follows real time: both halves of the repeated hour.
        let quarterly = zoned("q", "*/15 * * * *", "America/New_York");
        assert_eq!(runs_on_local_day(&quarterly, day).len(), 25 * 4);
    }
}
