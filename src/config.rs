//! Configuration from `SOLIDQ_*` environment variables: defaults, validation, and errors that
//! name the variable, the value and the accepted form.
//!
//! | Variable | Accepted form | Default |
//! |---|---|---|
//! | `SOLIDQ_DATABASE_URL` | `sqlite://relative/path`, `sqlite:///absolute/path`, `postgres://…`, `postgresql://…` | `sqlite://solidq.sqlite3` |
//! | `SOLIDQ_POOL_SIZE` | whole number ≥ 1 | worker groups + 8 (see [`default_pool_size`]) |
//! | `SOLIDQ_WORKERS` | `queue[,queue…]:concurrency` groups separated by `;`; a queue may be `*` or `prefix*` | `*:200` |
//! | `SOLIDQ_POLLING_INTERVAL` | duration > 0 | `100ms` |
//! | `SOLIDQ_DISPATCHER_BATCH_SIZE` | whole number ≥ 1 | `500` |
//! | `SOLIDQ_DISPATCHER_POLLING_INTERVAL` | duration > 0 | `1s` |
//! | `SOLIDQ_HEARTBEAT_INTERVAL` | duration > 0 | `30s` |
//! | `SOLIDQ_ALIVE_THRESHOLD` | duration ≥ 2 × `SOLIDQ_HEARTBEAT_INTERVAL` | `5m` |
//! | `SOLIDQ_WATCHDOG_INTERVAL` | duration > 0 | `1s` |
//! | `SOLIDQ_SHUTDOWN_TIMEOUT` | duration (`0` = do not wait) | `5s` |
//! | `SOLIDQ_AUTO_MIGRATE` | `true`, `false`, `1`, `0`, `yes`, `no` | `true` |
//! | `SOLIDQ_ON_PROCESS_DEATH` | `retry` or `fail` | `retry` |
//! | `SOLIDQ_LOG` | `trace`, `debug`, `info`, `warn`, `error`, `critical` | `info` |
//! | `SOLIDQ_LOG_FORMAT` | `term` or `json` | `term` |
//! | `SOLIDQ_PRESERVE_FINISHED_JOBS` | `true`, `false`, `1`, `0`, `yes`, `no` | `true` |
//! | `SOLIDQ_CLEAR_FINISHED_AFTER` | duration from 1s to 3650d | `1d` |
//! | `SOLIDQ_RECURRING` | path of a `.toml` or `.json` file of recurring tasks (see [`crate::recurring::load_file`]) | none |
//! | `SOLIDQ_SCHEDULER` | `true`, `false`, `1`, `0`, `yes`, `no`: run the scheduler of recurring tasks in this process | `true` |
//!
//! Durations are written `500ms`, `10s`, `5m`, `1h`, combinations such as `2m30s`, or bare
//! seconds (`30`, `1.5`). A variable set to an empty value is an error rather than a silent
//! fallback to the default: unset it to get the default.
//!
//! ```
//! use std::time::Duration;
//! use solidq::config::Config;
//!
//! let config = Config::from_lookup(|name| match name {
//!     "SOLIDQ_WORKERS" => Some("critical,default:5;reports*:2".to_string()),
//!     "SOLIDQ_HEARTBEAT_INTERVAL" => Some("10s".to_string()),
//!     _ => None,
//! })
//! .unwrap();
//! assert_eq!(config.total_concurrency(), 7);
//! assert_eq!(config.heartbeat_interval, Duration::from_secs(10));
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::database_url::redact_url;
use crate::model::duration::parse_duration_detailed;
pub use crate::model::duration::{format_duration, parse_duration};
pub use crate::model::{DatabaseUrl, WorkerGroup};
use crate::model::{DeathPolicy, Malformed, QueuePattern};
use crate::recurring::RecurringTask;

