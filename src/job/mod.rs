//! The public job API: the [`Job`] trait and the [`Perform`] message handlers receive (here),
//! what a handler returns ([`JobError`]), its cancellation token ([`Cancellation`]), the
//! options of an enqueue ([`EnqueueOptions`]), the [`Queue`] handle that enqueues, and jobs
//! that compose: batches ([`BatchBuilder`]) and workflows ([`Workflow`]).

use std::time::Duration;

use actix::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{ConcurrencyLimit, JobId};

mod batch;
mod cancellation;
mod enqueue;
mod error;
pub(crate) mod queue;
mod workflow;

pub use batch::{BatchBuilder, EnqueuedBatch};
pub use cancellation::{CancelReason, Cancellation};
pub use enqueue::{EnqueueError, EnqueueOptions};
pub use error::{ErrorAction, JobError};
pub use queue::Queue;
pub use workflow::{Workflow, WorkflowIds};

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

    /// A global rate limit derived from the arguments, e.g. at most 100 emails per minute
    /// per provider across every process (see [`RateLimit`](crate::model::RateLimit)).
    /// `None` (the default): no limit. [`EnqueueOptions::rate_limit`] overrides it per
    /// enqueue. Jobs over the limit wait as scheduled and start as soon as the window allows.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use solidq::model::RateLimit;
    /// #[derive(Serialize, Deserialize)]
    /// struct Email { provider: String }
    /// impl solidq::Job for Email {
    ///     const KIND: &'static str = "email.send";
    ///     fn rate_limit(&self) -> Option<RateLimit> {
    ///         Some(RateLimit::per_minute(format!("email:{}", self.provider), 100))
    ///     }
    /// }
    /// ```
    fn rate_limit(&self) -> Option<crate::model::RateLimit> {
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
