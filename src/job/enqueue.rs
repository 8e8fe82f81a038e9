//! Enqueueing: the options of one enqueue, how a typed job or raw JSON becomes a [`NewJob`],
//! and what an enqueue can fail with.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Job, DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE};
use crate::model::{latest_schedule, ConcurrencyLimit, Dependency, JobId, NewJob, OnDependencyFailure, RateLimit};

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
    /// Jobs that must end before this one runs: see [`EnqueueOptions::after`].
    pub after: Vec<Dependency>,
    /// Rate limit instead of [`Job::rate_limit`].
    pub rate_limit: Option<RateLimit>,
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

    /// Limit how often jobs with the limit's key start, across every process (see
    /// [`RateLimit`] and [`Job::rate_limit`]).
    ///
    /// ```
    /// use solidq::model::RateLimit;
    /// let opts = solidq::EnqueueOptions::new().rate_limit(RateLimit::per_minute("email", 100));
    /// assert_eq!(opts.rate_limit.unwrap().to_string(), "email:100/1m");
    /// ```
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Run only after every job of `jobs` finished: until then the job waits in the state
    /// `waiting` (neither ready nor scheduled); if one of them fails for good, is discarded or
    /// cancelled, this job is cancelled (and the jobs waiting for it in turn). A job that
    /// already finished counts as done; an id that names no job is refused at enqueue.
    ///
    /// ```
    /// let opts = solidq::EnqueueOptions::new().after(&[41, 42]).after_any_outcome(&[43]);
    /// assert_eq!(opts.after.len(), 3);
    /// ```
    pub fn after(mut self, jobs: &[JobId]) -> Self {
        self.after.extend(jobs.iter().map(|&job| Dependency { job, on_failure: OnDependencyFailure::Cancel }));
        self
    }

    /// Like [`EnqueueOptions::after`], but the job runs once each of `jobs` has ended,
    /// whatever the outcome (a clean-up step, a report).
    pub fn after_any_outcome(mut self, jobs: &[JobId]) -> Self {
        self.after.extend(jobs.iter().map(|&job| Dependency { job, on_failure: OnDependencyFailure::Run }));
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
    /// Only in the inline mode of [`crate::testing::TestQueue`]: the job was enqueued and run
    /// at once, and it (or a job its run made ready) did not succeed, or running it was
    /// refused (nested deeper than [`crate::testing::MAX_INLINE_DEPTH`], no handler for its
    /// kind). The text says which job and why.
    #[error("{0}")]
    Inline(String),
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
        if opts.rate_limit.is_none() {
            opts.rate_limit = job.rate_limit();
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
            after: opts.after,
            rate_limit: opts.rate_limit,
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
