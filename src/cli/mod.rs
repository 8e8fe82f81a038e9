//! The `solidq` command line: `migrate`, `status [--json]`, `enqueue`, `jobs list|show|retry|
//! discard|cancel`, `queues list|pause|resume` and `recurring list|add|remove`.
//!
//! Configuration comes from the `SOLIDQ_*` environment variables (see [`crate::config`]).
//! Exit codes: 0 on success, 1 when the database fails, 2 for a usage error, an invalid
//! configuration or an invalid job.
//!
//! `migrate` is the only command that always migrates; the others apply pending
//! migrations first when `SOLIDQ_AUTO_MIGRATE` is true (the default), so they work on a fresh
//! database.
//!
//! The `solidq` binary is just:
//!
//! ```no_run
//! std::process::exit(solidq::cli::run(std::env::args_os()));
//! ```

use std::ffi::OsString;
use std::io::{self, Write};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{parse_duration, Config, ConfigError};
use crate::job::{EnqueueError, EnqueueOptions};
use crate::model::NewJob;
use crate::recurring::{local_time, RecurringTask, RunMissed};
use crate::status;
use crate::store::{self, RecurringTaskRow, Removed, SharedStore, StoreError};

mod manage;

pub use manage::{JobsCommand, QueuesCommand, Target};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the database failed (unreachable, query or migration error).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad command line, invalid configuration or invalid job, or an action the job's
/// state does not allow (a job that does not exist, a running job to discard).
pub const EXIT_USAGE: i32 = 2;

/// Connections the CLI asks for: it runs one statement at a time.
const CLI_POOL_SIZE: u32 = 2;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "solidq",
    version,
    about = "Durable, database-backed jobs for actix: migrate the schema, inspect processes and \
             queues, enqueue jobs, manage recurring tasks.",
    after_help = "Configuration comes from SOLIDQ_* environment variables, e.g. \
                  SOLIDQ_DATABASE_URL (default sqlite://solidq.sqlite3), SOLIDQ_ALIVE_THRESHOLD, \
                  SOLIDQ_AUTO_MIGRATE."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations and print how many ran.
    Migrate,
    /// Show every process with its heartbeat age and whether it is alive, then job counts by
    /// state and by queue.
    Status {
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a job and print its id.
    Enqueue {
        /// The job's kind, which selects its handler, e.g. mailer.welcome.
        kind: String,
        /// The job's arguments as JSON, e.g. '{"user_id": 42}'; `-` reads them from standard
        /// input and `@path` from a file (for payloads too large for a command line).
        #[arg(value_name = "JSON", allow_hyphen_values = true)]
        payload: String,
        /// Queue to put the job on [default: default].
        #[arg(long, value_name = "QUEUE")]
        queue: Option<String>,
        /// Priority; lower runs first [default: 0].
        #[arg(long, value_name = "P", allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Run no earlier than this from now: 500ms, 10s, 5m, 1h or bare seconds.
        #[arg(long = "in", value_name = "DURATION", value_parser = parse_delay, allow_hyphen_values = true)]
        delay: Option<Duration>,
        /// Executions allowed before the job is failed for good [default: 5].
        #[arg(long, value_name = "N")]
        max_attempts: Option<i32>,
        /// Enqueue nothing if a job with this unique key may still run; print its id instead
        /// (and say so on standard error).
        #[arg(long, value_name = "KEY")]
        unique_key: Option<String>,
        /// Share a concurrency limit with the jobs of this key: at most --concurrency-limit of
        /// them ready or running at once, the others wait as blocked.
        #[arg(long, value_name = "KEY")]
        concurrency_key: Option<String>,
        /// With --concurrency-key: how many at once [default: 1].
        #[arg(long, value_name = "N", requires = "concurrency_key")]
        concurrency_limit: Option<i32>,
        /// With --concurrency-key: how long a running holder counts [default: 15m].
        #[arg(long, value_name = "DURATION", value_parser = parse_delay, requires = "concurrency_key")]
        concurrency_duration: Option<Duration>,
    },
    /// List, show, retry, discard and cancel jobs.
    Jobs {
        /// What to do.
        #[command(subcommand)]
        action: manage::JobsCommand,
    },
    /// List, pause and resume queues.
    Queues {
        /// What to do.
        #[command(subcommand)]
        action: manage::QueuesCommand,
    },
    /// List recurring tasks, add or remove dynamic ones. Running schedulers pick changes up
    /// within 5 s.
    Recurring {
        /// What to do.
        #[command(subcommand)]
        command: RecurringCommand,
    },
}

