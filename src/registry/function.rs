//! Async function handlers ([`Runtime::register_async`](crate::Runtime::register_async)):
//! solidq owns their futures, so a timeout or a cancel drops them.

use std::collections::HashSet;
use std::future::Future;

use futures_util::future::{select, Either};
use slog::{info, o, warn, Logger};

use super::abandoned::Abandoned;
use super::panics::{payload_text, take_panic};
use super::{bad_arguments, handler_result, kind_options_of, meta, panicked, timed_out, ErasedHandler, OutcomeFuture};
use crate::job::{CancelReason, Cancellation, Job, JobError, JobMeta};
use crate::lifecycle::Outcome;
use crate::model::ClaimedJob;

/// An async function registered for jobs of type `J` ([`Runtime::register_async`]): its future
/// runs on the executions arbiter, owned by solidq, so a timeout or a cancel drops it (a real
/// cancellation, unlike an actor's future), and a panic in it is caught.
///
/// [`Runtime::register_async`]: crate::Runtime::register_async
pub struct FnHandler<J, F> {
    f: F,
    logger: Logger,
    _job: std::marker::PhantomData<fn(J)>,
}

impl<J: Job, F> FnHandler<J, F> {
    /// A handler calling `f` for each job.
    pub fn new(f: F, logger: &Logger) -> Self {
        FnHandler { f, logger: logger.new(o!("kind" => J::KIND)), _job: std::marker::PhantomData }
    }
}

impl<J, F, Fut> ErasedHandler for FnHandler<J, F>
where
    J: Job,
    F: Fn(J, JobMeta) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + 'static,
{
    fn start(&self) {}

    fn kind_options(&self, arguments: &str) -> (Option<String>, Option<crate::model::ConcurrencyLimit>) {
        kind_options_of::<J>(arguments)
    }

    fn perform(&self, job: &ClaimedJob, cancellation: Cancellation, _abandoned: &Abandoned) -> OutcomeFuture {
        let parsed: J = match serde_json::from_str(&job.arguments) {
            Ok(parsed) => parsed,
            Err(err) => return Box::pin(std::future::ready(bad_arguments(job, err))),
        };
        let attempt = job.attempts;
        let run = std::panic::AssertUnwindSafe((self.f)(parsed, meta(job, cancellation.clone())));
        let run = futures_util::FutureExt::catch_unwind(run);
        let (job, logger) = (job.clone(), self.logger.clone());
        Box::pin(async move {
            let deadline = async {
                match J::TIMEOUT {
                    Some(timeout) => actix_rt::time::sleep(timeout).await,
                    None => std::future::pending().await,
                }
            };
            let stop = async {
                match select(Box::pin(deadline), Box::pin(cancellation.cancelled())).await {
                    Either::Left(_) => None,
                    Either::Right(_) => Some(()),
                }
            };
            let stop = Box::pin(stop);
            match select(Box::pin(run), stop).await {
                Either::Left((Ok(result), _)) => handler_result::<J>(attempt, result),
                Either::Left((Err(payload), _)) => {
                    let here = HashSet::from([std::thread::current().id()]);
                    let location = take_panic(&here).and_then(|(_, location)| location);
                    panicked::<J>(attempt, format!("handler panicked: {}", payload_text(payload.as_ref())), location)
                }
                // The future is dropped here: the handler stops at its next await.
                Either::Right((None, _)) => {
                    let timeout = J::TIMEOUT.unwrap_or_default();
                    cancellation.cancel(CancelReason::Timeout);
                    warn!(logger, "job ran past its timeout: its future was dropped and the job recorded as timed out";
                        "job_id" => job.token.job_id, "attempt" => attempt, "timeout_ms" => timeout.as_millis() as u64);
                    timed_out::<J>(&job, timeout)
                }
                Either::Right((Some(()), _)) => match cancellation.reason() {
                    Some(CancelReason::Cancelled) => {
                        info!(logger, "job cancelled: its future was dropped"; "job_id" => job.token.job_id);
                        Outcome::Cancelled
                    }
                    // A graceful drain ran out of time: the run is cut short and the job goes
                    // back to ready without using an attempt, as for an actor.
                    _ => Outcome::NotStarted("the runtime stopped before the job finished".into()),
                },
            }
        })
    }

    fn stop(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClaimToken;
    use crate::registry::Abandoned;
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Wait;

    impl Job for Wait {
        const KIND: &'static str = "wait";
    }

    fn claimed() -> ClaimedJob {
        ClaimedJob {
            ready_at: chrono::NaiveDateTime::default(),
            token: ClaimToken { job_id: 1, claim_id: 1 },
            kind: Wait::KIND.into(),
            arguments: "null".into(),
            queue: "default".into(),
            priority: 0,
            attempts: 1,
            max_attempts: 5,
            rate_limit_key: None,
            rate_limit_deadline: None,
            rate_limit_start: None,
        }
    }

    /// A function handler whose token fires: an operator's cancel ends the job as cancelled, a
    /// drain that ran out of time gives it back unstarted (not cancelled).
    #[actix_rt::test]
    async fn a_fired_token_drops_the_future_and_its_reason_decides_the_outcome() {
        let logger = Logger::root(slog::Discard, o!());
        let handler = FnHandler::<Wait, _>::new(
            |_, _| async {
                actix_rt::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            },
            &logger,
        );
        for (reason, cancelled) in [(CancelReason::Cancelled, true), (CancelReason::Shutdown, false)] {
            let token = Cancellation::new();
            let run = handler.perform(&claimed(), token.clone(), &Abandoned::default());
            token.cancel(reason);
            let outcome = run.await;
            assert_eq!(matches!(outcome, Outcome::Cancelled), cancelled, "{reason:?}: {outcome:?}");
            assert_eq!(matches!(outcome, Outcome::NotStarted(_)), !cancelled, "{reason:?}: {outcome:?}");
        }
    }
}