/// Default database when `SOLIDQ_DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://solidq.sqlite3";
/// Default `SOLIDQ_WORKERS`: one group for every queue, up to 200 jobs held at once. Async
/// handlers wait side by side on one thread, so two hundred waiting jobs cost little. For
/// short jobs the concurrency bounds a process's rate: it is about the concurrency divided by
/// the time of one claim's round trip (1.5 to 2.5 ms on PostgreSQL), so 200 drains about 1.3
/// times as fast as 100 (see BENCHMARKS.md). Set a lower number when each job holds
/// something scarce (a pooled connection, a CPU core) or when a handler runs its jobs one at a
/// time (an actor whose handler returns a plain `Result`; `register_sync(n, …)` runs `n`):
/// the process holds up to this many claims whatever its handlers can run, and jobs held in a
/// handler's mailbox are jobs other processes cannot take.
pub const DEFAULT_WORKERS: &str = "*:200";
/// The smallest default `SOLIDQ_POOL_SIZE` (see [`default_pool_size`]).
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// Connections a process uses at once beside its workers' claims: the completer, the
/// heartbeat, the dispatcher, the watchdog, the scheduler, the reads of cancel requests, and
/// two for enqueues through the runtime's store (an actix-web app's `runtime.queue()`).
pub const POOL_BESIDE_WORKERS: u32 = 8;

/// `SOLIDQ_POOL_SIZE` when it is unset: one connection per worker group (each has one claim
/// under way at a time) and [`POOL_BESIDE_WORKERS`], at least [`DEFAULT_POOL_SIZE`]. More
/// connections do not make a drain faster (BENCHMARKS.md); on PostgreSQL each is a server
/// process held open for the life of the runtime.
///
/// ```
/// assert_eq!(solidq::config::default_pool_size(1), 9);
/// assert_eq!(solidq::config::default_pool_size(4), 12);
/// ```
pub fn default_pool_size(worker_groups: usize) -> u32 {
    let groups = u32::try_from(worker_groups).unwrap_or(u32::MAX);
    groups.saturating_add(POOL_BESIDE_WORKERS).clamp(DEFAULT_POOL_SIZE, *limits::POOL_SIZE.end())
}
/// Default `SOLIDQ_POLLING_INTERVAL`.
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_millis(100);
/// Default `SOLIDQ_DISPATCHER_BATCH_SIZE`.
pub const DEFAULT_DISPATCHER_BATCH_SIZE: usize = 500;
/// Default `SOLIDQ_DISPATCHER_POLLING_INTERVAL`.
pub const DEFAULT_DISPATCHER_POLLING_INTERVAL: Duration = Duration::from_secs(1);
/// Default `SOLIDQ_HEARTBEAT_INTERVAL`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Default `SOLIDQ_ALIVE_THRESHOLD`.
pub const DEFAULT_ALIVE_THRESHOLD: Duration = Duration::from_secs(300);
/// Default `SOLIDQ_WATCHDOG_INTERVAL`.
pub const DEFAULT_WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);
/// Default `SOLIDQ_CLEAR_FINISHED_AFTER`: one day.
pub const DEFAULT_CLEAR_FINISHED_AFTER: Duration = Duration::from_secs(86_400);
/// Default `SOLIDQ_SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Term,
    /// One JSON object per line.
    Json,
}

