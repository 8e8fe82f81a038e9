//! Test helpers for applications: a [`TestQueue`] over an in-memory SQLite database, registered
//! with the same handlers as the application's [`Runtime`](crate::Runtime), whose
//! [`TestQueue::queue`] is an ordinary [`Queue`] for the code under test.
//!
//! Two modes:
//! - **capture** ([`TestQueue::new`], the default): nothing runs. The test asserts what was
//!   enqueued ([`TestQueue::assert_enqueued`], [`TestQueue::assert_enqueued_where`] with a
//!   predicate on the decoded job, its queue and its scheduled time,
//!   [`TestQueue::assert_enqueued_count`], [`TestQueue::assert_not_enqueued`],
//!   [`TestQueue::enqueued`]), then runs everything with [`TestQueue::drain`]: every ready job
//!   through its registered handler (the real [`Perform`] message, the real
//!   outcome: retries, failures, panics), the jobs those jobs enqueue, batch callbacks and
//!   workflow steps released as their prerequisites end, until nothing is ready; bounded by
//!   [`TestQueue::max_jobs`] ([`DEFAULT_MAX_JOBS`]). A job scheduled for later, or a retry
//!   waiting for its backoff, is not due and is left alone by `drain`;
//!   [`TestQueue::drain_including_scheduled`] treats them as due now.
//! - **inline** ([`TestQueue::inline`]): each async enqueue runs the job at once in the caller
//!   and returns after it ended, with [`EnqueueError::Inline`] when it did not succeed. Jobs
//!   that a job enqueues run inline too, nested at most [`MAX_INLINE_DEPTH`] deep.
//!
//! The handlers run in the test's actix `System`: use `#[actix_rt::test]` (or
//! `#[actix::test]`). Assertions are blocking calls on the in-memory database and panic with a
//! list of what *was* enqueued, so a failing test says what happened.
//!
//! ```
//! use actix::prelude::*;
//! use serde::{Deserialize, Serialize};
//! use solidq::testing::TestQueue;
//! use solidq::{Job, JobError, JobMeta, Queue};
//!
//! #[derive(Debug, Serialize, Deserialize, PartialEq)]
//! struct SignUp { user_id: i64 }
//! impl Job for SignUp { const KIND: &'static str = "accounts.sign_up"; }
//!
//! #[derive(Debug, Serialize, Deserialize, PartialEq)]
//! struct Welcome { user_id: i64 }
//! impl Job for Welcome {
//!     const KIND: &'static str = "mailer.welcome";
//!     const QUEUE: &'static str = "mail";
//! }
//!
//! // The application's code: a sign-up job that enqueues a welcome mail.
//! async fn sign_up(queue: Queue, job: SignUp) -> Result<(), JobError> {
//!     queue.enqueue(Welcome { user_id: job.user_id }).await.map_err(|e| JobError::new(e.to_string()))?;
//!     Ok(())
//! }
//!
//! // In a test file: #[actix_rt::test]
//! async fn signing_up_sends_a_welcome_mail() {
//!     let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//!     let mails = sent.clone();
//!     let testq = TestQueue::new();
//!     let queue = testq.queue();
//!     let testq = testq
//!         .register_async::<SignUp, _, _>(move |job, _meta: JobMeta| sign_up(queue.clone(), job))
//!         .register_async::<Welcome, _, _>(move |job, _meta| {
//!             mails.lock().unwrap().push(job.user_id);
//!             async { Ok(()) }
//!         });
//!
//!     // The code under test enqueues; in capture mode nothing runs yet.
//!     testq.queue().enqueue(SignUp { user_id: 7 }).await.unwrap();
//!     testq.assert_enqueued_where::<SignUp>(|e| e.job.user_id == 7);
//!     testq.assert_not_enqueued::<Welcome>();
//!
//!     // Run everything, including the mail the sign-up enqueues.
//!     let drained = testq.drain().await.unwrap();
//!     assert_eq!(drained.succeeded, 2);
//!     testq.assert_enqueued_where::<Welcome>(|e| e.queue == "mail" && e.job.user_id == 7);
//!     assert_eq!(*sent.lock().unwrap(), [7]);
//! }
//! # fn main() { actix_rt::System::new().block_on(signing_up_sends_a_welcome_mail()); }
//! ```
//!
//! # Nesting, blocking handlers and the depth bound
//! An inline job that enqueues with an async method runs the new job inside that enqueue (the
//! enqueue awaits a task spawned on the caller's event loop, so the loop keeps serving the
//! handlers meanwhile). Beyond [`MAX_INLINE_DEPTH`] nested inline runs (a job that enqueues
//! itself without end) the enqueue is refused, before it writes anything, with an
//! [`EnqueueError::Inline`] naming the depth. A blocking handler (`register_sync`) cannot await:
//! its [`Queue::enqueue_new_blocking`] only writes, and the inline run that ran it runs the new
//! jobs right after it ended. It never waits for its own thread, so a pool of one thread that
//! enqueues its own kind does not deadlock; its chain is bounded by
//! [`TestQueue::max_jobs`] instead. A blocking enqueue outside any job (the test's own thread)
//! only writes too: the job runs at the next async enqueue or drain.
//!
//! The depth counts the inline runs in progress on one `TestQueue` at once, so enqueues from
//! many concurrent tasks add up.
//!
//! # Cargo feature
//! The module needs no dependency that solidq does not already have, so it is always compiled:
//! no feature to turn on in `[dev-dependencies]`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use chrono::{DateTime, NaiveDateTime, Utc};
use slog::{o, Logger};

