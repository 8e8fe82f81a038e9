//! What a handler returns when its job did not succeed, and what that asks of the runtime.

use std::fmt;
use std::time::Duration;

/// Why a handler did not complete a job, and what should happen to it.
///
/// | Constructor | The job |
/// |---|---|
/// | [`JobError::new`] (or `?` on any error) | retried after [`Job::backoff`](super::Job::backoff) while attempts remain, then failed |
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
    /// A retryable failure: retried after [`Job::backoff`](super::Job::backoff) while attempts remain.
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
