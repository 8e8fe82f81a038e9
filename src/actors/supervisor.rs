//! Supervisor: starts the heartbeat, workers, completer and the maintenance services
//! (dispatcher, watchdog, scheduler, blocked sweep, cleaner, tidier), each on its own arbiter
//! thread; restarts any that stops, panics or gets stuck, with backoff; and runs the
//! shutdown sequence: stop claiming → wait for running jobs and their outcomes up to the
//! shutdown timeout → deregister (claims still open go back to ready) → stop.
//!
//! actix's own `Supervisor` restarts an actor only when it stops itself; a panic drops the actor
//! and closes its mailbox. So this supervisor watches every child's mailbox and pings it, and
//! builds a new child (on a new arbiter, in case the old thread is blocked) when one is gone.
//!
//! A child is stuck when it made no progress for its stuck limit *while the process ran*. When
//! the supervisor's own checks come late (the whole process was stopped, frozen in a VM pause or
//! starved of CPU), every child was late by the same gap: the supervisor counts progress again
//! from the moment it resumed instead of replacing children that merely did not run. Replacing
//! a worker never hands back a job that is running: executions belong to the process (see
//! [`ClaimBook`]), so only claims that never started go back to ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use slog::{error, info, o, warn, Logger};

use serde::Serialize;

use super::claim_book::{release_all, ClaimBook, Seat};
use super::completer::{self, Completer};
use super::heartbeat::{Deregister, Heartbeat, HeartbeatSettings, LostContact, ProcessReplaced};
use super::periodic::Periodic;
use super::worker::{ResumeClaiming, StopClaiming, Worker, WorkerContext, WorkerSettings};
use super::{Ping, SetProcess, StopChild};
use crate::arbiters::StoppedArbiters;
use crate::job::CancelReason;
use crate::maintenance::blocked_sweep::BlockedSweep;
use crate::maintenance::cleaner::Cleaner;
use crate::maintenance::dispatcher::{Dispatcher, DispatcherConfig};
use crate::maintenance::scheduler::{Scheduler, SchedulerConfig};
use crate::maintenance::tidier::Tidier;
use crate::maintenance::watchdog::{Watchdog, WatchdogConfig};
use crate::maintenance::Service;
use crate::model::ProcessId;
use crate::registry::Registry;
use crate::store::SharedStore;

/// Anyone → supervisor: the current process id, if registered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<ProcessId>")]
pub struct CurrentProcess;

/// Anyone → supervisor: drain and stop. `immediate` skips the drain (SIGQUIT).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown {
    /// Skip waiting for running jobs.
    pub immediate: bool,
}

/// What a shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Jobs still running (or with outcomes not yet written) when the shutdown timeout expired.
    pub abandoned: usize,
    /// Claims returned to ready by deregistration.
    pub released: usize,
    /// Whether the process row was deleted.
    pub deregistered: bool,
}

/// Default time a drain waits for running jobs (`SOLIDQ_SHUTDOWN_TIMEOUT`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often children are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often children are pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// First restart delay; doubles per restart up to [`MAX_RESTART_BACKOFF`].
pub const MIN_RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long without trouble starts again from the shortest backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// A check this much later than [`CHECK_INTERVAL`] means the process (or at least the
/// supervisor's thread) did not run meanwhile: no child is judged on that gap.
pub const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Everything the supervisor needs to build its children.
#[derive(Clone)]
pub struct SupervisorSettings {
    /// One worker per entry.
    pub workers: Vec<WorkerSettings>,
    /// Heartbeat settings.
    pub heartbeat: HeartbeatSettings,
    /// The dispatcher service.
    pub dispatcher: DispatcherConfig,
    /// The watchdog service.
    pub watchdog: WatchdogConfig,
    /// The scheduler of recurring tasks; `None`: this process runs none (`SOLIDQ_SCHEDULER=false`).
    pub scheduler: Option<SchedulerConfig>,
    /// The sweep of blocked jobs.
    pub blocked_sweep: BlockedSweep,
    /// The cleaner of ended jobs; `None`: they are kept for ever.
    pub cleaner: Option<Cleaner>,
    /// The tidier of the queue tables.
    pub tidier: Tidier,
    /// How long a drain waits for running jobs.
    pub shutdown_timeout: Duration,
    /// Minimum time without progress before a child counts as stuck (raised per child to ten
    /// of its intervals, three for the heartbeat).
    pub stuck_after: Duration,
    /// Handle TERM/INT (drain) and QUIT (exit at once) and stop the System when done.
    pub standalone: bool,
}