/// The subcommands of `solidq recurring`.
#[derive(Debug, Subcommand)]
pub enum RecurringCommand {
    /// List every recurring task, static and dynamic, with its last and next run.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a dynamic recurring task, or replace the task with this key.
    Add {
        /// The task's unique name, e.g. nightly-report.
        key: String,
        /// When it runs: a cron expression of 5 fields (minute hour day month weekday) or 6
        /// (a second first), or every 30s, 5m, 2h, 1d (any number), e.g. "30 2 * * *" or "every 30s".
        #[arg(long)]
        schedule: String,
        /// Kind of the job it enqueues, e.g. reports.nightly.
        #[arg(long)]
        kind: String,
        /// The job's arguments as JSON [default: null].
        #[arg(long = "args", value_name = "JSON", allow_hyphen_values = true)]
        arguments: Option<String>,
        /// Queue of the job [default: default].
        #[arg(long, value_name = "QUEUE")]
        queue: Option<String>,
        /// Priority of the job; lower runs first [default: 0].
        #[arg(long, value_name = "P", allow_negative_numbers = true)]
        priority: Option<i32>,
        /// IANA time zone the cron fields are read in, e.g. Europe/Berlin [default: UTC].
        #[arg(long = "time-zone", value_name = "ZONE")]
        time_zone: Option<String>,
        /// What a starting scheduler does about runs missed while none ran: skip them, or
        /// run the latest once [default: skip].
        #[arg(long = "run-missed", value_name = "latest|skip")]
        run_missed: Option<String>,
    },
    /// Remove a dynamic recurring task (static ones live in SOLIDQ_RECURRING or the
    /// application's code).
    Remove {
        /// The task's key.
        key: String,
    },
}

/// A delay for `--in`: a duration, never negative (clap would otherwise take `-5s` for an
/// option and say something confusing).
fn parse_delay(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err("a delay cannot be negative (use e.g. 500ms, 10s, 5m, 1h or bare seconds; leave out --in to run \
                    the job now)"
            .to_string());
    }
    parse_duration(text)
}

/// The payload as given: JSON text, `-` for standard input, or `@path` for a file.
fn read_payload(payload: &str) -> Result<String, Failure> {
    if payload == "-" {
        let mut text = String::new();
        io::Read::read_to_string(&mut io::stdin(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the payload from standard input: {e}")))?;
        Ok(text)
    } else if let Some(path) = payload.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("cannot read the payload file {path}: {e}")))
    } else {
        Ok(payload.to_string())
    }
}

/// Runs the command line with `args` (program name first) against the process environment,
/// writing to stdout and stderr; returns the exit code.
///
/// Sets up logging from `SOLIDQ_LOG` and `SOLIDQ_LOG_FORMAT` (on stderr) once the
/// configuration is known.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // Unlocked handles: the logging thread writes to stderr too.
    let mut out = io::stdout();
    let mut err = io::stderr();
    let code = execute(args, Config::from_env, true, &mut out, &mut err);
    let _ = out.flush();
    code
}

/// Runs the command line with `args` (program name first), reading `SOLIDQ_*` variables
/// through `lookup` and writing to `out` and `err`; returns the exit code. Installs no logger.
///
/// ```
/// let mut out = Vec::new();
/// let mut err = Vec::new();
/// let code = solidq::cli::run_with(
///     ["solidq", "enqueue", "ping", "{not json"],
///     |_| None,
///     &mut out,
///     &mut err,
/// );
/// assert_eq!(code, 2);
/// assert!(String::from_utf8(err).unwrap().starts_with("error: the payload is not valid JSON"));
/// ```
pub fn run_with<I, T>(args: I, lookup: impl Fn(&str) -> Option<String>, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    execute(args, || Config::from_lookup(lookup), false, out, err)
}

/// A failure on its way to an exit code.
enum Failure {
    /// Exit 2 with this message.
    Usage(String),
    /// Exit 2, listing every configuration problem.
    Config(ConfigError),
    /// Exit 1.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    /// A name or job the store refuses is the operator's input: exit 2, as for a bad flag.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidName(_) | StoreError::InvalidJob { .. } => Failure::Usage(err.to_string()),
            other => Failure::Store(other),
        }
    }
}