use crate::arbiters::StoppedArbiters;
use crate::job::queue::InlineRunner;
use crate::job::{Cancellation, EnqueueError, Job, JobMeta, Perform, Queue};
use crate::lifecycle::{Outcome, Transition};
use crate::model::{JobId, JobState, NewProcess, ProcessId, QueuePattern};
use crate::registry::Registry;
use crate::runtime::Registrations;
use crate::store::{JobRow, SharedStore, Store, StoreError};

/// Default for [`TestQueue::max_jobs`]: the most jobs one drain (or one inline run) runs.
pub const DEFAULT_MAX_JOBS: usize = 10_000;

/// How deep inline runs nest (a job run inline enqueueing a job run inline ...) before an
/// enqueue is refused.
pub const MAX_INLINE_DEPTH: usize = 32;

/// The process label handlers see in "no handler" messages.
const PROCESS_LABEL: &str = "solidq test queue";

/// How many enqueued jobs a failed assertion lists.
const LISTED: usize = 50;

/// A job as enqueued: its decoded arguments and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueuedJob<J> {
    /// The job, decoded from its stored arguments.
    pub job: J,
    /// Its id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its priority (lower first).
    pub priority: i32,
    /// When it was asked to run, if later than its enqueue (`run_at` / `run_in`, or a retry
    /// waiting for its backoff); `None` for a job enqueued to run now.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Where it is now: ready, scheduled, waiting (a workflow step), finished, failed, ...
    pub state: Option<JobState>,
    /// Executions started so far.
    pub attempts: i32,
    /// The stored arguments, as JSON.
    pub arguments: serde_json::Value,
}

/// How one job run by a drain (or an inline run) ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Which attempt this was (1 for the first).
    pub attempt: i32,
    /// What became of it: `finished`, `retry scheduled`, `failed`, `discarded`, `snoozed`,
    /// `cancelled` or `released` (never started: its handler was not running).
    pub ended: &'static str,
    /// The error or panic message of a failed attempt or a discard.
    pub error: Option<String>,
}

/// What a drain ran: counts by ending, and every run in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drained {
    /// Runs that finished the job.
    pub succeeded: usize,
    /// Failed attempts after which the job failed for good (no attempts left, or a permanent
    /// error).
    pub failed: usize,
    /// Failed attempts (an error, a panic) after which a retry was scheduled.
    pub retried: usize,
    /// Jobs the handler discarded.
    pub discarded: usize,
    /// Jobs the handler snoozed.
    pub snoozed: usize,
    /// Jobs cancelled while they ran.
    pub cancelled: usize,
    /// Every run, in the order they ran.
    pub runs: Vec<Run>,
}

impl Drained {
    /// The runs that did not succeed: failures, retries, discards, as `kind #id: message`.
    pub fn errors(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter_map(|run| {
                run.error.as_ref().map(|error| format!("{} #{} ({}): {error}", run.kind, run.id, run.ended))
            })
            .collect()
    }

    fn add(&mut self, run: Run) {
        match run.ended {
            "finished" => self.succeeded += 1,
            "failed" => self.failed += 1,
            "retry scheduled" => self.retried += 1,
            "discarded" => self.discarded += 1,
            "snoozed" => self.snoozed += 1,
            "cancelled" => self.cancelled += 1,
            _ => {}
        }
        self.runs.push(run);
    }
}