/// Everything the runtime reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `SOLIDQ_DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `SOLIDQ_POOL_SIZE`: connections per pool; unset, [`default_pool_size`] of the worker
    /// groups.
    pub pool_size: u32,
    /// `SOLIDQ_WORKERS`.
    pub workers: Vec<WorkerGroup>,
    /// `SOLIDQ_POLLING_INTERVAL`: how often an idle worker polls.
    pub polling_interval: Duration,
    /// `SOLIDQ_DISPATCHER_BATCH_SIZE`.
    pub dispatcher_batch_size: usize,
    /// `SOLIDQ_DISPATCHER_POLLING_INTERVAL`.
    pub dispatcher_polling_interval: Duration,
    /// `SOLIDQ_HEARTBEAT_INTERVAL`.
    pub heartbeat_interval: Duration,
    /// `SOLIDQ_ALIVE_THRESHOLD`: a process silent for longer is dead.
    pub alive_threshold: Duration,
    /// `SOLIDQ_WATCHDOG_INTERVAL`: how often the watchdog looks for dead processes.
    pub watchdog_interval: Duration,
    /// `SOLIDQ_SHUTDOWN_TIMEOUT`: how long TERM waits for running jobs.
    pub shutdown_timeout: Duration,
    /// `SOLIDQ_AUTO_MIGRATE`: apply pending migrations at start.
    pub auto_migrate: bool,
    /// `SOLIDQ_PID_PROBE`: judge processes registered from this host and PID namespace dead as
    /// soon as their pid is gone. Turn off to rely on session locks and heartbeats only.
    pub pid_probe: bool,
    /// `SOLIDQ_ON_PROCESS_DEATH`: `retry` or `fail`.
    pub on_process_death: DeathPolicy,
    /// `SOLIDQ_LOG`: `trace`, `debug`, `info`, `warn`, `error` or `critical`.
    pub log_level: slog::Level,
    /// `SOLIDQ_LOG_FORMAT`: `term` or `json`.
    pub log_format: LogFormat,
    /// `SOLIDQ_PRESERVE_FINISHED_JOBS`: keep ended jobs (finished, discarded, cancelled) until
    /// `clear_finished_after`; `false` deletes them on the dispatcher's next pass.
    pub preserve_finished_jobs: bool,
    /// `SOLIDQ_CLEAR_FINISHED_AFTER`: how long ended jobs are kept.
    pub clear_finished_after: Duration,
    /// `SOLIDQ_RECURRING`: the file the static recurring tasks were read from.
    pub recurring_file: Option<PathBuf>,
    /// The static recurring tasks of `SOLIDQ_RECURRING` (checked when the configuration is
    /// read), ordered by key.
    pub recurring_tasks: Vec<RecurringTask>,
    /// `SOLIDQ_SCHEDULER`: run the scheduler of recurring tasks in this process (it writes the
    /// static tasks at start and enqueues the runs; any number of processes may run one).
    pub scheduler: bool,
}

/// The accepted range of each knob: wide enough for any real deployment, narrow enough that
/// a typo (a pool of 100000 connections, a 1 µs polling interval, 99999999999 h) is named at
/// start instead of exhausting the database server or a CPU.
pub mod limits {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// `SOLIDQ_POOL_SIZE`: connections per pool.
    pub const POOL_SIZE: RangeInclusive<u32> = 1..=512;
    /// The concurrency of one `SOLIDQ_WORKERS` group.
    pub const CONCURRENCY: RangeInclusive<usize> = 1..=10_000;
    /// `SOLIDQ_DISPATCHER_BATCH_SIZE`.
    pub const DISPATCHER_BATCH_SIZE: RangeInclusive<usize> = 1..=10_000;
    /// `SOLIDQ_POLLING_INTERVAL`.
    pub const POLLING_INTERVAL: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);
    /// `SOLIDQ_DISPATCHER_POLLING_INTERVAL`.
    pub const DISPATCHER_POLLING_INTERVAL: RangeInclusive<Duration> =
        Duration::from_millis(10)..=Duration::from_secs(3600);
    /// `SOLIDQ_HEARTBEAT_INTERVAL`.
    pub const HEARTBEAT_INTERVAL: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(3600);
    /// `SOLIDQ_ALIVE_THRESHOLD`.
    pub const ALIVE_THRESHOLD: RangeInclusive<Duration> = Duration::from_millis(200)..=Duration::from_secs(86_400);
    /// `SOLIDQ_WATCHDOG_INTERVAL`.
    pub const WATCHDOG_INTERVAL: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(3600);
    /// `SOLIDQ_SHUTDOWN_TIMEOUT` (0: do not wait).
    pub const SHUTDOWN_TIMEOUT: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(86_400);
    /// `SOLIDQ_CLEAR_FINISHED_AFTER`: a second to ten years.
    pub const CLEAR_FINISHED_AFTER: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(10 * 365 * 86_400);
}

/// What `SOLIDQ_RECURRING` names, shown in error messages.
const RECURRING_FORM: &str = "name a .toml or .json file whose tables are tasks with kind, schedule and optional \
     arguments, queue, priority, time_zone, run_missed";
/// How to write `SOLIDQ_WORKERS`, shown in error messages.
const WORKERS_FORM: &str = "use queue[,queue…]:concurrency groups separated by ';', \
     e.g. critical,default:5;reports*:2 (a queue may be * or prefix*)";

/// One variable with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable, e.g. `SOLIDQ_POOL_SIZE`.
    pub variable: &'static str,
    /// The value found (passwords in URLs masked), or the default in effect when the problem
    /// is a combination of variables.
    pub value: String,
    /// What is wrong, e.g. `is not a duration`.
    pub problem: String,
    /// The accepted form, e.g. `use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds`.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?} {} ({})", self.variable, self.value, self.problem, self.expected)
    }
}

