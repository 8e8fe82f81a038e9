//! `solidq enqueue`: a job from the command line, with a warning when no live process would
//! run it.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;

use super::common::{connect_ready, now, Failure};
use crate::config::{parse_duration, Config};
use crate::job::{EnqueueError, EnqueueOptions};
use crate::model::{ConcurrencyLimit, NewJob, RateLimit};
use crate::status;
use crate::store::Store;

/// The arguments of `solidq enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job's kind, which selects its handler, e.g. mailer.welcome.
    pub kind: String,
    /// The job's arguments as JSON, e.g. '{"user_id": 42}'; `-` reads them from standard
    /// input and `@path` from a file (for payloads too large for a command line).
    #[arg(value_name = "JSON", allow_hyphen_values = true)]
    pub payload: String,
    /// Queue to put the job on [default: default].
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Priority; lower runs first [default: 0].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run no earlier than this from now: 500ms, 10s, 5m, 1h or bare seconds.
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_delay, allow_hyphen_values = true)]
    pub delay: Option<Duration>,
    /// Executions allowed before the job is failed for good [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<i32>,
    /// Enqueue nothing if a job with this unique key may still run; print its id instead
    /// (and say so on standard error).
    #[arg(long, value_name = "KEY")]
    pub unique_key: Option<String>,
    /// Share a concurrency limit with the jobs of this key: at most --concurrency-limit of
    /// them ready or running at once, the others wait as blocked.
    #[arg(long, value_name = "KEY")]
    pub concurrency_key: Option<String>,
    /// With --concurrency-key: how many at once [default: 1].
    #[arg(long, value_name = "N", requires = "concurrency_key")]
    pub concurrency_limit: Option<i32>,
    /// With --concurrency-key: how long a running holder counts [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_delay, requires = "concurrency_key")]
    pub concurrency_duration: Option<Duration>,
    /// A global rate limit shared with the jobs of KEY: at most N starts per PERIOD across
    /// every process, e.g. email:100/1m; jobs over it wait as scheduled.
    #[arg(long, value_name = "KEY:N/PERIOD", value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,
    /// Run only after these jobs finished (comma-separated ids); cancelled if one of them fails
    /// for good, is discarded or cancelled. Until then the job is `waiting`.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub after: Vec<i64>,
    /// Run after these jobs ended, however they ended (comma-separated ids).
    #[arg(long = "after-any", value_name = "IDS", value_delimiter = ',')]
    pub after_any: Vec<i64>,
}

/// A delay for `--in`: a duration, never negative (clap would otherwise take `-5s` for an
/// option and say something confusing).
pub(super) fn parse_delay(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err("a delay cannot be negative (use e.g. 500ms, 10s, 5m, 1h or bare seconds; leave out --in to run \
                    the job now)"
            .to_string());
    }
    parse_duration(text)
}

/// A rate limit for `--rate-limit`, e.g. `email:100/1m`.
fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    RateLimit::parse(text).map_err(|malformed| malformed.to_string())
}

/// The payload as given: JSON text, `-` for standard input, or `@path` for a file.
pub(super) fn read_payload(payload: &str) -> Result<String, Failure> {
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

/// Enqueues the job `args` describe and prints its id, or the id of the job holding its
/// unique key.
pub(super) fn enqueue(
    args: EnqueueArgs,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let EnqueueArgs {
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
        rate_limit,
        after,
        after_any,
    } = args;
    let payload = read_payload(&payload)?;
    let arguments: serde_json::Value =
        serde_json::from_str(&payload).map_err(|e| Failure::Usage(format!("the payload is not valid JSON: {e}")))?;
    let mut opts = EnqueueOptions::new();
    opts.queue = queue;
    opts.priority = priority;
    opts.max_attempts = max_attempts;
    opts.unique_key = unique_key;
    if let Some(key) = concurrency_key {
        let mut limit = ConcurrencyLimit::new(key, concurrency_limit.unwrap_or(1));
        if let Some(duration) = concurrency_duration {
            limit = limit.duration(duration);
        }
        opts.concurrency = Some(limit);
    }
    opts.rate_limit = rate_limit;
    if let Some(delay) = delay {
        opts = opts.run_in(delay);
    }
    opts = opts.after(&after).after_any_outcome(&after_any);
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
    Ok(())
}

/// Warnings for a job of `kind` just enqueued on `queue` that no live process would run.
fn unserved_warnings(store: &Store, config: &Config, kind: &str, queue: &str) -> Vec<String> {
    let Ok(processes) = store.processes() else { return Vec::new() };
    let now = now();
    let live = status::live_served(&processes, now, config.alive_threshold);
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
