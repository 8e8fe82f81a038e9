//! `solidq jobs …` and `solidq queues …`: what an operator does to jobs and queues.

use std::io::Write;

use clap::{Args, Subcommand};

use super::common::{connect_ready, now, Failure};
use crate::config::Config;
use crate::model::{JobId, JobState};
use crate::status;
use crate::store::inspect::JobRow;
use crate::store::manage::{ActionError, Cancelled};
use crate::store::JobFilter;

/// `solidq jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs in one state, oldest first: failed, discarded, ready, scheduled, claimed,
    /// blocked, finished or cancelled.
    List {
        /// The state to list.
        #[arg(long, value_parser = parse_state)]
        state: JobState,
        /// Only jobs on this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs with ids above this one (the last id of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<JobId>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one job: state, attempts, times, arguments and its last error.
    Show {
        /// The job's id.
        id: JobId,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a failed (or discarded, or cancelled) job again, or every failed job.
    Retry(Target),
    /// End a waiting or failed job as discarded (kept, never run), or every failed job. A
    /// running job cannot be discarded: cancel it.
    Discard(Target),
    /// Cancel a job: a scheduled, ready or blocked job ends at once; a running job's handler
    /// is told through its context, and the job ends as cancelled when the handler returns.
    Cancel {
        /// The job's id.
        id: JobId,
    },
}

/// One job by id, or every failed job (of one kind).
#[derive(Debug, Args)]
pub struct Target {
    /// The job's id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<JobId>,
    /// Every failed job, in batches.
    #[arg(long)]
    all: bool,
    /// With --all: only failed jobs of this kind.
    #[arg(long, requires = "all")]
    kind: Option<String>,
}

/// `solidq queues …`.
#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with waiting or running jobs, or paused: ready count, latency (how long the
    /// oldest ready job has waited) and whether it is paused.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop claiming from a queue (every process, within one polling interval); jobs still
    /// arrive.
    Pause {
        /// The queue's name.
        queue: String,
    },
    /// Claim from a paused queue again.
    Resume {
        /// The queue's name.
        queue: String,
    },
}

fn parse_state(text: &str) -> Result<JobState, String> {
    JobState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
        format!("{text:?} is not a job state (use one of {})", names.join(", "))
    })
}

impl From<ActionError> for Failure {
    fn from(err: ActionError) -> Self {
        match err {
            ActionError::Store(err) => Failure::Store(err),
            other => Failure::Usage(other.to_string()),
        }
    }
}

fn json_line(out: &mut dyn Write, value: &impl serde::Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    let _ = out.write_all(text.as_bytes());
}

/// Tells that job `id` is `done`, once the action succeeded.
fn one_done(out: &mut dyn Write, id: JobId, done: &str, acted: Result<(), ActionError>) -> Result<(), Failure> {
    acted?;
    let _ = writeln!(out, "job {id} is {done}");
    Ok(())
}

/// Tells how many failed jobs are `done`.
fn failed_done(out: &mut dyn Write, done: &str, count: usize) {
    let _ = writeln!(out, "{count} failed job{} {done}", if count == 1 { " is" } else { "s are" });
}

/// Prints `rows` as one JSON array, or as a table whose `columns` are (header, right-aligned).
fn print_rows<T: serde::Serialize>(
    out: &mut dyn Write,
    json: bool,
    rows: &[T],
    columns: &[(&str, bool)],
    cells: impl Fn(&T) -> Vec<String>,
) {
    if json {
        return json_line(out, &rows);
    }
    let lines: Vec<Vec<String>> = rows.iter().map(cells).collect();
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let right: Vec<bool> = columns.iter().map(|(_, right)| *right).collect();
    let _ = out.write_all(status::table(&headers, &lines, &right).as_bytes());
}

/// Shortens `text` to one line of at most `width` characters.
fn cell(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > width || text.lines().count() > 1 {
        let mut short: String = line.chars().take(width.saturating_sub(1)).collect();
        short.push('…');
        short
    } else {
        line.to_string()
    }
}