/// Every problem found in the environment, not just the first.
///
/// Displays one problem per line:
///
/// ```
/// let err = solidq::config::Config::from_lookup(|name| match name {
///     "SOLIDQ_HEARTBEAT_INTERVAL" => Some("ten".into()),
///     "SOLIDQ_POOL_SIZE" => Some("abc".into()),
///     _ => None,
/// })
/// .unwrap_err();
/// assert_eq!(err.problems.len(), 2);
/// assert!(err.to_string().contains(
///     r#"SOLIDQ_HEARTBEAT_INTERVAL="ten" is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds)"#
/// ));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order the variables are read.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// Whether some problem concerns `variable`.
    pub fn mentions(&self, variable: &str) -> bool {
        self.problems.iter().any(|p| p.variable == variable)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The same readable text as `Display`: a `main` that returns this error prints it with
/// `Debug`, and a structure dump would hide the variable names.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DatabaseUrl::Sqlite(PathBuf::from("solidq.sqlite3")),
            pool_size: default_pool_size(1),
            workers: vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 200 }],
            polling_interval: DEFAULT_POLLING_INTERVAL,
            dispatcher_batch_size: DEFAULT_DISPATCHER_BATCH_SIZE,
            dispatcher_polling_interval: DEFAULT_DISPATCHER_POLLING_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            alive_threshold: DEFAULT_ALIVE_THRESHOLD,
            watchdog_interval: DEFAULT_WATCHDOG_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            auto_migrate: true,
            pid_probe: true,
            on_process_death: DeathPolicy::Retry,
            log_level: slog::Level::Info,
            log_format: LogFormat::Term,
            preserve_finished_jobs: true,
            clear_finished_after: DEFAULT_CLEAR_FINISHED_AFTER,
            recurring_file: None,
            recurring_tasks: Vec::new(),
            scheduler: true,
        }
    }
}

