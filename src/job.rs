//! The public job API: the [`Job`] trait, the [`Perform`] message handlers receive, [`JobError`],
//! and [`EnqueueOptions`].

use std::fmt;
use std::time::Duration;

use actix::Message;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{latest_schedule, ConcurrencyLimit, JobId, NewJob};

/// Default number of executions a job may start before it is failed for good.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;
/// Default queue name.
pub const DEFAULT_QUEUE: &str = "default";
/// Longest delay [`default_backoff`] ever returns.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A unit of background work: a serde-serializable struct with a stable kind name.
///
/// The kind is stored with the job and selects the handler at run time, so it must stay the
/// same across deploys even when the Rust type is renamed.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct WelcomeEmail {
///     user_id: i64,
/// }
///
/// impl solidq::Job for WelcomeEmail {
///     const KIND: &'static str = "mailer.welcome";
///     const QUEUE: &'static str = "mailers";
///     const PRIORITY: i32 = 10;
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Stable name of this kind of job, e.g. `"mailer.welcome"`.
    const KIND: &'static str;
    /// Queue a job goes to unless [`EnqueueOptions::queue`] says otherwise.
    const QUEUE: &'static str = DEFAULT_QUEUE;
    /// Priority unless overridden; lower runs first.
    const PRIORITY: i32 = 0;
    /// How many executions may start before the job is failed for good.
    const MAX_ATTEMPTS: i32 = DEFAULT_MAX_ATTEMPTS;

    /// Delay before the next attempt after attempt number `attempt` (1-based) failed;
    /// [`default_backoff`] unless overridden.
    fn backoff(attempt: i32) -> Duration {
        default_backoff(attempt)
    }

    /// A key that makes this job unique: while a job with the same key may still run
    /// (scheduled, ready, running or blocked), enqueueing this one returns that job's id
    /// instead (see [`Queue::enqueue_unique`](crate::Queue::enqueue_unique) to tell which
    /// happened). `None` (the default): no uniqueness. [`EnqueueOptions::unique_key`]
    /// overrides it per enqueue.
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// A concurrency limit derived from the arguments, e.g. at most 2 jobs per account at
    /// once (see [`ConcurrencyLimit`]). `None` (the default): no limit.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use solidq::model::ConcurrencyLimit;
    /// #[derive(Serialize, Deserialize)]
    /// struct Sync { account: i64 }
    /// impl solidq::Job for Sync {
    ///     const KIND: &'static str = "account.sync";
    ///     fn concurrency(&self) -> Option<ConcurrencyLimit> {
    ///         Some(ConcurrencyLimit::new(format!("account:{}", self.account), 2))
    ///     }
    /// }
    /// ```
    fn concurrency(&self) -> Option<ConcurrencyLimit> {
        None
    }
}

/// Exponential backoff with jitter: about 2, 4, 8, ... seconds after attempts 1, 2, 3, ...,
/// each between 75% and 125% of that (so that jobs that failed together do not all retry
/// together), never more than [`MAX_BACKOFF`].
///
/// ```
/// use std::time::Duration;
/// let first = solidq::job::default_backoff(1);
/// assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
/// let third = solidq::job::default_backoff(3);
/// assert!(third >= Duration::from_secs(6) && third <= Duration::from_secs(10));
/// assert!(solidq::job::default_backoff(50) <= solidq::job::MAX_BACKOFF);
/// ```
pub fn default_backoff(attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 20) as u32;
    let base = Duration::from_secs(2u64.saturating_pow(exponent));
    base.mul_f64(0.75 + fastrand::f64() * 0.5).min(MAX_BACKOFF)
}

/// What a handler knows about the execution it is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMeta {
    /// Row id of the job.
    pub id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The queue it was claimed from.
    pub queue: String,
    /// 1 for the first execution, 2 for the first retry, ...
    pub attempt: i32,
    /// Executions allowed in all.
    pub max_attempts: i32,
}