/// How long `kind` may go without progress before it counts as stuck: at least
/// `stuck_after`, and at least ten of its own ticks (three for the heartbeat, which ticks once
/// per heartbeat interval).
fn stuck_limit(settings: &SupervisorSettings, kind: ChildKind) -> Duration {
    let ticks = match kind {
        ChildKind::Heartbeat => settings.heartbeat.interval * 3,
        ChildKind::Worker(i) => settings.workers[i].polling_interval * 10,
        ChildKind::Completer => completer::RETRY_TICK * 10,
        ChildKind::Dispatcher => settings.dispatcher.interval * 10,
        ChildKind::Watchdog => settings.watchdog.interval * 10,
        // It sleeps up to one reload interval between passes.
        ChildKind::Scheduler => settings.scheduler.as_ref().map_or(Duration::ZERO, |s| s.reload_interval * 3),
        ChildKind::BlockedSweep => settings.blocked_sweep.interval() * 10,
        ChildKind::Cleaner => settings.cleaner.as_ref().map_or(Duration::ZERO, |c| c.interval() * 10),
        ChildKind::Tidier => settings.tidier.interval() * 10,
    };
    settings.stuck_after.max(ticks)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildKind {
    Heartbeat,
    Worker(usize),
    Completer,
    Dispatcher,
    Watchdog,
    Scheduler,
    BlockedSweep,
    Cleaner,
    Tidier,
}

struct Running {
    arbiter: Arbiter,
    ping: Recipient<Ping>,
    set_process: Recipient<SetProcess>,
    stop: Recipient<StopChild>,
    worker: Option<Addr<Worker>>,
    heartbeat: Option<Addr<Heartbeat>>,
    started_at: Instant,
}

impl Running {
    /// The handles every child has; `worker`/`heartbeat` are filled in by the caller.
    fn new<A>(arbiter: Arbiter, addr: &Addr<A>) -> Running
    where
        A: Actor<Context = Context<A>> + Handler<Ping> + Handler<SetProcess> + Handler<StopChild>,
    {
        Running {
            arbiter,
            ping: addr.clone().recipient(),
            set_process: addr.clone().recipient(),
            stop: addr.clone().recipient(),
            worker: None,
            heartbeat: None,
            started_at: Instant::now(),
        }
    }
}

struct Child {
    kind: ChildKind,
    running: Option<Running>,
    restarts: u32,
    backoff: Duration,
    restart_at: Option<Instant>,
    ping_in_flight: bool,
    stuck_after: Duration,
    /// The seat of the running worker instance (workers only).
    seat: Seat,
}

/// Starts `service` under a [`Periodic`] actor on `handle`'s arbiter.
fn periodic<S: Service>(
    arbiter: Arbiter,
    service: S,
    (handle, store, process, logger): (&ArbiterHandle, SharedStore, Option<ProcessId>, &Logger),
) -> Running {
    let logger = logger.clone();
    let addr = Periodic::start_in_arbiter(handle, move |_| Periodic::new(service, store, process, &logger));
    Running::new(arbiter, &addr)
}

/// The supervisor actor. Start it with [`crate::Runtime::start`].
pub struct Supervisor {
    settings: SupervisorSettings,
    store: SharedStore,
    registry: Arc<Registry>,
    /// Every claim of the process, from claim to recorded outcome.
    claims: Arc<ClaimBook>,
    /// Where executions run: lives as long as the supervisor, whatever the workers do.
    executions: Option<Arbiter>,
    /// The runtime's logger, for children (they add their own `actor` key).
    root_logger: Logger,
    logger: Logger,
    children: Vec<Child>,
    process: Option<ProcessId>,
    fenced: bool,
    stopping: bool,
    last_ping: Instant,
    /// When the last check of the children ran.
    last_check: Instant,
    /// When the process last resumed after a pause (or started): progress counts from here.
    resumed_at: Instant,
    /// Children's arbiters stopped so far, for the runtime to join at shutdown.
    stopped: StoppedArbiters,
    /// Wakes the workers when the store makes jobs ready; the store holds it weakly.
    jobs_ready: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The thread listening for jobs made ready by other processes, and its stop flag.
    listener: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Supervisor {
    /// A supervisor for the given children.
    pub fn new(settings: SupervisorSettings, store: SharedStore, registry: Arc<Registry>, logger: &Logger) -> Self {
        let mut kinds = vec![ChildKind::Heartbeat];
        kinds.extend((0..settings.workers.len()).map(ChildKind::Worker));
        kinds.extend([ChildKind::Completer, ChildKind::Dispatcher, ChildKind::Watchdog, ChildKind::BlockedSweep]);
        kinds.push(ChildKind::Tidier);
        if settings.scheduler.is_some() {
            kinds.push(ChildKind::Scheduler);
        }
        if settings.cleaner.is_some() {
            kinds.push(ChildKind::Cleaner);
        }
        let children = kinds
            .into_iter()
            .map(|kind| (kind, stuck_limit(&settings, kind)))
            .map(|(kind, stuck_after)| Child {
                kind,
                running: None,
                restarts: 0,
                backoff: MIN_RESTART_BACKOFF,
                restart_at: None,
                ping_in_flight: false,
                stuck_after,
                seat: 0,
            })
            .collect();
        Supervisor {
            settings,
            store,
            registry,
            claims: Arc::new(ClaimBook::default()),
            executions: None,
            root_logger: logger.clone(),
            logger: logger.new(o!("actor" => "supervisor")),
            children,
            process: None,
            fenced: false,
            stopping: false,
            last_ping: Instant::now(),
            last_check: Instant::now(),
            resumed_at: Instant::now(),
            stopped: StoppedArbiters::default(),
            jobs_ready: None,
            listener: None,
        }
    }

    /// Subscribes the workers to jobs made ready by this process's store, and starts the
    /// listener for those made ready elsewhere when the backend has one.
    fn listen_for_ready_jobs(&mut self) {
        let book = self.claims.clone();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || book.jobs_ready());
        self.store.on_jobs_ready(&wake);
        if let Some(listen) = self.store.ready_listener() {
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, thread_wake) = (stop.clone(), wake.clone());
            match std::thread::Builder::new().name("solidq-listener".into()).spawn(move || listen(&*thread_wake, &flag))
            {
                Ok(thread) => self.listener = Some((stop, thread)),
                Err(err) => warn!(self.logger, "no listener for new jobs: workers poll"; "error" => %err),
            }
        }
        self.jobs_ready = Some(wake);
    }

    /// Stops the listener; the runtime joins its thread with the arbiters'.
    fn stop_listening(&mut self) {
        if let Some((stop, thread)) = self.listener.take() {
            stop.store(true, Ordering::Relaxed);
            self.stopped.ended(thread);
        }
        self.jobs_ready = None;
    }

    /// Keeps the children's stopped arbiters in `stopped` (the runtime joins them at shutdown).
    pub(crate) fn with_stopped_arbiters(mut self, stopped: StoppedArbiters) -> Self {
        self.stopped = stopped;
        self
    }

    fn spawn(&self, index: usize, me: &Addr<Self>) -> Running {
        let child = &self.children[index];
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let (store, logger, process) = (self.store.clone(), self.root_logger.clone(), self.process);
        let run = (&handle, store.clone(), process, &logger);
        match child.kind {
            ChildKind::Heartbeat => {
                let settings = self.settings.heartbeat.clone();
                let (replaced, fenced) = (me.clone().recipient(), me.clone().recipient());
                let abandoned = self.registry.abandoned().clone();
                let addr = Heartbeat::start_in_arbiter(&handle, move |_| {
                    Heartbeat::new(settings, store, replaced, fenced, process, abandoned, &logger)
                });
                Running { heartbeat: Some(addr.clone()), ..Running::new(arbiter, &addr) }
            }
            ChildKind::Worker(i) => {
                let settings = self.settings.workers[i].clone();
                let executions = match &self.executions {
                    Some(arbiter) => arbiter.handle(),
                    None => handle.clone(),
                };
                let kinds = Arc::new(self.registry.kinds().into_iter().map(String::from).collect());
                let (registry, book) = (self.registry.clone(), self.claims.clone());
                let listening = self.listener.is_some();
                let shared = WorkerContext { store, registry, book, executions, kinds, listening };
                let seat = child.seat;
                let addr = Worker::start_in_arbiter(&handle, move |_| {
                    Worker::new(settings, shared, (i, seat), process, &logger)
                });
                if self.fenced || self.stopping {
                    addr.do_send(StopClaiming);
                }
                Running { worker: Some(addr.clone()), ..Running::new(arbiter, &addr) }
            }
            ChildKind::Completer => {
                let book = self.claims.clone();
                let addr = Completer::start_in_arbiter(&handle, move |_| Completer::new(store, book, process, &logger));
                Running::new(arbiter, &addr)
            }
            ChildKind::Dispatcher => periodic(arbiter, Dispatcher::new(self.settings.dispatcher.clone()), run),
            ChildKind::Watchdog => periodic(arbiter, Watchdog::new(self.settings.watchdog.clone()), run),
            ChildKind::Scheduler => {
                let config = self.settings.scheduler.clone().unwrap_or_default();
                periodic(arbiter, Scheduler::new(config), run)
            }
            ChildKind::BlockedSweep => periodic(arbiter, self.settings.blocked_sweep.clone(), run),
            ChildKind::Cleaner => periodic(arbiter, self.settings.cleaner.clone().unwrap_or_default(), run),
            ChildKind::Tidier => periodic(arbiter, self.settings.tidier.clone(), run),
        }
    }

    fn child_name(kind: ChildKind) -> String {
        match kind {
            ChildKind::Heartbeat => "heartbeat".into(),
            ChildKind::Worker(i) => format!("worker-{i}"),
            ChildKind::Completer => "completer".into(),
            ChildKind::Dispatcher => Dispatcher::NAME.into(),
            ChildKind::Watchdog => Watchdog::NAME.into(),
            ChildKind::Scheduler => Scheduler::NAME.into(),
            ChildKind::BlockedSweep => BlockedSweep::NAME.into(),
            ChildKind::Cleaner => Cleaner::NAME.into(),
            ChildKind::Tidier => Tidier::NAME.into(),
        }
    }

    /// Takes a child down (it stopped, panicked or is stuck) and schedules its restart.
    fn schedule_restart(&mut self, index: usize, why: &str) {
        let child = &mut self.children[index];
        let Some(old) = child.running.take() else { return };
        old.stop.do_send(StopChild);
        self.stopped.stop(old.arbiter);
        if old.started_at.elapsed() > STABLE_AFTER {
            child.backoff = MIN_RESTART_BACKOFF;
        }
        let delay = child.backoff;
        child.backoff = (child.backoff * 2).min(MAX_RESTART_BACKOFF);
        child.restart_at = Some(Instant::now() + delay);
        child.ping_in_flight = false;
        let name = Self::child_name(child.kind);
        error!(self.logger, "child actor is down; restarting"; "child" => &name, "reason" => why,
            "restart_in_ms" => delay.as_millis() as u64, "restarts_so_far" => child.restarts);
        // Claims the replaced worker took but never started: nobody will run them. Running
        // executions stay with the process; the replacement counts them.
        let unstarted = self.claims.retire(child.seat);
        if !unstarted.is_empty() {
            let logger = self.logger.clone();
            let call = super::blocking(&self.store, move |s| release_all(s, &unstarted, Utc::now().naive_utc()));
            actix_rt::spawn(async move {
                match call.await {
                    Ok(outcome) => warn!(logger, "unstarted claims of the replaced worker returned to ready";
                        "child" => name, "released" => outcome.released, "fenced" => outcome.fenced),
                    Err(err) => error!(logger,
                        "could not release the replaced worker's unstarted claims; they go back when this process deregisters or dies";
                        "child" => name, "error" => %err),
                }
            });
        }
    }

    /// Notes a pause: the checks came late by more than [`PAUSE_AFTER`], so the process (or
    /// this thread) did not run and its children could not make progress either.
    fn observe_pause(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_check);
        if gap > CHECK_INTERVAL + PAUSE_AFTER {
            warn!(self.logger, "this process did not run for a while (stopped, frozen or starved of CPU); children's progress counts from now";
                "paused_ms" => gap.as_millis() as u64);
            self.resumed_at = now;
            self.last_check = now;
        }
    }

    /// Whether a child whose loop last progressed at `last_progress` is stuck: no progress for
    /// longer than `limit` while the process ran.
    fn stuck(&self, last_progress: Instant, limit: Duration) -> bool {
        last_progress.max(self.resumed_at).elapsed() > limit
    }

    fn check_children(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        self.observe_pause(now);
        self.last_check = now;
        let ping_now = now.duration_since(self.last_ping) >= PING_INTERVAL;
        if ping_now {
            self.last_ping = now;
        }
        for index in 0..self.children.len() {
            let child = &self.children[index];
            match &child.running {
                None => {
                    if child.restart_at.is_some_and(|at| now >= at) {
                        self.start_child(index, ctx);
                    }
                }
                Some(running) if !running.ping.connected() => {
                    self.schedule_restart(index, "its mailbox closed (it stopped or panicked)");
                }
                Some(running) if ping_now && !child.ping_in_flight => {
                    let request = running.ping.send(Ping).timeout(child.stuck_after);
                    let stuck_after = child.stuck_after;
                    self.children[index].ping_in_flight = true;
                    ctx.spawn(request.into_actor(self).map(move |answer, act, _| {
                        act.children[index].ping_in_flight = false;
                        // An answer (or a timeout) that spans a pause says nothing about the child.
                        act.observe_pause(Instant::now());
                        if act.resumed_at > now {
                            return;
                        }
                        let stuck = match answer {
                            Ok(last_progress) => act.stuck(last_progress, stuck_after),
                            Err(MailboxError::Timeout) => true,
                            Err(MailboxError::Closed) => false,
                        };
                        if stuck && !act.stopping {
                            act.schedule_restart(index, "it made no progress for too long (stuck)");
                        }
                    }));
                }
                Some(_) => {}
            }
        }
    }

    fn start_child(&mut self, index: usize, ctx: &mut Context<Self>) {
        self.children[index].seat = self.claims.seat();
        let running = self.spawn(index, &ctx.address());
        let child = &mut self.children[index];
        if child.restart_at.take().is_some() {
            child.restarts += 1;
            info!(self.logger, "child actor restarted"; "child" => Self::child_name(child.kind), "restarts" => child.restarts);
        }
        child.running = Some(running);
    }

    fn workers(&self) -> Vec<Addr<Worker>> {
        self.children.iter().filter_map(|c| c.running.as_ref().and_then(|r| r.worker.clone())).collect()
    }

    fn listen_for_signals(&self, ctx: &mut Context<Self>) {
        use actix_rt::signal::unix::{signal, SignalKind};
        let logger = self.logger.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let (Ok(mut term), Ok(mut int), Ok(mut quit)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit()))
            else {
                error!(logger, "could not install signal handlers");
                return;
            };
            let mut draining = false;
            loop {
                let name = tokio_select(&mut term, &mut int, &mut quit).await;
                if name == "QUIT" || draining {
                    warn!(logger, "exiting at once; claims are left for the watchdog of another process"; "signal" => name);
                    std::process::exit(0);
                }
                info!(logger, "draining: no new claims, waiting for running jobs"; "signal" => name);
                draining = true;
                me.do_send(Shutdown { immediate: false });
            }
        });
    }
}