/// Why a drain stopped before nothing was left to run. Each carries what it ran until then.
/// `Debug` prints the same text as `Display`, so that `drain().await.unwrap()` fails readably.
#[derive(thiserror::Error)]
pub enum DrainError {
    /// Jobs were still ready after `max_jobs` runs: jobs that enqueue jobs without end, or a
    /// bound too low ([`TestQueue::max_jobs`]).
    #[error("the drain stopped after {max_jobs} jobs (TestQueue::max_jobs) with jobs still ready: do jobs enqueue jobs without end?")]
    Bound {
        /// The bound reached.
        max_jobs: usize,
        /// What ran.
        drained: Drained,
    },
    /// Ready jobs of kinds that no handler is registered for.
    #[error("no handler is registered for job kind(s) {kinds:?}, which have ready jobs (registered: {registered:?})")]
    UnknownKinds {
        /// The kinds.
        kinds: Vec<String>,
        /// The kinds registered.
        registered: Vec<String>,
        /// What ran.
        drained: Drained,
    },
    /// The in-memory database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl std::fmt::Debug for DrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A test double of the runtime: the application's handlers over an in-memory SQLite
/// database, with capture assertions, drains and an inline mode. See [the module](self).
pub struct TestQueue {
    engine: Arc<Engine>,
    handlers: Registrations,
    inline: bool,
}

/// What runs jobs, shared with the inline hook of the queues handed out.
struct Engine {
    store: SharedStore,
    process: ProcessId,
    registry: Mutex<Registry>,
    /// Kinds whose handler actors were started.
    started: Mutex<HashSet<String>>,
    max_jobs: AtomicUsize,
    /// Inline runs in progress.
    depth: AtomicUsize,
    /// What inline runs reported as errors, in order.
    inline_errors: Mutex<Vec<String>>,
}

impl Default for TestQueue {
    fn default() -> Self {
        TestQueue::new()
    }
}

impl TestQueue {
    /// A test queue in capture mode over a new in-memory database (migrated), with no
    /// handlers yet.
    ///
    /// # Panics
    /// If the in-memory database cannot be opened (SQLite refused it): a test cannot go on.
    #[track_caller]
    pub fn new() -> TestQueue {
        let store: SharedStore = match Store::in_memory() {
            Ok(store) => Arc::new(store),
            Err(err) => panic!("solidq TestQueue: cannot open an in-memory SQLite database: {err}"),
        };
        let process = NewProcess {
            kind: "TestQueue".into(),
            name: format!("test-queue-{}-{}", std::process::id(), fastrand::u64(..)),
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            hostname: "localhost".into(),
            metadata: Default::default(),
        };
        let process = match store.register_process(&process, now()) {
            Ok(id) => id,
            Err(err) => panic!("solidq TestQueue: cannot register its process row: {err}"),
        };
        let logger = Logger::root(slog::Discard, o!());
        TestQueue {
            engine: Arc::new(Engine {
                store,
                process,
                registry: Mutex::default(),
                started: Mutex::default(),
                max_jobs: AtomicUsize::new(DEFAULT_MAX_JOBS),
                depth: AtomicUsize::new(0),
                inline_errors: Mutex::default(),
            }),
            handlers: Registrations::new(&logger, StoppedArbiters::default()),
            inline: false,
        }
    }

    /// A test queue in inline mode: every async enqueue through [`TestQueue::queue`] runs
    /// the jobs it made ready before it returns (see [the module](self)).
    #[track_caller]
    pub fn inline() -> TestQueue {
        TestQueue { inline: true, ..TestQueue::new() }
    }

    /// Whether this queue runs jobs inline.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Runs at most `max_jobs` jobs per drain (and per inline run) before
    /// [`DrainError::Bound`]; [`DEFAULT_MAX_JOBS`] by default.
    pub fn max_jobs(self, max_jobs: usize) -> Self {
        self.engine.max_jobs.store(max_jobs.max(1), Ordering::Relaxed);
        self
    }

    /// As [`Runtime::register`](crate::Runtime::register): an async actor for jobs `J`.
    ///
    /// # Panics
    /// When `J`'s kind is registered twice or its kind or queue name is invalid.
    #[track_caller]
    pub fn register<J, A, F>(mut self, factory: F) -> Self
    where
        J: Job,
        A: Actor<Context = Context<A>> + Handler<Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.handlers.actor::<J, A, F>(factory);
        self.registered()
    }