/// The message a job-handler actor receives, one per execution.
///
/// Register an actor that implements `Handler<Perform<J>>` with
/// [`Runtime::register`](crate::Runtime::register) (async actor) or
/// [`Runtime::register_sync`](crate::Runtime::register_sync) (blocking actor on a `SyncArbiter`).
///
/// ```
/// use actix::prelude::*;
/// use serde::{Deserialize, Serialize};
/// use solidq::{Job, JobError, Perform};
///
/// #[derive(Serialize, Deserialize)]
/// struct Ping { n: u32 }
/// impl Job for Ping { const KIND: &'static str = "ping"; }
///
/// struct Pinger;
/// impl Actor for Pinger { type Context = Context<Self>; }
/// impl Handler<Perform<Ping>> for Pinger {
///     type Result = Result<(), JobError>;
///     fn handle(&mut self, msg: Perform<Ping>, _: &mut Context<Self>) -> Self::Result {
///         if msg.job.n == 0 { return Err(JobError::new("n must be positive")); }
///         Ok(())
///     }
/// }
/// ```
pub struct Perform<J: Job> {
    /// The deserialized job arguments.
    pub job: J,
    /// Id, kind, queue and attempt of this execution.
    pub meta: JobMeta,
}

impl<J: Job> Message for Perform<J> {
    type Result = Result<(), JobError>;
}

/// Why a handler did not complete a job, and what should happen to it.
///
/// | Constructor | The job |
/// |---|---|
/// | [`JobError::new`] (or `?` on any error) | retried after [`Job::backoff`] while attempts remain, then failed |
/// | [`JobError::retry_in`] | retried after the given delay while attempts remain, then failed |
/// | [`JobError::permanent`] | failed now, whatever attempts remain (it can be retried by hand) |
/// | [`JobError::discard`] | ended as discarded: kept with the message, never retried |
/// | [`JobError::snooze`] | run again after the delay; the attempt is not counted |
///
/// A panic counts as [`JobError::new`] with the panic message.
///
/// ```
/// use std::time::Duration;
/// use solidq::JobError;
/// let transient = JobError::new("smtp timeout");
/// assert!(transient.is_retryable());
/// let permanent = JobError::permanent("no such user");
/// assert!(!permanent.is_retryable());
/// let later = JobError::retry_in("rate limited", Duration::from_secs(30));
/// assert_eq!(later.delay(), Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    action: ErrorAction,
}

/// What a [`JobError`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Retry after the kind's backoff, or after the delay given.
    Retry(Option<Duration>),
    /// Fail now.
    Fail,
    /// End as discarded.
    Discard,
    /// Run again after the delay without counting the attempt.
    Snooze(Duration),
}

impl JobError {
    /// A retryable failure: retried after [`Job::backoff`] while attempts remain.
    pub fn new(message: impl Into<String>) -> Self {
        JobError { message: message.into(), action: ErrorAction::Retry(None) }
    }

    /// A retryable failure to retry after `delay` (not the kind's backoff).
    pub fn retry_in(message: impl Into<String>, delay: Duration) -> Self {
        JobError { message: message.into(), action: ErrorAction::Retry(Some(delay)) }
    }

