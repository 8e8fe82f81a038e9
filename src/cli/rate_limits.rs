//! `solidq rate-limits`: each rate-limit key, how much of its window is used, and its jobs.

use std::io::Write;

use chrono::NaiveDateTime;

use super::common::{connect_existing, Failure};
use crate::config::Config;

fn moment(at: Option<NaiveDateTime>) -> String {
    at.map_or("-".into(), |at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

/// Runs `solidq rate-limits [--json]`.
pub(super) fn execute(json: bool, config: &Config, out: &mut dyn Write) -> Result<(), Failure> {
    let store = connect_existing(config, "reading rate limits")?;
    let usage = store.rate_limit_usage(chrono::Utc::now().naive_utc())?;
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string(&usage).expect("rate limits serialize"));
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:<24}  {:<16}  {:>9}  {:>6}  {:>9}  {:>7}  {:<23}  LAST START (UTC)",
        "KEY", "LIMIT", "IN WINDOW", "READY", "SCHEDULED", "RUNNING", "NEXT DUE (UTC)"
    );
    for key in &usage {
        let limit = key.limit.as_ref().map_or("-".into(), |limit| {
            let text = limit.to_string();
            text[text.rfind(':').map_or(0, |i| i + 1)..].to_string()
        });
        let _ = writeln!(
            out,
            "{:<24}  {:<16}  {:>9}  {:>6}  {:>9}  {:>7}  {:<23}  {}",
            key.key,
            limit,
            key.in_window,
            key.ready,
            key.scheduled,
            key.running,
            moment(key.next_due),
            moment(key.last_start)
        );
    }
    let _ = writeln!(out, "{} key{}", usage.len(), if usage.len() == 1 { "" } else { "s" });
    Ok(())
}
