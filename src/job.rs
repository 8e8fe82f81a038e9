//! The public job API: the [`Job`] trait, the [`Perform`] message handlers receive, [`JobError`],
//! [`Cancellation`] and [`EnqueueOptions`].

use std::fmt;
use std::sync::{Arc, OnceLock};
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
    /// How long one execution may run; `None` (the default): no limit.
    ///
    /// When a handler has not answered within the timeout, its [`JobMeta::cancellation`] fires
    /// with [`CancelReason::Timeout`], the runtime stops waiting for it and records a failure
    /// of kind [`FailureKind::Timeout`](crate::model::FailureKind::Timeout), retried after
    /// [`Job::backoff`] while attempts remain, then failed. The worker slot is free at once. A
    /// blocking handler (`register_sync`) whose thread is still busy gets its pool replaced,
    /// and an async actor whose thread is blocked is started again on a new arbiter, so later
    /// jobs do not queue behind it. Whatever the abandoned execution returns later is dropped.
    ///
    /// **A timeout is the one case where a job may run again while an abandoned execution of
    /// it still runs in a live process**: a thread cannot be killed, so the handler that ran
    /// past its time goes on until it returns by itself, while the retry runs elsewhere.
    /// Write handlers with a timeout to be idempotent, or to watch `meta.cancellation` (check
    /// [`Cancellation::is_cancelled`] between steps, or select on
    /// [`Cancellation::cancelled`]) and stop. `solidq status` lists a process's abandoned
    /// executions until they return.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use std::time::Duration;
    /// #[derive(Serialize, Deserialize)]
    /// struct Report { month: u32 }
    /// impl solidq::Job for Report {
    ///     const KIND: &'static str = "report.monthly";
    ///     const TIMEOUT: Option<Duration> = Some(Duration::from_secs(300));
    /// }
    /// ```
    const TIMEOUT: Option<Duration> = None;

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

/// Why an execution's [`Cancellation`] fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// The handler ran past [`Job::TIMEOUT`]: the job is recorded as failed (and retried while
    /// attempts remain) whatever the handler returns now.
    Timeout,
    /// An operator cancelled the job (`solidq jobs cancel`,
    /// [`Store::cancel_job`](crate::Store::cancel_job)): it ends as cancelled whatever the
    /// handler returns.
    Cancelled,
    /// The process is shutting down and its drain timeout passed: the claim goes back to ready
    /// and whatever the handler returns now is dropped.
    Shutdown,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Timeout => "timeout",
            CancelReason::Cancelled => "cancelled",
            CancelReason::Shutdown => "shutdown",
        })
    }
}

/// Tells a running handler that nobody waits for its result any more: its job timed out, was
/// cancelled by an operator, or its process is shutting down. Each execution has its own,
/// in [`JobMeta::cancellation`]; clones share it.
///
/// The runtime never interrupts a handler: a handler that ignores its token runs to its end,
/// and its job still ends as the reason says. A handler that watches it can stop early:
/// check [`Cancellation::is_cancelled`] between steps of blocking work, or select on
/// [`Cancellation::cancelled`] in an async handler:
///
/// ```
/// use std::time::Duration;
/// use actix::prelude::*;
/// use futures_util::future::{select, Either};
/// use serde::{Deserialize, Serialize};
/// use solidq::{Job, JobError, Perform};
///
/// #[derive(Serialize, Deserialize)]
/// struct Export { rows: u64 }
/// impl Job for Export {
///     const KIND: &'static str = "export";
///     const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
/// }
///
/// struct Exporter;
/// impl Actor for Exporter { type Context = Context<Self>; }
/// impl Handler<Perform<Export>> for Exporter {
///     type Result = ResponseFuture<Result<(), JobError>>;
///     fn handle(&mut self, msg: Perform<Export>, _: &mut Context<Self>) -> Self::Result {
///         let cancellation = msg.meta.cancellation.clone();
///         Box::pin(async move {
///             let work = Box::pin(actix_rt::time::sleep(Duration::from_millis(msg.job.rows)));
///             match select(work, Box::pin(cancellation.cancelled())).await {
///                 Either::Left(_) => Ok(()),
///                 // Timed out or cancelled: what we return now is not what the job becomes.
///                 Either::Right(_) => Err(JobError::new(format!(
///                     "stopped: {}", cancellation.reason().map(|r| r.to_string()).unwrap_or_default()
///                 ))),
///             }
///         })
///     }
/// }
///
/// let token = solidq::Cancellation::new();
/// assert!(!token.is_cancelled());
/// token.cancel(solidq::CancelReason::Cancelled);
/// assert_eq!(token.reason(), Some(solidq::CancelReason::Cancelled));
/// ```
#[derive(Clone, Default)]
pub struct Cancellation(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    reason: OnceLock<CancelReason>,
    fired: tokio::sync::Notify,
}

impl Cancellation {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token with `reason`, waking every [`Cancellation::cancelled`]. The first
    /// reason stays: returns whether this call fired it.
    pub fn cancel(&self, reason: CancelReason) -> bool {
        let fired = self.0.reason.set(reason).is_ok();
        if fired {
            self.0.fired.notify_waiters();
        }
        fired
    }

    /// Whether the token fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.reason.get().is_some()
    }

    /// Why the token fired, if it did.
    pub fn reason(&self) -> Option<CancelReason> {
        self.0.reason.get().copied()
    }

    /// Resolves once the token fires (at once if it already has).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.fired.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a fire between the check and the wait wakes it.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cancellation").field(&self.reason()).finish()
    }
}

/// Two tokens are equal when they are the same token (clones of one another).
impl PartialEq for Cancellation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancellation {}

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
    /// Fires when nobody waits for this execution any more (timeout, operator cancel,
    /// shutdown): see [`Cancellation`]. Compared by identity in `JobMeta`'s equality.
    pub cancellation: Cancellation,
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
            message: format!("snoozed for {}", crate::model::duration::format_duration(delay)),
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
    /// that reaches past [`latest_schedule`] is refused with
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
    #[error("job of kind {} does not serialize to JSON: {source}", crate::model::shown_name(kind))]
    Serialize {
        /// The job's kind.
        kind: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// An option is out of range.
    #[error("job of kind {}: {problem}", crate::model::shown_name(kind))]
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
                            crate::model::duration::format_duration(delay),
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
    fn a_token_fires_once_for_every_clone_and_keeps_its_first_reason() {
        let token = Cancellation::new();
        let clone = token.clone();
        assert_eq!((token.is_cancelled(), token.reason()), (false, None));
        assert!(clone.cancel(CancelReason::Timeout));
        assert!(!token.cancel(CancelReason::Cancelled), "the first reason stays");
        assert_eq!(token.reason(), Some(CancelReason::Timeout));
        assert!(token.is_cancelled());
        assert_eq!(token, clone);
        assert_ne!(token, Cancellation::new());
        assert_eq!(format!("{token:?}"), "Cancellation(Some(Timeout))");
    }

    #[actix_rt::test]
    async fn cancelled_resolves_when_the_token_fires_and_at_once_after() {
        let token = Cancellation::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let token = token.clone();
                actix_rt::spawn(async move { token.cancelled().await })
            })
            .collect();
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "nothing fired yet");
        token.cancel(CancelReason::Cancelled);
        for waiter in waiters {
            actix_rt::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        }
        actix_rt::time::timeout(Duration::from_millis(10), token.cancelled()).await.unwrap();
    }

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