    /// A failure that no retry can fix: the job goes to failed at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError { message: message.into(), action: ErrorAction::Fail }
    }

    /// The job is not worth running again: it ends as discarded with `message` kept as its
    /// last error (listed by `solidq jobs list --state discarded`), and is never retried.
    pub fn discard(message: impl Into<String>) -> Self {
        JobError { message: message.into(), action: ErrorAction::Discard }
    }

    /// Not now: run the job again after `delay` without counting this attempt and without
    /// recording an error (River's and Oban's snooze), e.g. while a resource is busy.
    pub fn snooze(delay: Duration) -> Self {
        JobError {
            message: format!("snoozed for {}", crate::config::format_duration(delay)),
            action: ErrorAction::Snooze(delay),
        }
    }

    /// The message recorded with the failure.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the error asks for.
    pub fn action(&self) -> ErrorAction {
        self.action
    }

    /// Whether another attempt may be scheduled (a retry or a snooze).
    pub fn is_retryable(&self) -> bool {
        matches!(self.action, ErrorAction::Retry(_) | ErrorAction::Snooze(_))
    }

    /// The delay asked for by [`JobError::retry_in`] or [`JobError::snooze`].
    pub fn delay(&self) -> Option<Duration> {
        match self.action {
            ErrorAction::Retry(delay) => delay,
            ErrorAction::Snooze(delay) => Some(delay),
            ErrorAction::Fail | ErrorAction::Discard => None,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        JobError::new(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        JobError::new(message)
    }
}

impl From<std::io::Error> for JobError {
    fn from(err: std::io::Error) -> Self {
        JobError::new(err.to_string())
    }
}

impl From<serde_json::Error> for JobError {
    fn from(err: serde_json::Error) -> Self {
        JobError::new(err.to_string())
    }
}

/// Per-enqueue overrides of a job's defaults.
///
/// ```
/// use std::time::Duration;
/// let opts = solidq::EnqueueOptions::new()
///     .queue("reports")
///     .priority(-5)
///     .run_in(Duration::from_secs(30));
/// assert_eq!(opts.queue.as_deref(), Some("reports"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    /// Queue name instead of [`Job::QUEUE`].
    pub queue: Option<String>,
    /// Priority instead of [`Job::PRIORITY`]; lower runs first.
    pub priority: Option<i32>,
    /// Earliest time to run; `None` means now. [`EnqueueOptions::run_in`] replaces it.
    pub run_at: Option<DateTime<Utc>>,
    /// Earliest time to run as a delay from when the job is built; replaces `run_at`. A delay
    /// that reaches past [`latest_schedule`](crate::model::latest_schedule) is refused with
    /// [`EnqueueError::Invalid`] when the job is built, not a panic.
    pub run_in: Option<Duration>,
    /// Attempts instead of [`Job::MAX_ATTEMPTS`].
    pub max_attempts: Option<i32>,
    /// Uniqueness key instead of [`Job::unique_key`].
    pub unique_key: Option<String>,
    /// Concurrency limit instead of [`Job::concurrency`].
    pub concurrency: Option<ConcurrencyLimit>,
}