fn execute<I, T>(
    args: I,
    load_config: impl FnOnce() -> Result<Config, ConfigError>,
    init_logging: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let _ = if e.use_stderr() { write!(err, "{text}") } else { write!(out, "{text}") };
            return e.exit_code();
        }
    };
    let outcome = load_config().map_err(Failure::Config).and_then(|config| {
        let _logging = init_logging.then(|| crate::logging::init(&config));
        execute_command(cli.command, &config, out, err)
    });
    match outcome {
        Ok(()) => EXIT_OK,
        Err(Failure::Usage(message)) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_USAGE
        }
        Err(Failure::Config(config_error)) => {
            let _ = writeln!(
                err,
                "error: invalid configuration ({} {}):",
                config_error.problems.len(),
                if config_error.problems.len() == 1 { "problem" } else { "problems" }
            );
            for problem in &config_error.problems {
                let _ = writeln!(err, "  {problem}");
            }
            EXIT_USAGE
        }
        Err(Failure::Store(store_error)) => {
            let _ = writeln!(err, "error: {store_error}");
            EXIT_FAILURE
        }
    }
}

fn connect(config: &Config) -> Result<SharedStore, Failure> {
    Ok(store::connect(&config.database_url, config.pool_size.min(CLI_POOL_SIZE))?)
}

/// For commands that only read: a SQLite file that does not exist is no database (opening it
/// would create an empty one and report nothing).
fn connect_existing(config: &Config, action: &'static str) -> Result<SharedStore, Failure> {
    if let crate::model::DatabaseUrl::Sqlite(path) = &config.database_url {
        if !path.exists() {
            return Err(Failure::Store(StoreError::Connection {
                action,
                message: format!(
                    "there is no database at {} (nothing has created it: run `solidq migrate`, enqueue a job or \
                     start the application first, or check SOLIDQ_DATABASE_URL)",
                    path.display()
                ),
            }));
        }
    }
    let store = connect(config)?;
    if config.auto_migrate {
        store.migrate()?;
    }
    Ok(store)
}

