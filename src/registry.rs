//! Job kind → handler actor. Deserializes a claimed job's arguments for its kind, sends
//! [`Perform<J>`] to the registered actor, and turns every way that can end (success, error,
//! panic, unknown kind, bad arguments) into an [`Outcome`].
//!
//! A panic inside a handler drops the actix actor and closes its mailbox (actix's Supervisor does
//! not restart on panic). The registry notices the closed mailbox, takes the panic message that
//! its panic hook captured on the handler's thread, and starts a fresh actor from the factory.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use slog::{o, warn, Logger};

use crate::arbiters::StoppedArbiters;
use crate::job::{ErrorAction, Job, JobError, JobMeta, Perform};
use crate::lifecycle::Outcome;
use crate::model::{ClaimedJob, FailureKind, FailureRecord};

/// A future resolving to an execution's outcome.
pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome>>>;

/// A registered handler with its job type erased.
pub trait ErasedHandler: Send + Sync {
    /// Starts the handler actor(s); called once inside the running System.
    fn start(&self);
    /// Runs one claimed job.
    fn perform(&self, job: &ClaimedJob) -> OutcomeFuture;
    /// Stops the handler actor(s) and their threads.
    fn stop(&self);
}

/// The table of registered handlers, shared by all workers of a runtime.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn ErasedHandler>>,
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

    /// Runs `job` on its kind's handler; an unknown kind fails permanently, naming the kind and
    /// the process (`process_label`).
    pub fn perform(&self, job: &ClaimedJob, process_label: &str) -> OutcomeFuture {
        match self.handlers.get(job.kind.as_str()) {
            Some(handler) => handler.perform(job),
            // Claims take only registered kinds; should one slip through, it goes back unrun.
            None => Box::pin(std::future::ready(Outcome::NotStarted(format!(
                "no handler is registered for job kind {:?} in process {process_label} (registered: {})",
                job.kind,
                self.kinds().join(", ")
            )))),
        }
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

fn meta(job: &ClaimedJob) -> JobMeta {
    JobMeta {
        id: job.token.job_id,
        kind: job.kind.clone(),
        queue: job.queue.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
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

/// Deserializes `job`, sends it to the live actor and maps every ending to an [`Outcome`];
/// on a closed mailbox calls `restart` with the generation that failed.
fn dispatch<J, A>(job: &ClaimedJob, live: Option<LiveRef<A>>, restart: impl FnOnce(u64) + 'static) -> OutcomeFuture
where
    J: Job,
    A: Actor + Handler<Perform<J>>,
    A::Context: ToEnvelope<A, Perform<J>>,
{
    let parsed: J = match serde_json::from_str(&job.arguments) {
        Ok(parsed) => parsed,
        Err(err) => return Box::pin(std::future::ready(bad_arguments(job, err))),
    };
    let Some((generation, addr, threads)) = live else {
        return Box::pin(std::future::ready(Outcome::NotStarted("the handler actor is not running".into())));
    };
    let attempt = job.attempts;
    let request = addr.send(Perform { job: parsed, meta: meta(job) });
    Box::pin(async move {
        match request.await {
            Ok(result) => handler_result::<J>(attempt, result),
            Err(_) => {
                // The panic hook ran on the handler's thread before the mailbox closed.
                let message = take_panic(&threads.lock().map(|t| t.clone()).unwrap_or_default());
                restart(generation);
                match message {
                    Some((message, location)) => {
                        panicked::<J>(attempt, format!("handler panicked: {message}"), location)
                    }
                    None => Outcome::Interrupted("the handler actor stopped before finishing the job".into()),
                }
            }
        }
    })
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

    fn shutdown(&self) {
        let arbiter = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(arbiter) = arbiter {
            self.1.stop(arbiter);
        }
    }
}

/// Blocking actors (`SyncContext<A>`) on a `SyncArbiter` of this many threads. A panicking
/// thread is gone for good, so a restart launches a whole new pool; the old one drains its
/// queue and exits once its address is dropped.
pub struct SyncPool(pub usize);

impl<A: Actor<Context = SyncContext<A>>> Launcher<A> for SyncPool {
    fn launch(&self, factory: Factory<A>) -> Addr<A> {
        SyncArbiter::start(self.0.max(1), move || factory())
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

    /// Launches actors whose factory records the threads they run on.
    fn spawn(&self, generation: u64) -> Live<A> {
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let seen = threads.clone();
        let factory = self.factory.clone();
        let addr = self.launcher.launch(Arc::new(move || {
            if let Ok(mut seen) = seen.lock() {
                seen.insert(std::thread::current().id());
            }
            factory()
        }));
        Live { generation, addr, threads }
    }

    /// After a closed mailbox: start new actors unless another caller already did.
    fn restart_after(&self, generation: u64) {
        let Ok(mut state) = self.state.lock() else { return };
        if let Some(live) = state.as_mut() {
            if live.generation == generation {
                *live = self.spawn(generation + 1);
                warn!(self.logger, "handler actor restarted after it stopped"; "restarts" => generation + 1);
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
        let live = self.spawn(0);
        if let Ok(mut state) = self.state.lock() {
            *state = Some(live);
        }
    }

    fn perform(&self, job: &ClaimedJob) -> OutcomeFuture {
        let live = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|live| (live.generation, live.addr.clone(), live.threads.clone())));
        let this = self.clone();
        dispatch::<J, A>(job, live, move |generation| this.restart_after(generation))
    }

    fn stop(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.take();
        }
        self.launcher.shutdown();
    }
}
