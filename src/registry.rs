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

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::{select, Either};
use slog::{info, o, warn, Logger};

use crate::arbiters::StoppedArbiters;
use crate::job::{CancelReason, Cancellation, ErrorAction, Job, JobError, JobMeta, Perform};
use crate::lifecycle::Outcome;
use crate::model::duration::format_duration;
use crate::model::{AbandonedExecution, AbandonedExecutions};
use crate::model::{ClaimToken, ClaimedJob, FailureKind, FailureRecord};

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

    /// Runs `job` on its kind's handler, with `cancellation` in its [`JobMeta`]; an unknown
    /// kind goes back unrun, naming the kind and the process (`process_label`).
    pub fn perform(&self, job: &ClaimedJob, process_label: &str, cancellation: Cancellation) -> OutcomeFuture {
        match self.handlers.get(job.kind.as_str()) {
            Some(handler) => handler.perform(job, cancellation, &self.abandoned),
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

type LiveRef<A> = (u64, Addr<A>, Arc<Mutex<HashSet<ThreadId>>>);

/// What the outcome of a handler's answer (or its mailbox closing) is; on a closed mailbox
/// restarts the actors of `generation`.
fn answered<J, A, L>(
    handler: &ActorHandler<J, A, L>,
    attempt: i32,
    (generation, threads): (u64, &Mutex<HashSet<ThreadId>>),
    answer: Result<Result<(), JobError>, MailboxError>,
) -> Outcome
where
    J: Job,
    A: Actor,
    L: Launcher<A>,
{
    match answer {
        Ok(result) => handler_result::<J>(attempt, result),
        Err(_) => {
            // The panic hook ran on the handler's thread before the mailbox closed.
            let message = take_panic(&threads.lock().map(|t| t.clone()).unwrap_or_default());
            handler.restart_after(generation, false);
            match message {
                Some((message, location)) => panicked::<J>(attempt, format!("handler panicked: {message}"), location),
                None => Outcome::Interrupted("the handler actor stopped before finishing the job".into()),
            }
        }
    }
}

/// Deserializes `job`, sends it to the live actor and maps every ending to an [`Outcome`]:
/// an answer, a closed mailbox (the actors are restarted), or no answer within the kind's
/// timeout (the execution is abandoned, see the module documentation).
fn dispatch<J, A, L>(
    handler: Arc<ActorHandler<J, A, L>>,
    job: &ClaimedJob,
    live: Option<LiveRef<A>>,
    cancellation: Cancellation,
    abandoned: &Abandoned,
) -> OutcomeFuture
where
    J: Job,
    A: Actor + Handler<Perform<J>>,
    A::Context: ToEnvelope<A, Perform<J>>,
    L: Launcher<A>,
{
    let parsed: J = match serde_json::from_str(&job.arguments) {
        Ok(parsed) => parsed,
        Err(err) => return Box::pin(std::future::ready(bad_arguments(job, err))),
    };
    let Some((generation, addr, threads)) = live else {
        return Box::pin(std::future::ready(Outcome::NotStarted("the handler actor is not running".into())));
    };
    let attempt = job.attempts;
    let request = Box::pin(addr.send(Perform { job: parsed, meta: meta(job, cancellation.clone()) }));
    let Some(timeout) = J::TIMEOUT else {
        return Box::pin(async move { answered(&handler, attempt, (generation, &threads), request.await) });
    };
    let (job, abandoned) = (job.clone(), abandoned.clone());
    Box::pin(async move {
        let started = Instant::now();
        let late = match select(request, Box::pin(actix_rt::time::sleep(timeout))).await {
            Either::Left((answer, _)) => return answered(&handler, attempt, (generation, &threads), answer),
            Either::Right(((), late)) => late,
        };
        cancellation.cancel(CancelReason::Timeout);
        warn!(handler.logger, "job ran past its timeout: its execution is abandoned and the job recorded as timed out";
            "job_id" => job.token.job_id, "kind" => &job.kind, "attempt" => attempt,
            "timeout_ms" => timeout.as_millis() as u64);
        abandoned.add(job.token, &job.kind, attempt, timeout);
        // A handler whose thread is still busy is left behind: later jobs go to new actors.
        if !handler.launcher.responsive().await {
            handler.restart_after(generation, true);
        }
        let (handler, token) = (handler.clone(), job.token);
        actix_rt::spawn(async move {
            let answer = late.await;
            if answer.is_err() {
                // Take a panic message it left, so that no later panic is blamed on it.
                let _ = take_panic(&threads.lock().map(|t| t.clone()).unwrap_or_default());
                handler.restart_after(generation, false);
            }
            abandoned.remove(token);
            info!(handler.logger, "an abandoned execution returned; its result is dropped";
            "job_id" => token.job_id, "ran_for_ms" => started.elapsed().as_millis() as u64,
            "result" => match &answer {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(err)) => format!("error: {err}"),
                Err(_) => "the handler actor stopped".to_string(),
            });
        });
        timed_out::<J>(&job, timeout)
    })
}

// --- async function handlers -------------------------------------------------------------------

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

// --- abandoned executions ---------------------------------------------------------------------

#[derive(Default)]
struct AbandonedState {
    executions: BTreeMap<ClaimToken, AbandonedExecution>,
    /// Bumped on every change, so that the heartbeat writes the list only when it changed.
    version: u64,
}

/// The executions of this process that ran past their timeout and whose handler has not
/// returned yet. The heartbeat writes them into the process row for `solidq status`.
#[derive(Clone, Default)]
pub struct Abandoned(Arc<Mutex<AbandonedState>>);

impl Abandoned {
    fn state(&self) -> std::sync::MutexGuard<'_, AbandonedState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The execution of claim `token` (attempt `attempt` of a job of `kind`) ran past `timeout`.
    pub fn add(&self, token: ClaimToken, kind: &str, attempt: i32, timeout: Duration) {
        let mut state = self.state();
        let entry = AbandonedExecution {
            job_id: token.job_id,
            kind: kind.to_string(),
            attempt,
            timeout_secs: timeout.as_secs_f64(),
            timed_out_at: Some(DateTime::<Utc>::from(std::time::SystemTime::now())),
        };
        state.executions.insert(token, entry);
        state.version += 1;
    }

    /// The abandoned execution of claim `token` returned.
    pub fn remove(&self, token: ClaimToken) {
        let mut state = self.state();
        if state.executions.remove(&token).is_some() {
            state.version += 1;
        }
    }

    /// Changes so far: a different number means a different list.
    pub fn version(&self) -> u64 {
        self.state().version
    }

    /// The list as it is now, with its version.
    pub fn snapshot(&self) -> (u64, AbandonedExecutions) {
        let state = self.state();
        (state.version, AbandonedExecutions::new(state.executions.values().cloned().collect()))
    }
}

// --- panic capture -------------------------------------------------------------------------

/// A panic's message and where it happened (`file:line`), by thread.
type PanicLog = Mutex<HashMap<ThreadId, (String, Option<String>)>>;

fn panic_log() -> &'static PanicLog {
    static LOG: OnceLock<PanicLog> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

/// Installs (once) a panic hook that remembers the last panic message of every thread, then
/// calls the hook that was installed before.
pub fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = payload_text(info.payload());
            let location = info.location().map(|loc| format!("{}:{}", loc.file(), loc.line()));
            if let Ok(mut log) = panic_log().lock() {
                log.insert(std::thread::current().id(), (message, location));
            }
            previous(info);
        }));
    });
}

