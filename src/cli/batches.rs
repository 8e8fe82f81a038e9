//! `solidq batches list|show`.

use std::io::Write;

use clap::Subcommand;

use super::common::{connect_existing, Failure};
use crate::config::Config;
use crate::store::composition::{BatchInfo, CallbackKind};

/// The subcommands of `solidq batches`.
#[derive(Debug, Subcommand)]
pub enum BatchesCommand {
    /// List the newest batches: size, pending, finished, failed, and whether their callbacks ran.
    List {
        /// Only batches with jobs that have not ended.
        #[arg(long)]
        open: bool,
        /// How many [default: 50].
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one batch: its counts, its callbacks and the jobs enqueued for them, and its jobs.
    Show {
        /// The batch's id.
        id: i64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn when(kind: CallbackKind) -> &'static str {
    match kind {
        CallbackKind::Success => "on_success",
        CallbackKind::Finish => "on_finish",
        CallbackKind::Failure => "on_failure",
    }
}

/// One line per callback: `on_success=mail.done → job 42`, or `(not run)`.
fn callbacks_text(info: &BatchInfo) -> String {
    if info.callbacks.is_empty() {
        return "-".into();
    }
    info.callbacks
        .iter()
        .map(|c| match c.job {
            Some(job) => format!("{}={} → job {job}", when(c.when), c.kind),
            None if info.is_finished() => format!("{}={} (not for this outcome)", when(c.when), c.kind),
            None => format!("{}={} (not yet)", when(c.when), c.kind),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `solidq batches …`.
pub(super) fn execute(command: BatchesCommand, config: &Config, out: &mut dyn Write) -> Result<(), Failure> {
    let store = connect_existing(config, "reading batches")?;
    match command {
        BatchesCommand::List { open, limit, json } => {
            if limit < 1 {
                return Err(Failure::Usage(format!("--limit must be at least 1, got {limit}")));
            }
            let batches = store.batches(limit, open)?;
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string(&batches).expect("batches serialize"));
                return Ok(());
            }
            let _ = writeln!(
                out,
                "{:>8}  {:>6}  {:>7}  {:>8}  {:>6}  {:<19}  CALLBACKS",
                "ID", "SIZE", "PENDING", "FINISHED", "FAILED", "ENDED (UTC)"
            );
            for info in &batches {
                let ended = info.finished_at.map_or("-".into(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string());
                let _ = writeln!(
                    out,
                    "{:>8}  {:>6}  {:>7}  {:>8}  {:>6}  {:<19}  {}",
                    info.id,
                    info.size,
                    info.pending,
                    info.succeeded,
                    info.failed,
                    ended,
                    callbacks_text(info)
                );
            }
            let _ = writeln!(out, "{} batch{}", batches.len(), if batches.len() == 1 { "" } else { "es" });
        }
        BatchesCommand::Show { id, json } => {
            let info = store.batch(id)?.ok_or_else(|| Failure::Usage(format!("batch {id} does not exist")))?;
            let jobs = store.batch_job_ids(id)?;
            if json {
                let mut value = serde_json::to_value(&info).expect("a batch serializes");
                value["jobs"] = serde_json::json!(jobs);
                let _ = writeln!(out, "{value}");
                return Ok(());
            }
            let state = if info.is_finished() { "ended" } else { "open" };
            let _ = writeln!(out, "batch {}: {state}", info.id);
            if let Some(description) = &info.description {
                let _ = writeln!(out, "description: {description}");
            }
            let _ = writeln!(
                out,
                "jobs: {} ({} pending, {} finished, {} failed, discarded or cancelled)",
                info.size, info.pending, info.succeeded, info.failed
            );
            let _ = writeln!(out, "created: {} UTC", info.created_at.format("%Y-%m-%d %H:%M:%S"));
            if let Some(at) = info.finished_at {
                let _ = writeln!(out, "ended: {} UTC", at.format("%Y-%m-%d %H:%M:%S"));
            }
            let _ = writeln!(out, "callbacks: {}", callbacks_text(&info));
            let shown: Vec<String> = jobs.iter().take(50).map(|id| id.to_string()).collect();
            let more = if jobs.len() > 50 { format!(" … and {} more", jobs.len() - 50) } else { String::new() };
            let _ = writeln!(out, "job ids: {}{more}", shown.join(" "));
        }
    }
    Ok(())
}