/// Warnings for a job of `kind` just enqueued on `queue` that no live process would run.
fn unserved_warnings(store: &crate::store::Store, config: &Config, kind: &str, queue: &str) -> Vec<String> {
    let Ok(processes) = store.processes() else { return Vec::new() };
    let now = now();
    let live: Vec<status::Served> = processes
        .iter()
        .filter(|p| status::is_alive(status::heartbeat_age(now, p.last_heartbeat_at), config.alive_threshold))
        .map(status::Served::by)
        .collect();
    if live.is_empty() {
        return vec![format!(
            "no live process is registered on {}: the job waits until one starts",
            config.database_url
        )];
    }
    if live.iter().any(|served| served.runs(kind, queue)) {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    if !live.iter().any(|served| served.queues.iter().any(|pattern| pattern.matches(queue))) {
        let mut served: Vec<String> = live.iter().flat_map(|s| s.queues.iter().map(|q| q.to_string())).collect();
        served.sort();
        served.dedup();
        warnings.push(format!(
            "no live process works queue {queue:?} (live processes work {}): the job waits until one does",
            served.join(", ")
        ));
    }
    if !live.iter().any(|served| served.kinds.iter().any(|k| k == kind)) {
        warnings.push(format!("no live process has a handler for kind {kind:?}: the job waits until one does"));
    } else if warnings.is_empty() {
        warnings.push(format!(
            "the live processes with a handler for {kind:?} do not work queue {queue:?}: the job waits until one does"
        ));
    }
    warnings
}

/// Connects and, when `SOLIDQ_AUTO_MIGRATE` is on, applies pending migrations.
fn connect_ready(config: &Config) -> Result<SharedStore, Failure> {
    let store = connect(config)?;
    if config.auto_migrate {
        store.migrate()?;
    }
    Ok(store)
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn execute_command(command: Command, config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    match command {
        Command::Migrate => {
            let store = connect(config)?;
            let applied = store.migrate()?;
            let _ = writeln!(
                out,
                "applied {applied} {} to {}",
                if applied == 1 { "migration" } else { "migrations" },
                config.database_url
            );
        }
        Command::Status { json } => {
            let store = connect_existing(config, "reading the status")?;
            let text = if json {
                let processes = store.processes()?;
                let (totals, queues) = store.counts()?;
                let waiting = store.waiting()?;
                let view = status::StatusView {
                    processes: &processes,
                    totals: &totals,
                    queues: &queues,
                    waiting: &waiting,
                    now: now(),
                    alive_threshold: config.alive_threshold,
                };
                let mut text =
                    serde_json::to_string_pretty(&status::render_json(&view)).expect("a JSON value serializes");
                text.push('\n');
                text
            } else {
                status::status_text(store.as_ref(), config.alive_threshold)?
            };
            let _ = out.write_all(text.as_bytes());
        }
        Command::Jobs { action } => manage::jobs(action, config, out)?,
        Command::Queues { action } => manage::queues(action, config, out)?,
        Command::Enqueue {
            kind,
            payload,
            queue,
            priority,
            delay,
            max_attempts,
            unique_key,
            concurrency_key,
            concurrency_limit,
            concurrency_duration,
        } => {
            let payload = read_payload(&payload)?;
            let arguments: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| Failure::Usage(format!("the payload is not valid JSON: {e}")))?;
            let mut opts = EnqueueOptions::new();
            opts.queue = queue;
            opts.priority = priority;
            opts.max_attempts = max_attempts;
            opts.unique_key = unique_key;
            if let Some(key) = concurrency_key {
                let mut limit = crate::model::ConcurrencyLimit::new(key, concurrency_limit.unwrap_or(1));
                if let Some(duration) = concurrency_duration {
                    limit = limit.duration(duration);
                }
                opts.concurrency = Some(limit);
            }
            if let Some(delay) = delay {
                opts = opts.run_in(delay);
            }
            let job = NewJob::from_json(&kind, arguments, opts).map_err(|e| match e {
                EnqueueError::Store(store_error) => Failure::from(store_error),
                other => Failure::Usage(other.to_string()),
            })?;
            let store = connect_ready(config)?;
            for enqueued in store.enqueue_reporting(std::slice::from_ref(&job), now())? {
                let _ = writeln!(out, "{}", enqueued.id());
                if !enqueued.is_new() {
                    let _ = writeln!(err, "note: job {} holds the unique key; nothing was enqueued", enqueued.id());
                }
            }
            for warning in unserved_warnings(&store, config, &job.kind, &job.queue) {
                let _ = writeln!(err, "warning: {warning}");
            }
        }
        Command::Recurring { command } => execute_recurring(command, config, out, err)?,
    }
    Ok(())
}

/// The next run of the task of `row` after now (UTC), if the row reads as a task.
fn next_run(row: &RecurringTaskRow) -> Option<chrono::DateTime<chrono::Utc>> {
    row.task().ok().and_then(|task| task.next_run_after(chrono::Utc::now()))
}

fn execute_recurring(
    command: RecurringCommand,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        RecurringCommand::List { json } => {
            let store = connect_existing(config, "listing the recurring tasks")?;
            let rows = store.recurring_tasks()?;
            if json {
                let listed: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|row| {
                        let mut value = serde_json::to_value(row).expect("a row serializes");
                        value["next_run_at"] = serde_json::json!(next_run(row).map(|at| at.naive_utc()));
                        value["problem"] = serde_json::json!(row.task().err().map(|e| e.to_string()));
                        value
                    })
                    .collect();
                let mut text = serde_json::to_string_pretty(&listed).expect("a JSON value serializes");
                text.push('\n');
                let _ = out.write_all(text.as_bytes());
            } else if rows.is_empty() {
                let _ = writeln!(out, "no recurring tasks");
            } else {
                let _ = out.write_all(recurring_table(&rows).as_bytes());
            }
        }
        RecurringCommand::Add { key, schedule, kind, arguments, queue, priority, time_zone, run_missed } => {
            let usage = |e: crate::recurring::RecurringError| Failure::Usage(e.to_string());
            let mut task = RecurringTask::new(&key, &schedule, &kind).map_err(usage)?;
            if let Some(arguments) = arguments {
                let arguments = read_payload(&arguments)?;
                task.arguments = serde_json::from_str(&arguments)
                    .map_err(|e| Failure::Usage(format!("the arguments are not valid JSON: {e}")))?;
            }
            if let Some(queue) = queue {
                task.queue = queue;
            }
            if let Some(priority) = priority {
                task.priority = priority;
            }
            if let Some(zone) = time_zone {
                task = task.time_zone(&zone).map_err(usage)?;
            }
            if let Some(run_missed) = run_missed {
                task.run_missed = RunMissed::parse(&run_missed).map_err(usage)?;
            }
            if let Some(problem) = task.problem() {
                return Err(Failure::Usage(format!("recurring task {key:?}: {problem}")));
            }
            let store = connect_ready(config)?;
            store.add_recurring_task(&task, now())?;
            let next = task
                .next_run_after(chrono::Utc::now())
                .map(|at| format!("{} UTC ({})", at.naive_utc(), local_time(at, task.time_zone)))
                .unwrap_or_else(|| "never".into());
            let _ = writeln!(out, "added recurring task {}: {}; next run {next}", task.key, task.schedule);
            if !config.scheduler {
                let _ = writeln!(err, "warning: SOLIDQ_SCHEDULER=false here; only processes with a scheduler run it");
            }
        }
        RecurringCommand::Remove { key } => {
            let store = connect_ready(config)?;
            match store.remove_recurring_task(&key)? {
                Removed::Removed => {
                    let _ = writeln!(out, "removed recurring task {key}");
                }
                Removed::Missing => return Err(Failure::Usage(format!("there is no recurring task {key:?}"))),
                Removed::Static => {
                    return Err(Failure::Usage(format!(
                        "recurring task {key:?} is static (from SOLIDQ_RECURRING or Runtime::recurring): remove it \
                         there; the next scheduler start deletes it"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// The task list as a table.
fn recurring_table(rows: &[RecurringTaskRow]) -> String {
    let header =
        ["KEY", "SCHEDULE", "TIME ZONE", "KIND", "QUEUE", "PRIORITY", "ORIGIN", "LAST RUN (UTC)", "NEXT RUN (UTC)"];
    let lines: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let time = |at: Option<chrono::NaiveDateTime>| at.map_or_else(|| "-".to_string(), |at| at.to_string());
            let next = match row.task() {
                Ok(_) => time(next_run(row).map(|at| at.naive_utc())),
                Err(_) => "unreadable".to_string(),
            };
            [
                row.key.clone(),
                row.schedule.clone(),
                row.time_zone.clone(),
                row.kind.clone(),
                row.queue.clone(),
                row.priority.to_string(),
                if row.is_static { "static" } else { "dynamic" }.to_string(),
                time(row.last_run_at),
                next,
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let format_line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = format_line(header.to_vec());
    for line in &lines {
        text.push_str(&format_line(line.iter().map(String::as_str).collect()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_test(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut argv = vec!["solidq"];
        argv.extend_from_slice(args);
        let code =
            run_with(argv, |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()), &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn invalid_json_is_a_usage_error_before_any_connection() {
        let (code, out, err) = run_test(&["enqueue", "ping", "{\"n\": "], &[]);
        assert_eq!(code, EXIT_USAGE);
        assert_eq!(out, "");
        assert!(err.starts_with("error: the payload is not valid JSON: "), "{err}");
    }

    #[test]
    fn invalid_job_options_are_usage_errors() {
        let (code, _, err) = run_test(&["enqueue", "ping", "{}", "--queue", "a*"], &[]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("queue name"), "{err}");
        let (code, _, err) = run_test(&["enqueue", "ping", "{}", "--max-attempts", "0"], &[]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("max attempts"), "{err}");
        let (code, _, err) = run_test(&["enqueue", "ping", "{}", "--in", "soon"], &[]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("500ms, 10s, 5m"), "{err}");
    }

    #[test]
    fn every_configuration_problem_is_printed() {
        let (code, out, err) =
            run_test(&["status"], &[("SOLIDQ_POOL_SIZE", "abc"), ("SOLIDQ_DATABASE_URL", "mysql://x")]);
        assert_eq!(code, EXIT_USAGE);
        assert_eq!(out, "");
        assert!(err.starts_with("error: invalid configuration (2 problems):\n"), "{err}");
        assert!(err.contains("  SOLIDQ_POOL_SIZE=\"abc\""), "{err}");
        assert!(err.contains("\"mysql\""), "{err}");
    }

    #[test]
    fn usage_errors_and_help() {
        let (code, _, err) = run_test(&["frobnicate"], &[]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("frobnicate"), "{err}");
        let (code, out, _) = run_test(&["--help"], &[]);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("enqueue"), "{out}");
        let (code, out, _) = run_test(&["enqueue", "--help"], &[]);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("--in <DURATION>"), "{out}");
    }

    #[test]
    fn negative_priorities_and_delays_parse() {
        let cli = Cli::try_parse_from(["solidq", "enqueue", "k", "-1", "--priority", "-5", "--in", "1m30s"]).unwrap();
        match cli.command {
            Command::Enqueue { payload, priority, delay, .. } => {
                assert_eq!(payload, "-1");
                assert_eq!(priority, Some(-5));
                assert_eq!(delay, Some(Duration::from_secs(90)));
            }
            other => panic!("{other:?}"),
        }
    }
}
