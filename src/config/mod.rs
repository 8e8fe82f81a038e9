//! Configuration from `SOLIDQ_*` environment variables: defaults, validation, and errors that
//! name the variable, the value and the accepted form ([`reader`](ConfigError)). Each default
//! is defined once, beside the part that uses it (the worker, the heartbeat, each maintenance
//! service), and read from there; the grammars of values live with their types (durations and
//! database URLs in [`crate::model`]) or here ([`workers`](WORKERS_FORM)).
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
//! | `SOLIDQ_ELECTION_SPACING` | duration from 10ms to 1m: how often the fleet as a whole tries the leader lock (each process every spacing × processes, 1 s to 60 s; see [`crate::maintenance::election`]) | `400ms` |
//! | `SOLIDQ_SHUTDOWN_TIMEOUT` | duration (`0` = do not wait) | `5s` |
//! | `SOLIDQ_AUTO_MIGRATE` | `true`, `false`, `1`, `0`, `yes`, `no` | `true` |
//! | `SOLIDQ_PID_PROBE` | `true`, `false`, `1`, `0`, `yes`, `no`: judge processes of this host and PID namespace dead as soon as their pid is gone | `true` |
//! | `SOLIDQ_ON_PROCESS_DEATH` | `retry` or `fail` | `retry` |
//! | `SOLIDQ_LOG` | `trace`, `debug`, `info`, `warn`, `error`, `critical` | `info` |
//! | `SOLIDQ_LOG_FORMAT` | `term` or `json` | `term` |
//! | `SOLIDQ_PRESERVE_FINISHED_JOBS` | `true`, `false`, `1`, `0`, `yes`, `no` | `true` |
//! | `SOLIDQ_CLEAR_FINISHED_AFTER` | duration from 1s to 3650d | `1d` |
//! | `SOLIDQ_RECURRING` | path of a `.toml` or `.json` file of recurring tasks (see [`crate::recurring::load_file`]) | none |
//! | `SOLIDQ_SCHEDULER` | `true`, `false`, `1`, `0`, `yes`, `no`: write this process's static recurring tasks at start (the elected leader enqueues the runs of every task in the database) | `true` |
//! | `SOLIDQ_METRICS_BIND` | `address:port` (e.g. `127.0.0.1:9394`): serve `/metrics`, `/health/live`, `/health/ready` there (see [`crate::metrics`]) | none |
//! | `SOLIDQ_ALERT_QUEUE_LATENCY` | duration > 0: emit `QueueLatencyHigh`/`Recovered` events when the job at the head of a queue has waited longer (see [`crate::events`]) | none (off) |
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

use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::duration::{format_duration, parse_duration};
pub use crate::model::{DatabaseUrl, WorkerGroup};
use crate::model::{DeathPolicy, QueuePattern};
use crate::recurring::RecurringTask;

mod reader;
mod workers;

use reader::{parse_bool, parse_choice, parse_count, parse_level, parse_recurring, Reader};
pub use reader::{ConfigError, ConfigProblem};
pub use workers::WORKERS_FORM;

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

