//! The `solidq` command line: `migrate`, `status [--json]`, `enqueue`, `jobs list|show|retry|
//! discard|cancel`, `queues list|pause|resume`, `recurring list|add|remove` and `dashboard`
//! (the web dashboard, see [`crate::dashboard`]).
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

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::status;

mod batches;
mod common;
mod dashboard;
mod enqueue;
mod manage;
mod rate_limits;
mod recurring;

pub use batches::BatchesCommand;
use common::{connect, connect_existing, now, Failure};
pub use dashboard::DashboardArgs;
pub use enqueue::EnqueueArgs;
pub use manage::{JobsCommand, QueuesCommand, Target};
pub use recurring::RecurringCommand;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the database failed (unreachable, query or migration error).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad command line, invalid configuration or invalid job, or an action the job's
/// state does not allow (a job that does not exist, a running job to discard).
pub const EXIT_USAGE: i32 = 2;

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
    Enqueue(EnqueueArgs),
    /// List, show, retry, discard and cancel jobs.
    Jobs {
        /// What to do.
        #[command(subcommand)]
        action: manage::JobsCommand,
    },
    /// List batches and show one: size, pending, finished, failed, callbacks and whether they ran.
    Batches {
        /// What to do.
        #[command(subcommand)]
        action: batches::BatchesCommand,
    },
    /// List the rate-limit keys: each one's limit, the starts in its window now, and its jobs
    /// (ready, scheduled: deferred by the limit, running) with when the next is due.
    RateLimits {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Serve the web dashboard (default on 127.0.0.1:9292) until interrupted. Binding
    /// anything but loopback needs SOLIDQ_DASHBOARD_TOKEN; SOLIDQ_DASHBOARD_READ_ONLY=true
    /// hides every action.
    Dashboard(DashboardArgs),
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
    let code = execute(args, Config::from_env, &|name| std::env::var(name).ok(), true, &mut out, &mut err);
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
    execute(args, || Config::from_lookup(&lookup), &lookup, false, out, err)
}

fn execute<I, T>(
    args: I,
    load_config: impl FnOnce() -> Result<Config, ConfigError>,
    lookup: &dyn Fn(&str) -> Option<String>,
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
        execute_command(cli.command, &config, lookup, out, err)
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

fn execute_command(
    command: Command,
    config: &Config,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
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
                let leader = store.leader()?;
                let view = status::StatusView {
                    processes: &processes,
                    totals: &totals,
                    queues: &queues,
                    waiting: &waiting,
                    now: now(),
                    alive_threshold: config.alive_threshold,
                    leader: leader.as_ref(),
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
        Command::Batches { action } => batches::execute(action, config, out)?,
        Command::RateLimits { json } => rate_limits::execute(json, config, out)?,
        Command::Enqueue(args) => enqueue::enqueue(args, config, out, err)?,
        Command::Recurring { command } => recurring::execute(command, config, out, err)?,
        Command::Dashboard(args) => dashboard::serve(args, config, lookup, out)?,
    }
    Ok(())
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
            run_test(&["status"], &[("SOLIDQ_POOL_SIZE", "abc"), ("SOLIDQ_DATABASE_URL", "oracle://x")]);
        assert_eq!(code, EXIT_USAGE);
        assert_eq!(out, "");
        assert!(err.starts_with("error: invalid configuration (2 problems):\n"), "{err}");
        assert!(err.contains("  SOLIDQ_POOL_SIZE=\"abc\""), "{err}");
        assert!(err.contains("\"oracle\""), "{err}");
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
            Command::Enqueue(args) => {
                assert_eq!(args.payload, "-1");
                assert_eq!(args.priority, Some(-5));
                assert_eq!(args.delay, Some(std::time::Duration::from_secs(90)));
            }
            other => panic!("{other:?}"),
        }
    }
}