    /// As [`Runtime::register_sync`](crate::Runtime::register_sync): a blocking actor on a
    /// `SyncArbiter` of `threads` threads.
    ///
    /// # Panics
    /// As [`TestQueue::register`].
    #[track_caller]
    pub fn register_sync<J, A, F>(mut self, threads: usize, factory: F) -> Self
    where
        J: Job,
        A: Actor<Context = SyncContext<A>> + Handler<Perform<J>>,
        SyncContext<A>: ToEnvelope<A, Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.handlers.sync::<J, A, F>(threads, factory);
        self.registered()
    }

    /// As [`Runtime::register_async`](crate::Runtime::register_async): an async function.
    ///
    /// # Panics
    /// As [`TestQueue::register`].
    #[track_caller]
    pub fn register_async<J, F, Fut>(mut self, f: F) -> Self
    where
        J: Job,
        F: Fn(J, JobMeta) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::JobError>> + 'static,
    {
        self.handlers.function::<J, F, Fut>(f);
        self.registered()
    }

    #[track_caller]
    fn registered(self) -> Self {
        if let Some(refused) = &self.handlers.refused {
            panic!("solidq TestQueue: {refused}");
        }
        *lock(&self.engine.registry) = self.handlers.registry.clone();
        self
    }

    /// An ordinary [`Queue`] over the in-memory database, for the code under test; in inline
    /// mode its async enqueues run the jobs at once.
    pub fn queue(&self) -> Queue {
        let queue = Queue::new(self.engine.store.clone());
        if self.inline {
            queue.running_inline(Arc::new(InlineHook(self.engine.clone())))
        } else {
            queue
        }
    }

    /// The in-memory store (for reads the helpers do not offer).
    pub fn store(&self) -> SharedStore {
        self.engine.store.clone()
    }

    /// Runs every ready job through its handler, and the jobs their runs make ready (jobs they
    /// enqueue, batch callbacks, released workflow steps), one at a time in claim order
    /// (priority, then id), until none is ready. Jobs scheduled for later, retries waiting
    /// for their backoff and jobs their [rate limits](crate::model::RateLimit) deferred are not
    /// run: see [`TestQueue::drain_including_scheduled`].
    pub async fn drain(&self) -> Result<Drained, DrainError> {
        self.engine.run(false).await
    }

    /// [`TestQueue::drain`], treating every scheduled job (and every retry waiting for its
    /// backoff) as due now, again after each run: a job that keeps failing runs until its
    /// attempts are used up. Rate limits are treated as if their windows had passed: every
    /// rate-limited job runs.
    pub async fn drain_including_scheduled(&self) -> Result<Drained, DrainError> {
        self.engine.run(true).await
    }

    /// Every job in the database, any kind, any state, in id order.
    #[track_caller]
    pub fn jobs(&self) -> Vec<JobRow> {
        self.rows(None)
    }

    /// Every job of type `J` enqueued so far, whatever its state (finished jobs stay), in id
    /// order, decoded.
    ///
    /// # Panics
    /// When the arguments of a job of `J`'s kind do not decode as `J`.
    #[track_caller]
    pub fn enqueued<J: Job>(&self) -> Vec<EnqueuedJob<J>> {
        self.rows(Some(J::KIND))
            .into_iter()
            .map(|row| {
                let job: J = serde_json::from_str(&row.arguments).unwrap_or_else(|err| {
                    panic!("job {} of kind {:?} does not decode ({err}): {}", row.id, J::KIND, row.arguments)
                });
                EnqueuedJob {
                    job,
                    id: row.id,
                    queue: row.queue,
                    priority: row.priority,
                    scheduled_at: row.scheduled_at.map(|at| at.and_utc()),
                    state: row.state,
                    attempts: row.attempts,
                    arguments: serde_json::from_str(&row.arguments).unwrap_or(serde_json::Value::Null),
                }
            })
            .collect()
    }

    /// Asserts that at least one job of type `J` was enqueued.
    #[track_caller]
    pub fn assert_enqueued<J: Job>(&self) {
        if self.enqueued::<J>().is_empty() {
            self.fail(format!("expected a job of kind {:?} to be enqueued, found none", J::KIND));
        }
    }

    /// Asserts that a job of type `J` matching `predicate` was enqueued: the predicate sees the
    /// decoded job (`e.job`) and where it is (`e.queue`, `e.scheduled_at`, `e.priority`,
    /// `e.state`).
    #[track_caller]
    pub fn assert_enqueued_where<J: Job>(&self, predicate: impl Fn(&EnqueuedJob<J>) -> bool) {
        if !self.enqueued::<J>().iter().any(predicate) {
            self.fail(format!(
                "expected a job of kind {:?} matching the predicate to be enqueued, found none",
                J::KIND
            ));
        }
    }

    /// Asserts that a job of type `J` was enqueued on `queue`.
    #[track_caller]
    pub fn assert_enqueued_on<J: Job>(&self, queue: &str) {
        if !self.enqueued::<J>().iter().any(|e| e.queue == queue) {
            self.fail(format!("expected a job of kind {:?} on queue {queue:?} to be enqueued, found none", J::KIND));
        }
    }

    /// Asserts that a job of type `J` was scheduled to run between `earliest` and `latest`
    /// (both included).
    #[track_caller]
    pub fn assert_scheduled_between<J: Job>(&self, earliest: DateTime<Utc>, latest: DateTime<Utc>) {
        let found =
            self.enqueued::<J>().iter().any(|e| e.scheduled_at.is_some_and(|at| earliest <= at && at <= latest));
        if !found {
            self.fail(format!(
                "expected a job of kind {:?} scheduled between {earliest} and {latest}, found none",
                J::KIND
            ));
        }
    }

    /// Asserts that exactly `count` jobs of type `J` were enqueued.
    #[track_caller]
    pub fn assert_enqueued_count<J: Job>(&self, count: usize) {
        let found = self.enqueued::<J>().len();
        if found != count {
            self.fail(format!("expected {count} job(s) of kind {:?} to be enqueued, found {found}", J::KIND));
        }
    }

    /// Asserts that no job of type `J` was enqueued.
    #[track_caller]
    pub fn assert_not_enqueued<J: Job>(&self) {
        let found = self.enqueued::<J>().len();
        if found > 0 {
            self.fail(format!("expected no job of kind {:?} to be enqueued, found {found}", J::KIND));
        }
    }

    /// What inline runs reported as errors so far (each also returned by the enqueue that
    /// ran it), oldest first.
    pub fn inline_errors(&self) -> Vec<String> {
        lock(&self.engine.inline_errors).clone()
    }

    #[track_caller]
    fn rows(&self, kind: Option<&str>) -> Vec<JobRow> {
        match self.engine.store.jobs_of_kind(kind, usize::MAX) {
            Ok(rows) => rows,
            Err(err) => panic!("solidq TestQueue: reading the jobs failed: {err}"),
        }
    }

    /// Panics with `expected` and a list of what was enqueued.
    #[track_caller]
    fn fail(&self, expected: String) -> ! {
        let rows = self.rows(None);
        let mut text = format!("{expected}.\nenqueued: {} job(s)", rows.len());
        for row in rows.iter().take(LISTED) {
            let state = row.state.map_or("?", JobState::as_str);
            let at = row.scheduled_at.map(|at| format!(" at {at}")).unwrap_or_default();
            text.push_str(&format!("\n  #{} {} on {:?} ({state}{at}) {}", row.id, row.kind, row.queue, row.arguments));
        }
        if rows.len() > LISTED {
            text.push_str(&format!("\n  ... and {} more", rows.len() - LISTED));
        }
        panic!("{text}");
    }
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// The registry, with the handler actors of every kind started (once; inside the System).
    fn registry(&self) -> Registry {
        let registry = lock(&self.registry).clone();
        let mut started = lock(&self.started);
        for kind in registry.kinds() {
            if started.insert(kind.to_string()) {
                crate::registry::install_panic_hook();
                registry.start_kind(kind);
            }
        }
        registry
    }

    /// Runs ready jobs one at a time until none is ready (`scheduled`: moving every scheduled
    /// job to ready before each claim), at most `max_jobs`.
    async fn run(&self, scheduled: bool) -> Result<Drained, DrainError> {
        let registry = self.registry();
        let kinds: Vec<String> = registry.kinds().into_iter().map(String::from).collect();
        let max_jobs = self.max_jobs.load(Ordering::Relaxed);
        let mut drained = Drained::default();
        let mut last_ready: Option<i64> = None;
        loop {
            if scheduled {
                // Every time has come: scheduled jobs are due, and rate-limit windows passed.
                crate::actors::blocking(&self.store, |store| {
                    store.forget_all_rate_limit_starts()?;
                    store.dispatch_now(now())
                })
                .await?;
            }
            let (process, claim_kinds) = (self.process, kinds.clone());
            let claimed = crate::actors::blocking(&self.store, move |store| {
                store.claim(process, &[QueuePattern::All], &claim_kinds, 1, now())
            })
            .await?;
            let Some(job) = claimed.into_iter().next() else {
                // A claim whose jobs their rate limits deferred returns none, while other jobs
                // may still be ready: go on while that number falls (a paused queue's jobs
                // stay ready, and are left).
                let waiting = crate::actors::blocking(&self.store, |store| store.waiting()).await?;
                let ready: i64 = waiting.iter().filter(|w| kinds.contains(&w.kind)).map(|w| w.ready).sum();
                if ready > 0 && last_ready.is_none_or(|last| ready < last) {
                    last_ready = Some(ready);
                    continue;
                }
                break;
            };
            last_ready = None;
            if drained.runs.len() >= max_jobs {
                let token = job.token;
                crate::actors::blocking(&self.store, move |store| store.record(&[(token, Transition::Release)], now()))
                    .await?;
                return Err(DrainError::Bound { max_jobs, drained });
            }
            let outcome = registry.perform(&job, PROCESS_LABEL, Cancellation::new()).await;
            let error = match &outcome {
                Outcome::Failed { error, .. } | Outcome::Discarded(error) => Some(error.message.clone()),
                Outcome::NotStarted(why) | Outcome::Interrupted(why) => Some(why.clone()),
                _ => None,
            };
            let transition = Transition::after(outcome, job.attempts, job.max_attempts);
            let ended = transition.label();
            let token = job.token;
            crate::actors::blocking(&self.store, move |store| store.record(&[(token, transition)], now())).await?;
            drained.add(Run { id: job.token.job_id, kind: job.kind, attempt: job.attempts, ended, error });
        }
        // Nothing claimable is left: what is still ready has no handler here.
        let waiting = crate::actors::blocking(&self.store, |store| store.waiting()).await?;
        let mut unknown: Vec<String> =
            waiting.into_iter().filter(|w| w.ready > 0 && !kinds.contains(&w.kind)).map(|w| w.kind).collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            return Err(DrainError::UnknownKinds { kinds: unknown, registered: kinds, drained });
        }
        Ok(drained)
    }

    /// One inline run: [`Engine::run`] as an enqueue's result.
    async fn run_inline(&self) -> Result<(), EnqueueError> {
        let depth = self.depth.fetch_add(1, Ordering::SeqCst) + 1;
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.depth);
        let problem = match self.run(false).await {
            Ok(drained) => {
                let errors = drained.errors();
                if errors.is_empty() {
                    return Ok(());
                }
                format!("a job run inline (depth {depth}) did not succeed: {}", errors.join("; "))
            }
            Err(DrainError::Store(err)) => return Err(EnqueueError::Store(err)),
            Err(err) => format!("running jobs inline (depth {depth}): {err}"),
        };
        lock(&self.inline_errors).push(problem.clone());
        Err(EnqueueError::Inline(problem))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !lock(&self.started).is_empty() {
            lock(&self.registry).stop_all();
        }
    }
}