/// The text of a panic payload.
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Takes the recorded panic message of any of `threads`.
fn take_panic(threads: &HashSet<ThreadId>) -> Option<(String, Option<String>)> {
    let mut log = panic_log().lock().ok()?;
    let thread = threads.iter().find(|t| log.contains_key(t)).copied()?;
    log.remove(&thread)
}

// --- handler actors and how they are started ------------------------------------------------

/// A handler actor's factory.
pub type Factory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// How a registration starts its actor(s): at start, and again each time they stop.
pub trait Launcher<A: Actor>: Send + Sync + 'static {
    /// Starts actor(s) made by `factory` and returns their address.
    fn launch(&self, factory: Factory<A>) -> Addr<A>;
    /// Starts actor(s) on new threads: the old ones are blocked by a handler that ran past
    /// its timeout.
    fn launch_elsewhere(&self, factory: Factory<A>) -> Addr<A> {
        self.launch(factory)
    }
    /// After a timeout: whether the actors' thread(s) still answer, i.e. are not blocked.
    fn responsive(&self) -> Pin<Box<dyn Future<Output = bool>>> {
        Box::pin(std::future::ready(true))
    }
    /// Releases what `launch` set up (threads).
    fn shutdown(&self) {}
}

/// Async actors (`Context<A>`) on an arbiter thread of their own, so a panic on that thread can
/// be attributed to this registration. The arbiter survives a panicking actor and hosts its
/// replacement. Once stopped, it is kept in the runtime's [`StoppedArbiters`] to be joined.
#[derive(Default)]
pub struct OwnArbiter(Mutex<Option<Arbiter>>, StoppedArbiters);

