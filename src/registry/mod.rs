//! Job kind → handler actor. Deserializes a claimed job's arguments for its kind, sends
//! [`Perform<J>`] to the registered actor, and turns every way that can end (success, error,
//! panic, unknown kind, bad arguments) into an [`Outcome`].
//!
//! A panic inside a handler drops the actix actor and closes its mailbox (actix's Supervisor does
//! not restart on panic). The registry notices the closed mailbox, takes the panic message that
//! its panic hook captured on the handler's thread, and starts a fresh actor from the factory.
//!
//! A kind with a [`Job::TIMEOUT`] is waited for that long: then the execution's
//! [`Cancellation`] fires, its outcome is a `Timeout` failure at once (the worker slot is free),
//! and the execution is *abandoned*: kept in [`Abandoned`] until its handler returns, its late
//! result dropped. A thread cannot be killed, so a handler whose thread is still busy (every
//! blocking one; an async one whose arbiter no longer answers) is left behind and its actors
//! are started again on new threads (a new generation), so that later jobs do not queue
//! behind it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::job::{CancelReason, Cancellation, ErrorAction, Job, JobError, JobMeta};
use crate::lifecycle::Outcome;
use crate::model::duration::format_duration;
use crate::model::{ClaimedJob, FailureKind, FailureRecord};

mod abandoned;
mod actor;
mod function;
mod panics;

pub use abandoned::Abandoned;
pub use actor::{ActorHandler, OwnArbiter, SyncPool};
pub use function::FnHandler;
pub use panics::install_panic_hook;

/// How long an async handler's arbiter may take to run a probe after a timeout before its
/// thread counts as blocked (and the actor moves to a new arbiter).
pub const PROBE_WAIT: Duration = Duration::from_millis(200);

/// A future resolving to an execution's outcome.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome>>>;

/// A registered handler with its job type erased.
pub trait ErasedHandler: Send + Sync {
    /// Starts the handler actor(s); called once inside the running System.
    fn start(&self);
    /// The unique key and concurrency limit the kind derives from `arguments`
    /// ([`Job::unique_key`], [`Job::concurrency`]); nothing when they do not deserialize.
    fn kind_options(&self, arguments: &str) -> (Option<String>, Option<crate::model::ConcurrencyLimit>);
    /// Runs one claimed job; `cancellation` is the execution's token, `abandoned` where it is
    /// kept should it run past its kind's timeout.
    fn perform(&self, job: &ClaimedJob, cancellation: Cancellation, abandoned: &Abandoned) -> OutcomeFuture;
    /// Stops the handler actor(s) and their threads.
    fn stop(&self);
}

/// The table of registered handlers, shared by all workers of a runtime.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn ErasedHandler>>,
    abandoned: Abandoned,
}