// Each default is defined beside the part that uses it; the names below are how the
// configuration (and its users) read them.
/// Default `SOLIDQ_HEARTBEAT_INTERVAL` (the heartbeat's).
pub use crate::actors::heartbeat::DEFAULT_INTERVAL as DEFAULT_HEARTBEAT_INTERVAL;
/// Default `SOLIDQ_SHUTDOWN_TIMEOUT` (the supervisor's drain).
pub use crate::actors::supervisor::DEFAULT_SHUTDOWN_TIMEOUT;
/// Default `SOLIDQ_POLLING_INTERVAL` (the worker's).
pub use crate::actors::worker::DEFAULT_POLLING_INTERVAL;
/// Default `SOLIDQ_CLEAR_FINISHED_AFTER` (the cleaner's).
pub use crate::maintenance::cleaner::DEFAULT_CLEAR_FINISHED_AFTER;
/// Default `SOLIDQ_DISPATCHER_BATCH_SIZE` (the dispatcher's).
pub use crate::maintenance::dispatcher::DEFAULT_BATCH_SIZE as DEFAULT_DISPATCHER_BATCH_SIZE;
/// Default `SOLIDQ_DISPATCHER_POLLING_INTERVAL` (the dispatcher's).
pub use crate::maintenance::dispatcher::DEFAULT_INTERVAL as DEFAULT_DISPATCHER_POLLING_INTERVAL;
/// Default `SOLIDQ_ELECTION_SPACING` (the election's).
pub use crate::maintenance::election::DEFAULT_SPACING as DEFAULT_ELECTION_SPACING;
/// Default `SOLIDQ_ALIVE_THRESHOLD` (the watchdog's).
pub use crate::maintenance::watchdog::DEFAULT_ALIVE_THRESHOLD;
/// Default `SOLIDQ_WATCHDOG_INTERVAL` (the watchdog's).
pub use crate::maintenance::watchdog::DEFAULT_INTERVAL as DEFAULT_WATCHDOG_INTERVAL;

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
    /// `SOLIDQ_ELECTION_SPACING`: how often the fleet as a whole tries the leader lock.
    pub election_spacing: Duration,
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
    /// `SOLIDQ_SCHEDULER`: write this process's static recurring tasks to the database at start.
    /// The runs of every task in the database are enqueued by the elected leader, whatever this
    /// says.
    pub scheduler: bool,
    /// `SOLIDQ_METRICS_BIND`: where an embedded runtime serves its metrics and health checks
    /// itself (no actix-web needed); `None`: nowhere (mount them in the application instead).
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// `SOLIDQ_ALERT_QUEUE_LATENCY`: the queue latency above which alert events are emitted;
    /// `None`: no latency alarm.
    pub alert_queue_latency: Option<Duration>,
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
    /// `SOLIDQ_ELECTION_SPACING`.
    pub const ELECTION_SPACING: RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(60);
    /// `SOLIDQ_SHUTDOWN_TIMEOUT` (0: do not wait).
    pub const SHUTDOWN_TIMEOUT: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(86_400);
    /// `SOLIDQ_ALERT_QUEUE_LATENCY`: a millisecond to a week.
    pub const ALERT_QUEUE_LATENCY: RangeInclusive<Duration> =
        Duration::from_millis(1)..=Duration::from_secs(7 * 86_400);
    /// `SOLIDQ_CLEAR_FINISHED_AFTER`: a second to ten years.
    pub const CLEAR_FINISHED_AFTER: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(10 * 365 * 86_400);
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
            election_spacing: DEFAULT_ELECTION_SPACING,
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
            metrics_bind: None,
            alert_queue_latency: None,
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// A value that is not valid Unicode is reported as malformed, not ignored.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Reads the configuration through `lookup` (a variable's value, or `None` when it is
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
        // Read in the order of the table above, so that problems are listed in that order.
        let database_url = r.read("SOLIDQ_DATABASE_URL", defaults.database_url, DatabaseUrl::parse_detailed);
        let pool_size = r.read("SOLIDQ_POOL_SIZE", None, |text| parse_count(text, limits::POOL_SIZE, "8").map(Some));
        let workers = r.read("SOLIDQ_WORKERS", defaults.workers.clone(), workers::parse_workers);
        let mut config = Config {
            database_url,
            // Unset: follows the worker groups.
            pool_size: pool_size.unwrap_or_else(|| default_pool_size(workers.len())),
            workers,
            polling_interval: r.read_duration(
                "SOLIDQ_POLLING_INTERVAL",
                defaults.polling_interval,
                limits::POLLING_INTERVAL,
            ),
            dispatcher_batch_size: r.read("SOLIDQ_DISPATCHER_BATCH_SIZE", defaults.dispatcher_batch_size, |text| {
                parse_count(text, limits::DISPATCHER_BATCH_SIZE, "500")
            }),
            dispatcher_polling_interval: r.read_duration(
                "SOLIDQ_DISPATCHER_POLLING_INTERVAL",
                defaults.dispatcher_polling_interval,
                limits::DISPATCHER_POLLING_INTERVAL,
            ),
            heartbeat_interval: r.read_duration(
                "SOLIDQ_HEARTBEAT_INTERVAL",
                defaults.heartbeat_interval,
                limits::HEARTBEAT_INTERVAL,
            ),
            alive_threshold: r.read_duration(
                "SOLIDQ_ALIVE_THRESHOLD",
                defaults.alive_threshold,
                limits::ALIVE_THRESHOLD,
            ),
            watchdog_interval: r.read_duration(
                "SOLIDQ_WATCHDOG_INTERVAL",
                defaults.watchdog_interval,
                limits::WATCHDOG_INTERVAL,
            ),
            election_spacing: r.read_duration(
                "SOLIDQ_ELECTION_SPACING",
                defaults.election_spacing,
                limits::ELECTION_SPACING,
            ),
            shutdown_timeout: r.read_duration(
                "SOLIDQ_SHUTDOWN_TIMEOUT",
                defaults.shutdown_timeout,
                limits::SHUTDOWN_TIMEOUT,
            ),
            auto_migrate: r.read("SOLIDQ_AUTO_MIGRATE", defaults.auto_migrate, parse_bool),
            pid_probe: r.read("SOLIDQ_PID_PROBE", defaults.pid_probe, parse_bool),
            on_process_death: r.read("SOLIDQ_ON_PROCESS_DEATH", defaults.on_process_death, |text| {
                parse_choice(text, "policy", &[("retry", DeathPolicy::Retry), ("fail", DeathPolicy::Fail)])
            }),
            log_level: r.read("SOLIDQ_LOG", defaults.log_level, parse_level),
            log_format: r.read("SOLIDQ_LOG_FORMAT", defaults.log_format, |text| {
                parse_choice(text, "log format", &[("term", LogFormat::Term), ("json", LogFormat::Json)])
            }),
            preserve_finished_jobs: r.read(
                "SOLIDQ_PRESERVE_FINISHED_JOBS",
                defaults.preserve_finished_jobs,
                parse_bool,
            ),
            clear_finished_after: r.read_duration(
                "SOLIDQ_CLEAR_FINISHED_AFTER",
                defaults.clear_finished_after,
                limits::CLEAR_FINISHED_AFTER,
            ),
            scheduler: r.read("SOLIDQ_SCHEDULER", defaults.scheduler, parse_bool),
            recurring_file: None,
            recurring_tasks: Vec::new(),
            metrics_bind: None,
            alert_queue_latency: None,
        };
        config.metrics_bind = r.read("SOLIDQ_METRICS_BIND", None, |text| parse_bind(text).map(Some));
        if r.is_set("SOLIDQ_ALERT_QUEUE_LATENCY") {
            let latency =
                r.read_duration("SOLIDQ_ALERT_QUEUE_LATENCY", Duration::from_secs(30), limits::ALERT_QUEUE_LATENCY);
            config.alert_queue_latency = Some(latency).filter(|_| !r.failed("SOLIDQ_ALERT_QUEUE_LATENCY"));
        }
        if let Some((file, tasks)) = r.read("SOLIDQ_RECURRING", None, parse_recurring) {
            (config.recurring_file, config.recurring_tasks) = (Some(file), tasks);
        }
        check_threshold(&mut r, &config);
        if r.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems: r.problems })
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

