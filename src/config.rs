//! Configuration from `SOLIDQ_*` environment variables: defaults, validation, and errors that
//! name the variable, the value and the accepted form.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::{DeathPolicy, QueuePattern};

/// Default database when `SOLIDQ_DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://solidq.sqlite3";
/// Default `SOLIDQ_WORKERS`.
pub const DEFAULT_WORKERS: &str = "*:3";
/// Default `SOLIDQ_POOL_SIZE`.
pub const DEFAULT_POOL_SIZE: u32 = 8;
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
pub const DEFAULT_WATCHDOG_INTERVAL: Duration = Duration::from_millis(500);
/// Default `SOLIDQ_SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the jobs live, chosen by the URL's scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://relative/path` or `sqlite:///absolute/path`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, kept whole for libpq.
    Postgres(String),
}

/// One worker group: the queues it serves, in order, and how many jobs it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerGroup {
    /// Queues in claim order; `*` entries match all or by prefix.
    pub queues: Vec<QueuePattern>,
    /// Jobs run concurrently by this group.
    pub concurrency: usize,
}

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
    /// `SOLIDQ_POOL_SIZE`: connections per pool.
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
    /// `SOLIDQ_ON_PROCESS_DEATH`: `retry` or `fail`.
    pub on_process_death: DeathPolicy,
    /// `SOLIDQ_LOG`: `trace`, `debug`, `info`, `warn`, `error` or `critical`.
    pub log_level: slog::Level,
    /// `SOLIDQ_LOG_FORMAT`: `term` or `json`.
    pub log_format: LogFormat,
}

/// TEMPORARY stub until the config parser lands.
#[derive(Debug)]
pub struct ConfigError;
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("config error")
    }
}
impl std::error::Error for ConfigError {}
impl Config {
    /// stub
    pub fn from_env() -> Result<Config, ConfigError> {
        Err(ConfigError)
    }
}