/// Reads variables through a lookup function, collecting problems.
struct Reader<F> {
    lookup: F,
    problems: Vec<ConfigProblem>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// The parsed value of `variable`: `Some(default)` when unset, `None` (problem recorded)
    /// when the value does not parse.
    fn read<T>(
        &mut self,
        variable: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, Malformed>,
    ) -> Option<T> {
        let Some(raw) = (self.lookup)(variable) else {
            return Some(default);
        };
        let result = if raw.trim().is_empty() {
            Err(Malformed::new("is empty", "unset the variable to use the default"))
        } else {
            parse(raw.trim())
        };
        match result {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.problems.push(ConfigProblem {
                    variable,
                    // A URL may carry a password: never echo it.
                    value: redact_url(&raw),
                    problem: invalid.problem,
                    expected: invalid.expected,
                });
                None
            }
        }
    }

    /// Like [`Reader::read`] but keeps the raw text too, for messages about combinations.
    fn read_duration(
        &mut self,
        variable: &'static str,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Option<(Duration, String)> {
        let raw = (self.lookup)(variable);
        let parsed = self.read(variable, default, |text| {
            let duration = parse_duration_detailed(text)?;
            if !range.contains(&duration) {
                let problem = if duration < *range.start() { "is too short" } else { "is too long" };
                let expected = format!(
                    "use from {} to {}, e.g. {}",
                    format_duration(*range.start()),
                    format_duration(*range.end()),
                    format_duration(default)
                );
                return Err(Malformed::new(problem, expected));
            }
            Ok(duration)
        })?;
        let shown = match raw {
            Some(raw) => raw.trim().to_string(),
            None => format_duration(default),
        };
        Some((parsed, shown))
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// A value that is not valid Unicode is reported as malformed, not ignored.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Reads the configuration through `lookup` (a variable name to its value, `None` when
    /// unset), checking every variable and reporting every problem at once.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use solidq::config::{Config, DatabaseUrl};
    ///
    /// let env = HashMap::from([("SOLIDQ_DATABASE_URL", "postgres://app@db/jobs")]);
    /// let config = Config::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
    /// assert_eq!(config.database_url, DatabaseUrl::Postgres("postgres://app@db/jobs".into()));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let mut r = Reader { lookup, problems: Vec::new() };

        let database_url = r.read("SOLIDQ_DATABASE_URL", defaults.database_url.clone(), DatabaseUrl::parse_detailed);
        // Unset: derived from the worker groups once they are read.
        let pool_size = r.read("SOLIDQ_POOL_SIZE", None, |text| parse_count(text, limits::POOL_SIZE, "8").map(Some));
        let workers = r.read("SOLIDQ_WORKERS", defaults.workers.clone(), parse_workers_detail);
        let pool_size =
            pool_size.map(|size| size.unwrap_or_else(|| default_pool_size(workers.as_ref().map_or(1, Vec::len))));
        let polling_interval =
            r.read_duration("SOLIDQ_POLLING_INTERVAL", defaults.polling_interval, limits::POLLING_INTERVAL);
        let dispatcher_batch_size = r.read("SOLIDQ_DISPATCHER_BATCH_SIZE", defaults.dispatcher_batch_size, |text| {
            parse_count(text, limits::DISPATCHER_BATCH_SIZE, "500")
        });
        let dispatcher_polling_interval = r.read_duration(
            "SOLIDQ_DISPATCHER_POLLING_INTERVAL",
            defaults.dispatcher_polling_interval,
            limits::DISPATCHER_POLLING_INTERVAL,
        );
        let heartbeat_interval =
            r.read_duration("SOLIDQ_HEARTBEAT_INTERVAL", defaults.heartbeat_interval, limits::HEARTBEAT_INTERVAL);
        let alive_threshold =
            r.read_duration("SOLIDQ_ALIVE_THRESHOLD", defaults.alive_threshold, limits::ALIVE_THRESHOLD);
        let watchdog_interval =
            r.read_duration("SOLIDQ_WATCHDOG_INTERVAL", defaults.watchdog_interval, limits::WATCHDOG_INTERVAL);
        let shutdown_timeout =
            r.read_duration("SOLIDQ_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout, limits::SHUTDOWN_TIMEOUT);
        let auto_migrate = r.read("SOLIDQ_AUTO_MIGRATE", defaults.auto_migrate, parse_bool);
        let pid_probe = r.read("SOLIDQ_PID_PROBE", defaults.pid_probe, parse_bool);
        let on_process_death = r.read("SOLIDQ_ON_PROCESS_DEATH", defaults.on_process_death, |text| {
            match text.to_ascii_lowercase().as_str() {
                "retry" => Ok(DeathPolicy::Retry),
                "fail" => Ok(DeathPolicy::Fail),
                _ => Err(Malformed::new("is not a policy", "use retry or fail")),
            }
        });
        let log_level = r.read("SOLIDQ_LOG", defaults.log_level, parse_level);
        let log_format =
            r.read("SOLIDQ_LOG_FORMAT", defaults.log_format, |text| match text.to_ascii_lowercase().as_str() {
                "term" => Ok(LogFormat::Term),
                "json" => Ok(LogFormat::Json),
                _ => Err(Malformed::new("is not a log format", "use term or json")),
            });

        let preserve_finished_jobs =
            r.read("SOLIDQ_PRESERVE_FINISHED_JOBS", defaults.preserve_finished_jobs, parse_bool);
        let clear_finished_after =
            r.read_duration("SOLIDQ_CLEAR_FINISHED_AFTER", defaults.clear_finished_after, limits::CLEAR_FINISHED_AFTER);
        let scheduler = r.read("SOLIDQ_SCHEDULER", defaults.scheduler, parse_bool);
        let recurring = r.read("SOLIDQ_RECURRING", None, parse_recurring);

        if let (Some((heartbeat, heartbeat_text)), Some((threshold, threshold_text))) =
            (&heartbeat_interval, &alive_threshold)
        {
            if *threshold < heartbeat.saturating_mul(2) {
                r.problems.push(ConfigProblem {
                    variable: "SOLIDQ_ALIVE_THRESHOLD",
                    value: threshold_text.clone(),
                    problem: format!(
                        "{}is less than twice SOLIDQ_HEARTBEAT_INTERVAL={heartbeat_text:?}{}, so \
                         a live process could be taken for dead after one late heartbeat",
                        default_note(&r.lookup, "SOLIDQ_ALIVE_THRESHOLD", "(the default) "),
                        default_note(&r.lookup, "SOLIDQ_HEARTBEAT_INTERVAL", " (the default)"),
                    ),
                    expected: format!(
                        "set SOLIDQ_ALIVE_THRESHOLD to at least {} or shorten \
                         SOLIDQ_HEARTBEAT_INTERVAL",
                        format_duration(heartbeat.saturating_mul(2))
                    ),
                });
            }
        }

        match (
            database_url,
            pool_size,
            workers,
            polling_interval,
            dispatcher_batch_size,
            dispatcher_polling_interval,
            heartbeat_interval,
            alive_threshold,
            watchdog_interval,
            shutdown_timeout,
            (auto_migrate, pid_probe),
            on_process_death,
            log_level,
            log_format,
            (preserve_finished_jobs, clear_finished_after),
            (scheduler, recurring),
        ) {
            (
                Some(database_url),
                Some(pool_size),
                Some(workers),
                Some((polling_interval, _)),
                Some(dispatcher_batch_size),
                Some((dispatcher_polling_interval, _)),
                Some((heartbeat_interval, _)),
                Some((alive_threshold, _)),
                Some((watchdog_interval, _)),
                Some((shutdown_timeout, _)),
                (Some(auto_migrate), Some(pid_probe)),
                Some(on_process_death),
                Some(log_level),
                Some(log_format),
                (Some(preserve_finished_jobs), Some((clear_finished_after, _))),
                (Some(scheduler), Some(recurring)),
            ) if r.problems.is_empty() => Ok(Config {
                database_url,
                pool_size,
                workers,
                polling_interval,
                dispatcher_batch_size,
                dispatcher_polling_interval,
                heartbeat_interval,
                alive_threshold,
                watchdog_interval,
                shutdown_timeout,
                auto_migrate,
                pid_probe,
                on_process_death,
                log_level,
                log_format,
                preserve_finished_jobs,
                clear_finished_after,
                recurring_file: recurring.as_ref().map(|(path, _)| path.clone()),
                recurring_tasks: recurring.map(|(_, tasks)| tasks).unwrap_or_default(),
                scheduler,
            }),
            _ => Err(ConfigError { problems: r.problems }),
        }
    }

    /// Jobs run at once by this process: the sum of every worker group's concurrency.
    ///
    /// ```
    /// assert_eq!(solidq::Config::default().total_concurrency(), 200);
    /// ```
    pub fn total_concurrency(&self) -> usize {
        self.workers.iter().map(|group| group.concurrency).sum()
    }
}