/// Waits for the first of TERM, INT or QUIT and names it.
async fn tokio_select(
    term: &mut actix_rt::signal::unix::Signal,
    int: &mut actix_rt::signal::unix::Signal,
    quit: &mut actix_rt::signal::unix::Signal,
) -> &'static str {
    use futures_util::future::{select, Either};
    let first = select(Box::pin(term.recv()), Box::pin(int.recv()));
    match select(first, Box::pin(quit.recv())).await {
        Either::Left((Either::Left(_), _)) => "TERM",
        Either::Left((Either::Right(_), _)) => "INT",
        Either::Right(_) => "QUIT",
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(self.logger, "supervisor starting"; "workers" => self.settings.workers.len());
        self.registry.start_all();
        self.executions = Some(Arbiter::new());
        self.listen_for_ready_jobs();
        for index in 0..self.children.len() {
            self.start_child(index, ctx);
        }
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| act.check_children(ctx));
        if self.settings.standalone {
            self.listen_for_signals(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Stopped without a shutdown (its System ended): the listener must still end.
        self.stop_listening();
    }
}

impl Handler<ProcessReplaced> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: ProcessReplaced, _: &mut Context<Self>) {
        self.process = Some(msg.id);
        let was_fenced = std::mem::take(&mut self.fenced);
        for running in self.children.iter().filter_map(|c| c.running.as_ref()) {
            running.set_process.do_send(SetProcess(Some(msg.id)));
        }
        if was_fenced && !self.stopping {
            self.workers().iter().for_each(|w| w.do_send(ResumeClaiming));
        }
    }
}

