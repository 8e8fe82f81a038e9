//! `solidq recurring list|add|remove`.

use std::io::Write;

use clap::Subcommand;

use super::common::{connect_existing, connect_ready, now, Failure};
use super::enqueue::read_payload;
use crate::config::Config;
use crate::recurring::{local_time, RecurringTask, RunMissed};
use crate::status;
use crate::store::{RecurringTaskRow, Removed};

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

/// The next run of the task of `row` after now (UTC), if the row reads as a task.
fn next_run(row: &RecurringTaskRow) -> Option<chrono::DateTime<chrono::Utc>> {
    row.task().ok().and_then(|task| task.next_run_after(chrono::Utc::now()))
}

pub(super) fn execute(
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
    let time = |at: Option<chrono::NaiveDateTime>| at.map_or_else(|| "-".to_string(), |at| at.to_string());
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let next = match row.task() {
                Ok(_) => time(next_run(row).map(|at| at.naive_utc())),
                Err(_) => "unreadable".to_string(),
            };
            vec![
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
    let header =
        ["KEY", "SCHEDULE", "TIME ZONE", "KIND", "QUEUE", "PRIORITY", "ORIGIN", "LAST RUN (UTC)", "NEXT RUN (UTC)"];
    status::table(&header, &lines, &[false, false, false, false, false, true, false, false, false])
}