impl OwnArbiter {
    /// An arbiter that, once stopped, is kept in `stopped` for the runtime to join.
    pub(crate) fn joined_by(stopped: StoppedArbiters) -> Self {
        OwnArbiter(Mutex::new(None), stopped)
    }
}

impl<A: Actor<Context = Context<A>>> Launcher<A> for OwnArbiter {
    fn launch(&self, factory: Factory<A>) -> Addr<A> {
        let mut arbiter = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let handle = arbiter.get_or_insert_with(Arbiter::new).handle();
        A::start_in_arbiter(&handle, move |_| factory())
    }

    fn launch_elsewhere(&self, factory: Factory<A>) -> Addr<A> {
        let mut arbiter = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The blocked thread ends once its handler returns; shutdown joins it (with a limit).
        if let Some(blocked) = arbiter.replace(Arbiter::new()) {
            self.1.stop(blocked);
        }
        let handle = arbiter.get_or_insert_with(Arbiter::new).handle();
        A::start_in_arbiter(&handle, move |_| factory())
    }

    /// Runs a probe on the arbiter: a thread blocked inside a handler does not run it within
    /// [`PROBE_WAIT`].
    fn responsive(&self) -> Pin<Box<dyn Future<Output = bool>>> {
        let handle = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref().map(Arbiter::handle);
        let Some(handle) = handle else { return Box::pin(std::future::ready(false)) };
        let (ran, answer) = tokio::sync::oneshot::channel::<()>();
        if !handle.spawn(async move {
            let _ = ran.send(());
        }) {
            return Box::pin(std::future::ready(false));
        }
        Box::pin(async move { matches!(actix_rt::time::timeout(PROBE_WAIT, answer).await, Ok(Ok(()))) })
    }

    fn shutdown(&self) {
        let arbiter = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(arbiter) = arbiter {
            self.1.stop(arbiter);
        }
    }
}

/// Blocking actors (`SyncContext<A>`) on a `SyncArbiter` of this many threads. A panicking
/// thread is gone for good, so a restart launches a whole new pool; the old one drains its
/// queue and exits once its address is dropped (a thread stuck in a handler that ran past its
/// timeout exits when the handler returns).
pub struct SyncPool(pub usize);

impl<A: Actor<Context = SyncContext<A>>> Launcher<A> for SyncPool {
    fn launch(&self, factory: Factory<A>) -> Addr<A> {
        SyncArbiter::start(self.0.max(1), move || factory())
    }