/// `note` if `variable` is unset, else nothing.
fn default_note(lookup: &impl Fn(&str) -> Option<String>, variable: &str, note: &'static str) -> &'static str {
    if lookup(variable).is_none() {
        note
    } else {
        ""
    }
}

/// Parses a whole number in `range`.
fn parse_count<T>(text: &str, range: std::ops::RangeInclusive<T>, example: &str) -> Result<T, Malformed>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let expected = format!("use a whole number from {} to {}, e.g. {example}", range.start(), range.end());
    let value: T = text.trim().parse().map_err(|_| Malformed::new("is not a whole number", expected.clone()))?;
    if value < *range.start() {
        return Err(Malformed::new(format!("is less than {}", range.start()), expected));
    }
    if value > *range.end() {
        return Err(Malformed::new(format!("is more than {}", range.end()), expected));
    }
    Ok(value)
}

/// Reads the task file `SOLIDQ_RECURRING` names; every problem of the file in one message.
fn parse_recurring(text: &str) -> Result<Option<(PathBuf, Vec<RecurringTask>)>, Malformed> {
    let path = PathBuf::from(text);
    match crate::recurring::load_file(&path) {
        Ok(tasks) => Ok(Some((path, tasks))),
        Err(problems) => {
            let problems: Vec<String> = problems
                .iter()
                .map(|problem| match problem {
                    crate::recurring::RecurringError::File { problem, .. } => problem.clone(),
                    other => other.to_string(),
                })
                .collect();
            Err(Malformed::new(problems.join("; "), RECURRING_FORM))
        }
    }
}

fn parse_bool(text: &str) -> Result<bool, Malformed> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Malformed::new("is not a boolean", "use true, false, 1, 0, yes or no")),
    }
}