impl Handler<LostContact> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: LostContact, _: &mut Context<Self>) {
        warn!(self.logger, "fenced: claiming stops until the database confirms this process";
            "silent_for_ms" => msg.silent_for.as_millis() as u64);
        self.fenced = true;
        self.workers().iter().for_each(|w| w.do_send(StopClaiming));
    }
}

impl Handler<CurrentProcess> for Supervisor {
    type Result = Option<ProcessId>;
    fn handle(&mut self, _: CurrentProcess, _: &mut Context<Self>) -> Option<ProcessId> {
        self.process
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let workers = self.workers();
        workers.iter().for_each(|w| w.do_send(StopClaiming));
        let timeout = if msg.immediate { Duration::ZERO } else { self.settings.shutdown_timeout };
        let heartbeat = self.children.iter().find_map(|c| c.running.as_ref().and_then(|r| r.heartbeat.clone()));
        let deregister = !msg.immediate;
        let (logger, book) = (self.logger.clone(), self.claims.clone());
        let drain = async move {
            let deadline = Instant::now() + timeout;
            while book.open() > 0 && Instant::now() < deadline {
                actix_rt::time::sleep(Duration::from_millis(25)).await;
            }
            let open = book.open();
            if open > 0 && deregister {
                warn!(logger, "shutdown timeout reached with jobs still running or unrecorded; their claims are released";
                    "open" => open);
            }
            // Nobody waits for them any more: handlers that watch their token may stop.
            book.cancel_all(CancelReason::Shutdown);
            let mut report = ShutdownReport { abandoned: open, ..Default::default() };
            // Workers stop before deregistering so nothing claims after.
            workers.iter().for_each(|w| w.do_send(StopChild));
            if let (true, Some(heartbeat)) = (deregister, heartbeat) {
                if let Ok(Ok(released)) = heartbeat.send(Deregister).await {
                    report.released = released;
                    report.deregistered = true;
                    let cut_short = book.clear();
                    if !cut_short.is_empty() {
                        warn!(logger, "claims still open went back to ready without using an attempt; outcomes that arrive later are dropped";
                            "job_ids" => ?cut_short);
                    }
                }
            }
            report
        };
        Box::pin(drain.into_actor(self).map(|report, act, ctx| {
            for child in act.children.iter_mut() {
                if let Some(running) = child.running.take() {
                    running.stop.do_send(StopChild);
                    act.stopped.stop(running.arbiter);
                }
            }
            act.registry.stop_all();
            act.stop_listening();
            if let Some(executions) = act.executions.take() {
                act.stopped.stop(executions);
            }
            info!(act.logger, "stopped"; "abandoned" => report.abandoned, "released" => report.released,
                "deregistered" => report.deregistered);
            ctx.stop();
            if act.settings.standalone {
                System::current().stop_with_code(0);
            }
            report
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QueuePattern;
    use crate::model::WorkerGroup;

    #[test]
    fn no_child_counts_as_stuck_between_two_of_its_ticks() {
        let settings = SupervisorSettings {
            workers: vec![WorkerSettings {
                group: WorkerGroup { queues: vec![QueuePattern::All], concurrency: 1 },
                polling_interval: Duration::from_millis(100),
            }],
            heartbeat: HeartbeatSettings {
                interval: Duration::from_secs(30),
                alive_threshold: Duration::from_secs(300),
                details: Default::default(),
            },
            dispatcher: DispatcherConfig::default(),
            watchdog: WatchdogConfig::default(),
            scheduler: None,
            blocked_sweep: BlockedSweep::default(),
            cleaner: Some(Cleaner::default()),
            tidier: Tidier::default(),
            shutdown_timeout: Duration::from_secs(5),
            stuck_after: Duration::from_secs(15),
            standalone: false,
        };
        // The heartbeat beats every 30 s: a 15 s limit would restart it while idle.
        assert_eq!(stuck_limit(&settings, ChildKind::Heartbeat), Duration::from_secs(90));
        assert_eq!(stuck_limit(&settings, ChildKind::Worker(0)), Duration::from_secs(15));
        assert_eq!(stuck_limit(&settings, ChildKind::Dispatcher), Duration::from_secs(15));
        let slow = SupervisorSettings {
            dispatcher: DispatcherConfig { interval: Duration::from_secs(60), ..DispatcherConfig::default() },
            ..settings
        };
        assert_eq!(stuck_limit(&slow, ChildKind::Dispatcher), Duration::from_secs(600));
    }
}