    /// A blocking handler that has not answered holds its thread (or waits for one).
    fn responsive(&self) -> Pin<Box<dyn Future<Output = bool>>> {
        Box::pin(std::future::ready(false))
    }
}

struct Live<A: Actor> {
    generation: u64,
    addr: Addr<A>,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
}

/// A registered handler actor for jobs of type `J`, started by launcher `L`.
pub struct ActorHandler<J, A: Actor, L> {
    factory: Factory<A>,
    launcher: L,
    state: Mutex<Option<Live<A>>>,
    logger: Logger,
    _job: std::marker::PhantomData<fn(J)>,
}

impl<J, A, L> ActorHandler<J, A, L>
where
    J: Job,
    A: Actor,
    L: Launcher<A>,
{
    /// A handler that will start actors from `factory` with `launcher`.
    pub fn new(factory: impl Fn() -> A + Send + Sync + 'static, launcher: L, logger: &Logger) -> Self {
        ActorHandler {
            factory: Arc::new(factory),
            launcher,
            state: Mutex::new(None),
            logger: logger.new(o!("kind" => J::KIND)),
            _job: std::marker::PhantomData,
        }
    }

    /// Launches actors whose factory records the threads they run on; `elsewhere`: on new
    /// threads, the old ones being blocked.
    fn spawn(&self, generation: u64, elsewhere: bool) -> Live<A> {
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let seen = threads.clone();
        let factory = self.factory.clone();
        let factory: Factory<A> = Arc::new(move || {
            if let Ok(mut seen) = seen.lock() {
                seen.insert(std::thread::current().id());
            }
            factory()
        });
        let addr = if elsewhere { self.launcher.launch_elsewhere(factory) } else { self.launcher.launch(factory) };
        Live { generation, addr, threads }
    }

    /// After a closed mailbox, or a timeout that left a thread blocked (`elsewhere`): start new
    /// actors unless another caller already did.
    fn restart_after(&self, generation: u64, elsewhere: bool) {
        let Ok(mut state) = self.state.lock() else { return };
        if let Some(live) = state.as_mut() {
            if live.generation == generation {
                *live = self.spawn(generation + 1, elsewhere);
                if elsewhere {
                    warn!(self.logger, "handler actors started on new threads: a handler that ran past its timeout still blocks the old ones";
                        "restarts" => generation + 1);
                } else {
                    warn!(self.logger, "handler actor restarted after it stopped"; "restarts" => generation + 1);
                }
            }
        }
    }
}

impl<J, A, L> ErasedHandler for Arc<ActorHandler<J, A, L>>
where
    J: Job,
    A: Actor + Handler<Perform<J>>,
    A::Context: ToEnvelope<A, Perform<J>>,
    L: Launcher<A>,
{
    fn start(&self) {
        let live = self.spawn(0, false);
        if let Ok(mut state) = self.state.lock() {
            *state = Some(live);
        }
    }

    fn kind_options(&self, arguments: &str) -> (Option<String>, Option<crate::model::ConcurrencyLimit>) {
        kind_options_of::<J>(arguments)
    }

    fn perform(&self, job: &ClaimedJob, cancellation: Cancellation, abandoned: &Abandoned) -> OutcomeFuture {
        let live = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|live| (live.generation, live.addr.clone(), live.threads.clone())));
        dispatch(self.clone(), job, live, cancellation, abandoned)
    }

    fn stop(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.take();
        }
        self.launcher.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClaimToken;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Wait;

    impl Job for Wait {
        const KIND: &'static str = "wait";
    }

    fn claimed() -> ClaimedJob {
        ClaimedJob {
            token: ClaimToken { job_id: 1, claim_id: 1 },
            kind: Wait::KIND.into(),
            arguments: "null".into(),
            queue: "default".into(),
            priority: 0,
            attempts: 1,
            max_attempts: 5,
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