impl Registry {
    /// Adds `handler` for `kind`; returns false (and keeps the first) if the kind is taken.
    pub fn insert(&mut self, kind: &'static str, handler: Arc<dyn ErasedHandler>) -> bool {
        if self.handlers.contains_key(kind) {
            return false;
        }
        self.handlers.insert(kind, handler);
        true
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    /// Starts every handler actor.
    pub fn start_all(&self) {
        self.handlers.values().for_each(|h| h.start());
    }

    /// Starts the handler actor(s) of `kind`, if one is registered.
    pub fn start_kind(&self, kind: &str) {
        if let Some(handler) = self.handlers.get(kind) {
            handler.start();
        }
    }

    /// Stops every handler actor.
    pub fn stop_all(&self) {
        self.handlers.values().for_each(|h| h.stop());
    }

    /// The executions of this process that ran past their timeout and still run.
    pub fn abandoned(&self) -> &Abandoned {
        &self.abandoned
    }

    /// Gives `job` (built from a kind and JSON, as a recurring task's run) the unique key and
    /// concurrency limit its kind derives from the arguments, where it has none, if a handler
    /// for the kind is registered here.
    pub fn apply_kind_options(&self, job: &mut crate::model::NewJob) {
        let Some(handler) = self.handlers.get(job.kind.as_str()) else { return };
        let (unique_key, concurrency) = handler.kind_options(&job.arguments);
        if job.unique_key.is_none() {
            job.unique_key = unique_key;
        }
        if job.concurrency.is_none() {
            job.concurrency = concurrency;
        }
    }

    /// Runs `job` on its kind's handler, with `cancellation` in its [`JobMeta`]; an operator's
    /// cancel decides the ending, whatever the handler returned. An unknown kind goes back
    /// unrun, naming the kind and the process (`process_label`).
    pub fn perform(&self, job: &ClaimedJob, process_label: &str, cancellation: Cancellation) -> OutcomeFuture {
        match self.handlers.get(job.kind.as_str()) {
            Some(handler) => {
                let run = handler.perform(job, cancellation.clone(), &self.abandoned);
                Box::pin(async move {
                    let outcome = run.await;
                    match cancellation.reason() {
                        Some(CancelReason::Cancelled) => Outcome::Cancelled,
                        _ => outcome,
                    }
                })
            }
            // Claims take only registered kinds; should one slip through, it goes back unrun.
            None => Box::pin(std::future::ready(Outcome::NotStarted(format!(
                "no handler is registered for job kind {:?} in process {process_label} (registered: {})",
                job.kind,
                self.kinds().join(", ")
            )))),
        }
    }
}

/// The unique key and concurrency limit kind `J` derives from `arguments`; nothing when they
/// do not deserialize (the execution will fail with that error).
fn kind_options_of<J: Job>(arguments: &str) -> (Option<String>, Option<crate::model::ConcurrencyLimit>) {
    match serde_json::from_str::<J>(arguments) {
        Ok(job) => (job.unique_key(), job.concurrency()),
        Err(_) => (None, None),
    }
}

fn bad_arguments(job: &ClaimedJob, err: serde_json::Error) -> Outcome {
    Outcome::Failed {
        error: FailureRecord::new(
            FailureKind::BadArguments,
            format!("arguments of job {} (kind {:?}) do not deserialize: {err}", job.token.job_id, job.kind),
        ),
        retryable: false,
        retry_in: Duration::ZERO,
    }
}

fn meta(job: &ClaimedJob, cancellation: Cancellation) -> JobMeta {
    JobMeta {
        id: job.token.job_id,
        kind: job.kind.clone(),
        queue: job.queue.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        cancellation,
    }
}

/// The outcome of an execution that ran past `timeout`: a retryable `Timeout` failure.
fn timed_out<J: Job>(job: &ClaimedJob, timeout: Duration) -> Outcome {
    Outcome::Failed {
        error: FailureRecord::new(
            FailureKind::Timeout,
            format!(
                "job {} (kind {:?}, attempt {}) ran past its timeout of {}",
                job.token.job_id,
                job.kind,
                job.attempts,
                format_duration(timeout)
            ),
        ),
        retryable: true,
        retry_in: J::backoff(job.attempts),
    }
}

fn handler_result<J: Job>(attempt: i32, result: Result<(), JobError>) -> Outcome {
    let err = match result {
        Ok(()) => return Outcome::Succeeded,
        Err(err) => err,
    };
    let error = FailureRecord::new(FailureKind::Error, err.message());
    match err.action() {
        ErrorAction::Retry(delay) => {
            Outcome::Failed { error, retryable: true, retry_in: delay.unwrap_or_else(|| J::backoff(attempt)) }
        }
        ErrorAction::Fail => Outcome::Failed { error, retryable: false, retry_in: Duration::ZERO },
        ErrorAction::Discard => Outcome::Discarded(FailureRecord::new(FailureKind::Discarded, err.message())),
        ErrorAction::Snooze(delay) => Outcome::Snoozed(delay),
    }
}

fn panicked<J: Job>(attempt: i32, message: String, location: Option<String>) -> Outcome {
    Outcome::Failed {
        error: FailureRecord { kind: FailureKind::Panic, message, backtrace: location, cause: None },
        retryable: true,
        retry_in: J::backoff(attempt),
    }
}