/// An `address:port` to listen on (a host name is resolved; the first address is used).
fn parse_bind(text: &str) -> Result<std::net::SocketAddr, crate::model::Malformed> {
    use std::net::ToSocketAddrs;
    let expected = "an address and port, e.g. 127.0.0.1:9394 or [::1]:9394";
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| crate::model::Malformed::new("names no address", expected)),
        Err(err) => Err(crate::model::Malformed::new(format!("is not an address and port ({err})"), expected)),
    }
}

/// The alive threshold must be at least twice the heartbeat interval (when both read well).
fn check_threshold<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>, config: &Config) {
    let (threshold, heartbeat) = ("SOLIDQ_ALIVE_THRESHOLD", "SOLIDQ_HEARTBEAT_INTERVAL");
    if r.failed(threshold)
        || r.failed(heartbeat)
        || config.alive_threshold >= config.heartbeat_interval.saturating_mul(2)
    {
        return;
    }
    let note = |variable: &str, text: &'static str| if r.is_set(variable) { "" } else { text };
    let problem = ConfigProblem {
        variable: threshold,
        value: r.text_of(threshold, DEFAULT_ALIVE_THRESHOLD),
        problem: format!(
            "{}is less than twice {heartbeat}={:?}{}, so a live process could be taken for dead after one late \
             heartbeat",
            note(threshold, "(the default) "),
            r.text_of(heartbeat, DEFAULT_HEARTBEAT_INTERVAL),
            note(heartbeat, " (the default)"),
        ),
        expected: format!(
            "set {threshold} to at least {} or shorten {heartbeat}",
            format_duration(config.heartbeat_interval.saturating_mul(2))
        ),
    };
    r.problems.push(problem);
}