impl EnqueueOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Put the job on `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Run with `priority` (lower first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Run no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self.run_in = None;
        self
    }

    /// Run no earlier than `delay` from now (from when the job is built). Any delay is
    /// accepted here; one too long to store is an [`EnqueueError::Invalid`] at enqueue.
    pub fn run_in(mut self, delay: Duration) -> Self {
        self.run_in = Some(delay);
        self.run_at = None;
        self
    }

    /// Allow `attempts` executions.
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Make the job unique by `key` (see [`Job::unique_key`]).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Limit the job's concurrency (see [`Job::concurrency`]).
    pub fn concurrency(mut self, limit: ConcurrencyLimit) -> Self {
        self.concurrency = Some(limit);
        self
    }
}

/// Why a job could not be enqueued. `Debug` prints the same text as `Display`.
#[derive(thiserror::Error)]
pub enum EnqueueError {
    /// The job's arguments did not serialize to JSON.
    #[error("job of kind {kind} does not serialize to JSON: {source}")]
    Serialize {
        /// The job's kind.
        kind: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// An option is out of range.
    #[error("job of kind {kind}: {problem}")]
    Invalid {
        /// The job's kind.
        kind: String,
        /// What is wrong.
        problem: String,
    },
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// So that an enqueue can end the caller's own diesel transaction closure with `?`:
/// `conn.transaction(|conn| Queue::enqueue_in(conn, &job, opts))`.
impl From<diesel::result::Error> for EnqueueError {
    fn from(source: diesel::result::Error) -> Self {
        EnqueueError::Store(crate::store::StoreError::Query { action: "the application's transaction", source })
    }
}

impl fmt::Debug for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl NewJob {
    /// Serializes `job` and applies its defaults and `opts`.
    pub fn from_job<J: Job>(job: &J, mut opts: EnqueueOptions) -> Result<NewJob, EnqueueError> {
        let arguments = serde_json::to_string(job)
            .map_err(|source| EnqueueError::Serialize { kind: J::KIND.to_string(), source })?;
        if opts.unique_key.is_none() {
            opts.unique_key = job.unique_key();
        }
        if opts.concurrency.is_none() {
            opts.concurrency = job.concurrency();
        }
        Self::build(J::KIND, arguments, J::QUEUE, J::PRIORITY, J::MAX_ATTEMPTS, opts)
    }

    /// A job from a kind and a JSON value, with the library defaults and `opts`.
    pub fn from_json(kind: &str, arguments: serde_json::Value, opts: EnqueueOptions) -> Result<NewJob, EnqueueError> {
        Self::build(kind, arguments.to_string(), DEFAULT_QUEUE, 0, DEFAULT_MAX_ATTEMPTS, opts)
    }

    fn build(
        kind: &str,
        arguments: String,
        default_queue: &str,
        default_priority: i32,
        default_attempts: i32,
        opts: EnqueueOptions,
    ) -> Result<NewJob, EnqueueError> {
        let invalid = |problem: String| EnqueueError::Invalid { kind: kind.to_string(), problem };
        let now = Utc::now();
        let run_at = match (opts.run_in, opts.run_at) {
            (Some(delay), _) => Some(
                chrono::Duration::from_std(delay)
                    .ok()
                    .and_then(|delay| now.checked_add_signed(delay))
                    .filter(|at| at.naive_utc() <= latest_schedule())
                    .ok_or_else(|| {
                        invalid(format!(
                            "a delay of {} reaches past {} UTC, the latest time solidq stores",
                            crate::config::format_duration(delay),
                            latest_schedule()
                        ))
                    })?,
            ),
            (None, at) => at,
        };
        let job = NewJob {
            kind: kind.to_string(),
            arguments,
            queue: opts.queue.unwrap_or_else(|| default_queue.to_string()),
            priority: opts.priority.unwrap_or(default_priority),
            max_attempts: opts.max_attempts.unwrap_or(default_attempts),
            scheduled_at: run_at.filter(|at| *at > now).map(|at| at.naive_utc()),
            unique_key: opts.unique_key,
            concurrency: opts.concurrency,
        };
        match job.problem() {
            Some(problem) => Err(invalid(problem)),
            None => Ok(job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_override_defaults_and_reject_bad_values() {
        let job = NewJob::from_json("k", serde_json::json!([1]), EnqueueOptions::new().queue("q").priority(3)).unwrap();
        assert_eq!((job.queue.as_str(), job.priority, job.arguments.as_str()), ("q", 3, "[1]"));
        assert!(NewJob::from_json("k", serde_json::json!(null), EnqueueOptions::new().max_attempts(0)).is_err());
        assert!(NewJob::from_json("", serde_json::json!(null), EnqueueOptions::new()).is_err());
        assert!(NewJob::from_json("k", serde_json::json!(null), EnqueueOptions::new().queue("a*")).is_err());
        let later = NewJob::from_json("k", serde_json::json!(1), EnqueueOptions::new().run_in(Duration::from_secs(60)))
            .unwrap();
        assert!(later.scheduled_at.is_some());
    }

    #[test]
    fn a_delay_too_long_to_store_is_a_named_error_not_a_panic() {
        let opts = || EnqueueOptions::new().run_in(Duration::from_secs(u64::MAX));
        let err = NewJob::from_json("report", serde_json::json!({}), opts()).unwrap_err();
        assert!(
            matches!(&err, EnqueueError::Invalid { kind, problem } if kind == "report"
            && problem.contains("reaches past 9999-12-31 23:59:59 UTC")),
            "{err}"
        );
        let far = chrono::DateTime::<Utc>::MAX_UTC;
        let err = NewJob::from_json("report", serde_json::json!({}), EnqueueOptions::new().run_at(far)).unwrap_err();
        assert!(err.to_string().contains("the latest time solidq stores"), "{err}");
        // The last builder call wins.
        let now = NewJob::from_json("k", serde_json::json!(1), opts().run_at(Utc::now())).unwrap();
        assert_eq!(now.scheduled_at, None);
    }
}
