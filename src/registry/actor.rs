//! Handler actors: how a registration starts its actor(s) (an arbiter of its own for async
//! actors, a `SyncArbiter` for blocking ones), sends them jobs, and starts them again when a
//! panic closed their mailbox or a timeout left their thread busy.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures_util::future::{select, Either};
use slog::{info, o, warn, Logger};

use super::abandoned::Abandoned;
use super::panics::take_panic;
use super::{
    bad_arguments, handler_result, kind_options_of, meta, panicked, timed_out, ErasedHandler, OutcomeFuture, PROBE_WAIT,
};
use crate::arbiters::StoppedArbiters;
use crate::job::{CancelReason, Cancellation, Job, JobError, Perform};
use crate::lifecycle::Outcome;
use crate::model::ClaimedJob;

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