fn when(row: &JobRow) -> String {
    let at = row.finished_at.or(row.scheduled_at).unwrap_or(row.created_at);
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Runs `solidq jobs …`.
pub(super) fn jobs(command: JobsCommand, config: &Config, out: &mut dyn Write) -> Result<(), Failure> {
    let store = connect_ready(config)?;
    match command {
        JobsCommand::List { state, queue, kind, after, limit, json } => {
            let rows = store.list_jobs(&JobFilter { state, queue, kind, after, limit })?;
            let columns = [
                ("ID", true),
                ("STATE", false),
                ("KIND", false),
                ("QUEUE", false),
                ("ATTEMPTS", true),
                ("AT (UTC)", false),
                ("ERROR", false),
            ];
            print_rows(out, json, &rows, &columns, |row| {
                let error = row.last_error.as_ref().map(|e| format!("{:?}: {}", e.kind, e.message)).unwrap_or_default();
                vec![
                    row.id.to_string(),
                    row.state.map_or("?", JobState::as_str).to_string(),
                    cell(&row.kind, 24),
                    cell(&row.queue, 12),
                    format!("{}/{}", row.attempts, row.max_attempts),
                    when(row),
                    cell(&error, 60),
                ]
            });
            if !json {
                let _ = writeln!(out, "{} {} job{}", rows.len(), state, if rows.len() == 1 { "" } else { "s" });
            }
        }
        JobsCommand::Show { id, json } => {
            let row = store.job(id)?.ok_or(ActionError::NotFound(id))?;
            let dependencies = store.dependencies(id)?;
            let batch = store.batch_of_job(id)?.map(|batch| batch.id);
            if json {
                let mut value = serde_json::to_value(&row).expect("a job serializes");
                value["depends_on"] = serde_json::json!(dependencies.depends_on);
                value["dependants"] = serde_json::json!(dependencies.dependants);
                value["batch"] = serde_json::json!(batch);
                json_line(out, &value);
                return Ok(());
            }
            let state = row.state.map_or("?", JobState::as_str);
            let _ = writeln!(
                out,
                "job {}: {} (kind {}, queue {}, priority {})",
                row.id, state, row.kind, row.queue, row.priority
            );
            let _ = writeln!(out, "attempts: {} of {}", row.attempts, row.max_attempts);
            let _ = writeln!(out, "enqueued: {} UTC", row.created_at.format("%Y-%m-%d %H:%M:%S"));
            if let Some(at) = row.scheduled_at {
                let _ = writeln!(out, "scheduled: {} UTC", at.format("%Y-%m-%d %H:%M:%S"));
            }
            if let Some(at) = row.finished_at {
                let _ = writeln!(out, "ended: {} UTC", at.format("%Y-%m-%d %H:%M:%S"));
            }
            if let Some(process) = row.process_id {
                let _ = writeln!(out, "running in process {process}");
            }
            if let Some(at) = row.cancel_requested_at {
                let _ = writeln!(out, "cancel requested: {} UTC", at.format("%Y-%m-%d %H:%M:%S"));
            }
            if let Some(key) = &row.unique_key {
                let _ = writeln!(out, "unique key: {key}");
            }
            if let Some(key) = &row.concurrency_key {
                let _ = writeln!(out, "concurrency key: {key}");
            }
            if let Some(limit) = &row.rate_limit {
                let _ = writeln!(out, "rate limit: {limit}");
            }
            if let Some(batch) = batch {
                let _ = writeln!(out, "batch: {batch} (solidq batches show {batch})");
            }
            let edges = |edges: &[crate::model::Dependency]| -> String {
                edges
                    .iter()
                    .map(|d| match d.on_failure {
                        crate::model::OnDependencyFailure::Cancel => d.job.to_string(),
                        crate::model::OnDependencyFailure::Run => format!("{} (runs even if it fails)", d.job),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !dependencies.depends_on.is_empty() {
                let _ = writeln!(out, "runs after jobs: {}", edges(&dependencies.depends_on));
            }
            if !dependencies.dependants.is_empty() {
                let _ = writeln!(out, "jobs waiting for it: {}", edges(&dependencies.dependants));
            }
            let _ = writeln!(out, "arguments: {}", row.arguments);
            if let Some(error) = &row.last_error {
                let _ = writeln!(out, "last error: {:?}: {}", error.kind, error.message);
                if let Some(cause) = &error.cause {
                    let _ = writeln!(out, "  cause: {cause}");
                }
                if let Some(backtrace) = &error.backtrace {
                    let _ = writeln!(out, "  at: {backtrace}");
                }
            }
        }
        JobsCommand::Retry(target) => {
            let done = "ready to run again";
            match target {
                Target { id: Some(id), .. } => one_done(out, id, done, store.retry_job(id, now()))?,
                Target { kind, .. } => failed_done(out, done, store.retry_failed(kind.as_deref(), now())?),
            }
        }
        JobsCommand::Discard(target) => {
            let done = "discarded";
            match target {
                Target { id: Some(id), .. } => one_done(out, id, done, store.discard_job(id, now()))?,
                Target { kind, .. } => failed_done(out, done, store.discard_failed(kind.as_deref(), now())?),
            }
        }
        JobsCommand::Cancel { id } => match store.cancel_job(id, now())? {
            Cancelled::Now => {
                let _ = writeln!(out, "job {id} is cancelled");
            }
            Cancelled::Requested => {
                let _ = writeln!(
                    out,
                    "job {id} is running: its handler is told, and the job ends as cancelled when the handler returns"
                );
            }
        },
    }
    Ok(())
}

/// Runs `solidq queues …`.
pub(super) fn queues(command: QueuesCommand, config: &Config, out: &mut dyn Write) -> Result<(), Failure> {
    let store = connect_ready(config)?;
    match command {
        QueuesCommand::List { json } => {
            let rows = store.queues(now())?;
            let columns = [
                ("QUEUE", false),
                ("READY", true),
                ("SCHEDULED", true),
                ("RUNNING", true),
                ("BLOCKED", true),
                ("WAITING", true),
                ("LATENCY (s)", true),
                ("PAUSED", false),
            ];
            print_rows(out, json, &rows, &columns, |row| {
                vec![
                    cell(&row.name, 20),
                    row.ready.to_string(),
                    row.scheduled.to_string(),
                    row.claimed.to_string(),
                    row.blocked.to_string(),
                    row.waiting.to_string(),
                    format!("{:.1}", row.latency_seconds),
                    if row.paused { "yes" } else { "no" }.to_string(),
                ]
            });
        }
        QueuesCommand::Pause { queue } => {
            let changed = store.pause_queue(&queue, now())?;
            let _ = writeln!(out, "queue {queue} {}", if changed { "is paused" } else { "was already paused" });
        }
        QueuesCommand::Resume { queue } => {
            let changed = store.resume_queue(&queue)?;
            let _ = writeln!(out, "queue {queue} {}", if changed { "is resumed" } else { "was not paused" });
        }
    }
    Ok(())
}
