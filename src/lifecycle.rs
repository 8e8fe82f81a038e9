//! What the end of an execution means for its job: the one place that turns how a run ended
//! ([`Outcome`]) or a process death into a [`Transition`] the store writes.
//!
//! An attempt is an execution that started: a claimed job runs as attempt `attempts + 1`, and
//! the store writes that count with the transition that ends it (one write per job row), so a
//! claim handed back unstarted, or cut short by a graceful drain ([`Transition::Release`]),
//! counts nothing; an execution that started and ended counts, whatever the ending; a process
//! death counts the attempt of every job it held, so that a job that crashes its workers ends
//! in failed.

use std::time::Duration;

use crate::model::{DeathPolicy, FailureKind, FailureRecord};

/// How one execution ended, as far as the job's life is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned `Ok(())`.
    Succeeded,
    /// The execution failed; retry after `retry_in` if `retryable` and attempts remain.
    Failed {
        /// What to record.
        error: FailureRecord,
        /// Whether another attempt may help.
        retryable: bool,
        /// Backoff before the next attempt.
        retry_in: Duration,
    },
    /// The job never reached a handler (none was running); the claim goes back to ready
    /// without counting an attempt.
    NotStarted(String),
    /// The handler actor stopped while the job was with it (another message made it panic):
    /// the execution may have started, so it counts as an attempt and the job runs again.
    Interrupted(String),
    /// The handler asked to run again after the delay without counting the attempt.
    Snoozed(Duration),
    /// The handler asked not to retry: the job ends as discarded, `error` kept with it.
    Discarded(FailureRecord),
    /// An operator cancelled the job while it ran; whatever the handler returned, it ends as
    /// cancelled.
    Cancelled,
}

/// The change the store makes to a claimed job, written with the claim's token.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The job is done.
    Complete,
    /// Run again after the delay with `error` as its last error; the attempt stays counted.
    Retry(FailureRecord, Duration),
    /// Failed for good.
    Fail(FailureRecord),
    /// Back to ready without counting the attempt: the job never started, or a graceful drain
    /// cut its run short.
    Release,
    /// Run again after the delay without counting the attempt and without an error (the
    /// handler asked to wait, as River's and Oban's snooze).
    Snooze(Duration),
    /// Ended for good without finishing, `error` saying why: kept as discarded, never retried.
    Discard(FailureRecord),
    /// Ended for good by an operator's cancel.
    Cancel,
}

impl Transition {
    /// The transition for `outcome` of an execution that was attempt `attempt` of
    /// `max_attempts`: errors and panics are retried while attempts remain, an execution cut
    /// short after it may have started is retried at once (its attempt counted), a job that
    /// never started is released.
    pub fn after(outcome: Outcome, attempt: i32, max_attempts: i32) -> Transition {
        let attempts_left = attempt < max_attempts;
        match outcome {
            Outcome::Succeeded => Transition::Complete,
            Outcome::Failed { error, retryable, retry_in } if retryable && attempts_left => {
                Transition::Retry(error, retry_in)
            }
            Outcome::Failed { error, .. } => Transition::Fail(error),
            Outcome::NotStarted(_) => Transition::Release,
            Outcome::Snoozed(delay) => Transition::Snooze(delay),
            Outcome::Discarded(error) => Transition::Discard(error),
            Outcome::Cancelled => Transition::Cancel,
            Outcome::Interrupted(why) => {
                let error = FailureRecord::new(FailureKind::Interrupted, why);
                if attempts_left {
                    Transition::Retry(error, Duration::ZERO)
                } else {
                    Transition::Fail(error)
                }
            }
        }
    }

    /// The transition for a job held by a process found dead, `error` naming the death: back
    /// to ready at once with the policy `Retry` while attempts remain (the attempt the dead
    /// process used stays counted), otherwise failed.
    pub fn after_death(policy: DeathPolicy, attempts: i32, max_attempts: i32, error: FailureRecord) -> Transition {
        if policy == DeathPolicy::Retry && attempts < max_attempts {
            Transition::Retry(error, Duration::ZERO)
        } else {
            Transition::Fail(error)
        }
    }

    /// What the transition does, for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Transition::Complete => "finished",
            Transition::Fail(_) => "failed",
            Transition::Retry(..) => "retry scheduled",
            Transition::Release => "released",
            Transition::Snooze(_) => "snoozed",
            Transition::Discard(_) => "discarded",
            Transition::Cancel => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(retryable: bool) -> Outcome {
        Outcome::Failed {
            error: FailureRecord::new(FailureKind::Error, "boom"),
            retryable,
            retry_in: Duration::from_secs(2),
        }
    }

    #[test]
    fn errors_retry_while_attempts_remain_then_fail() {
        assert!(matches!(Transition::after(failed(true), 1, 3), Transition::Retry(_, d) if d.as_secs() == 2));
        assert!(matches!(Transition::after(failed(true), 3, 3), Transition::Fail(_)));
        assert!(matches!(Transition::after(failed(false), 1, 3), Transition::Fail(_)));
        assert_eq!(Transition::after(Outcome::Succeeded, 3, 3), Transition::Complete);
    }

    #[test]
    fn unstarted_jobs_are_released_and_interrupted_runs_keep_their_attempt() {
        assert_eq!(Transition::after(Outcome::NotStarted("no handler".into()), 3, 3), Transition::Release);
        let retry = Transition::after(Outcome::Interrupted("actor stopped".into()), 1, 3);
        assert!(matches!(retry, Transition::Retry(ref e, d) if e.kind == FailureKind::Interrupted && d.is_zero()));
        assert!(matches!(Transition::after(Outcome::Interrupted("x".into()), 3, 3), Transition::Fail(_)));
    }

    #[test]
    fn snoozes_discards_and_cancels_map_one_to_one() {
        let delay = Duration::from_secs(5);
        assert_eq!(Transition::after(Outcome::Snoozed(delay), 3, 3), Transition::Snooze(delay));
        let why = FailureRecord::new(FailureKind::Discarded, "no such user");
        assert_eq!(Transition::after(Outcome::Discarded(why.clone()), 1, 3), Transition::Discard(why));
        assert_eq!(Transition::after(Outcome::Cancelled, 1, 3), Transition::Cancel);
    }

    #[test]
    fn a_death_retries_by_policy_while_attempts_remain() {
        let died = || FailureRecord::new(FailureKind::ProcessDied, "gone");
        assert!(
            matches!(Transition::after_death(DeathPolicy::Retry, 1, 3, died()), Transition::Retry(_, d) if d.is_zero())
        );
        assert!(matches!(Transition::after_death(DeathPolicy::Retry, 3, 3, died()), Transition::Fail(_)));
        assert!(matches!(Transition::after_death(DeathPolicy::Fail, 1, 3, died()), Transition::Fail(_)));
    }
}