/// The inline runner a queue of an inline [`TestQueue`] carries.
struct InlineHook(Arc<Engine>);

impl InlineRunner for InlineHook {
    fn admit(&self) -> Result<(), EnqueueError> {
        let depth = self.0.depth.load(Ordering::SeqCst);
        if depth >= MAX_INLINE_DEPTH {
            let problem = format!(
                "inline enqueue refused: inline runs are nested {depth} deep, the bound (MAX_INLINE_DEPTH = \
                 {MAX_INLINE_DEPTH}); does a job enqueue jobs without end? (capture mode and drain() run them \
                 one after another instead)"
            );
            lock(&self.0.inline_errors).push(problem.clone());
            return Err(EnqueueError::Inline(problem));
        }
        Ok(())
    }

    /// Spawns the run on the caller's event loop (handlers' futures are not `Send`) and
    /// awaits its end through a channel, so the enqueue's future stays `Send`.
    fn run_ready(&self) -> futures_util::future::BoxFuture<'static, Result<(), EnqueueError>> {
        let engine = self.0.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        actix_rt::spawn(async move {
            let _ = done.send(engine.run_inline().await);
        });
        Box::pin(async move {
            result
                .await
                .unwrap_or_else(|_| Err(EnqueueError::Inline("the inline run was dropped before it ended".into())))
        })
    }
}