fn parse_level(text: &str) -> Result<slog::Level, Malformed> {
    match text.to_ascii_lowercase().as_str() {
        "trace" => Ok(slog::Level::Trace),
        "debug" => Ok(slog::Level::Debug),
        "info" => Ok(slog::Level::Info),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "error" => Ok(slog::Level::Error),
        "critical" | "crit" => Ok(slog::Level::Critical),
        _ => Err(Malformed::new("is not a log level", "use trace, debug, info, warn, error or critical")),
    }
}

fn parse_workers_detail(text: &str) -> Result<Vec<WorkerGroup>, Malformed> {
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    let parts: Vec<&str> = text.split(';').map(str::trim).collect();
    for (index, group) in parts.iter().enumerate() {
        if group.is_empty() {
            // A trailing `;` is harmless; an empty group in the middle is a typo.
            if index + 1 != parts.len() || parts.len() == 1 {
                problems.push(format!("group {} is empty", index + 1));
            }
            continue;
        }
        match parse_worker_group(group) {
            Ok(parsed) => groups.push(parsed),
            Err(problem) => problems.push(format!("group {} ({group:?}) {problem}", index + 1)),
        }
    }
    if problems.is_empty() && groups.is_empty() {
        problems.push("has no worker group".to_string());
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        Err(Malformed::new(problems.join("; "), WORKERS_FORM))
    }
}

fn parse_worker_group(group: &str) -> Result<WorkerGroup, String> {
    let Some((queues, concurrency)) = group.rsplit_once(':') else {
        return Err("has no :concurrency".to_string());
    };
    let concurrency = concurrency.trim();
    let range = limits::CONCURRENCY;
    let concurrency = match concurrency.parse::<usize>() {
        Ok(n) if range.contains(&n) => n,
        Ok(n) => return Err(format!("has concurrency {n}, outside {} to {}", range.start(), range.end())),
        Err(_) => {
            return Err(format!(
                "has concurrency {concurrency:?}, not a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        }
    };
    let mut patterns = Vec::new();
    for queue in queues.split(',').map(str::trim) {
        if queue.is_empty() {
            return Err("has an empty queue name".to_string());
        }
        if queue.contains(':') {
            return Err(format!("has queue {queue:?} containing ':'"));
        }
        if queue.trim_end_matches('*').contains('*') || queue.ends_with("**") {
            return Err(format!("has queue {queue:?} with '*' other than at the end"));
        }
        let pattern = QueuePattern::parse(queue);
        let name = match &pattern {
            QueuePattern::All => None,
            QueuePattern::Exact(name) => crate::model::queue_name_problem(name),
            // A prefix may end in whitespace ("report *" matches "report x"); the rest holds.
            QueuePattern::Prefix(prefix) => crate::model::name_problem("queue prefix", prefix.trim_end()),
        };
        if let Some(problem) = name {
            return Err(format!("has queue {queue:?}: {problem}"));
        }
        patterns.push(pattern);
    }
    Ok(WorkerGroup { queues: patterns, concurrency })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_groups() {
        let groups = parse_workers_detail("critical,default:5;reports*:2").unwrap();
        assert_eq!(
            groups,
            vec![
                WorkerGroup {
                    queues: vec![QueuePattern::Exact("critical".into()), QueuePattern::Exact("default".into())],
                    concurrency: 5
                },
                WorkerGroup { queues: vec![QueuePattern::Prefix("reports".into())], concurrency: 2 },
            ]
        );
        assert_eq!(
            parse_workers_detail(" * : 3 ;").unwrap(),
            vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 3 }]
        );
        for bad in [
            "default",
            "default:0",
            "default:x",
            ":3",
            "a,,b:2",
            "a:1;;b:1",
            "a*b:1",
            "**:1",
            "a:b:1",
            "a\u{1}b:1",
            "re\u{7f}ports*:1",
            ";",
            "default:-1",
        ] {
            let err = parse_workers_detail(bad).expect_err(bad);
            assert!(err.expected.contains("critical,default:5"), "{bad}");
        }
        let err = parse_workers_detail("default;reports:0").unwrap_err();
        assert!(err.problem.contains("group 1"), "{}", err.problem);
        assert!(err.problem.contains("group 2"), "{}", err.problem);
    }
}
