//! What an execution's outcome means for its job: the one place that turns a handler's
//! [`Outcome`] into a store transition.
//!
//! Attempts are counted when an execution starts (the claim counts it). A claim handed back
//! unstarted gives its attempt back ([`Transition::Release`]); an execution that started and
//! ended keeps it, whatever the ending.

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::registry::Outcome;
use crate::store::{ClaimToken, ClaimedJob, FailureRecord, Fenced, Store, StoreResult};

/// The change an outcome asks of the store, written with the claim's token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transition {
    /// The job is done.
    Complete,
    /// Run again after the delay; the attempt stays counted.
    Retry(FailureRecord, Duration),
    /// Failed for good.
    Fail(FailureRecord),
    /// Back to ready without counting the attempt: the job never started.
    Release,
}

impl Transition {
    /// The transition for `outcome` of an execution of `job`: errors and panics are retried
    /// while attempts remain, an execution cut short after it may have started is retried at
    /// once (its attempt counted), a job that never started is released.
    pub(crate) fn decide(outcome: Outcome, job: &ClaimedJob) -> Transition {
        let attempts_left = job.attempts < job.max_attempts;
        match outcome {
            Outcome::Succeeded => Transition::Complete,
            Outcome::Failed { error, retryable, retry_in } if retryable && attempts_left => {
                Transition::Retry(error, retry_in)
            }
            Outcome::Failed { error, .. } => Transition::Fail(error),
            Outcome::NotStarted(_) => Transition::Release,
            Outcome::Interrupted(why) => {
                let error = FailureRecord { class: "Interrupted".into(), message: why, backtrace: None };
                if attempts_left {
                    Transition::Retry(error, Duration::ZERO)
                } else {
                    Transition::Fail(error)
                }
            }
        }
    }

    /// Writes the transition if the claim behind `token` is still this process's.
    pub(crate) fn apply(&self, store: &dyn Store, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        match self {
            Transition::Complete => store.finish(token, now),
            Transition::Fail(error) => store.fail(token, error, now),
            Transition::Retry(error, delay) => {
                let run_at = chrono::Duration::from_std(*delay)
                    .ok()
                    .and_then(|delay| now.checked_add_signed(delay))
                    .unwrap_or(NaiveDateTime::MAX);
                store.retry(token, error, run_at, now)
            }
            Transition::Release => store.release(token, now),
        }
    }

    /// What the transition does, for logs.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Transition::Complete => "finished",
            Transition::Fail(_) => "failed",
            Transition::Retry(..) => "retry scheduled",
            Transition::Release => "released",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: i32, max_attempts: i32) -> ClaimedJob {
        ClaimedJob {
            token: ClaimToken { job_id: 1, claim_id: 1 },
            kind: "k".into(),
            arguments: "{}".into(),
            queue: "q".into(),
            priority: 0,
            attempts,
            max_attempts,
        }
    }

    fn failed(retryable: bool) -> Outcome {
        Outcome::Failed {
            error: FailureRecord { class: "JobError".into(), message: "boom".into(), backtrace: None },
            retryable,
            retry_in: Duration::from_secs(2),
        }
    }

    #[test]
    fn errors_retry_while_attempts_remain_then_fail() {
        assert!(matches!(Transition::decide(failed(true), &job(1, 3)), Transition::Retry(_, d) if d.as_secs() == 2));
        assert!(matches!(Transition::decide(failed(true), &job(3, 3)), Transition::Fail(_)));
        assert!(matches!(Transition::decide(failed(false), &job(1, 3)), Transition::Fail(_)));
        assert_eq!(Transition::decide(Outcome::Succeeded, &job(3, 3)), Transition::Complete);
    }

    #[test]
    fn unstarted_jobs_are_released_and_interrupted_runs_keep_their_attempt() {
        assert_eq!(Transition::decide(Outcome::NotStarted("no handler".into()), &job(3, 3)), Transition::Release);
        let retry = Transition::decide(Outcome::Interrupted("actor stopped".into()), &job(1, 3));
        assert!(matches!(retry, Transition::Retry(ref e, d) if e.class == "Interrupted" && d.is_zero()));
        assert!(matches!(Transition::decide(Outcome::Interrupted("x".into()), &job(3, 3)), Transition::Fail(_)));
    }
}
