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
use slog::{info, o, warn, Logger};

use serde::Serialize;

use super::claim_book::{ClaimBook, Seat};
use super::heartbeat::{Heartbeat, HeartbeatSettings, LostContact, ProcessReplaced};
use super::worker::{ResumeClaiming, StopClaiming, Worker, WorkerSettings};
use super::{Ping, SetProcess, StopChild};
use crate::arbiters::StoppedArbiters;
use crate::maintenance::cleaner::Cleaner;
use crate::maintenance::dispatcher::DispatcherConfig;
use crate::maintenance::election::ElectionConfig;
use crate::maintenance::latency_alarm::LatencyAlarmConfig;
use crate::maintenance::scheduler::SchedulerConfig;
use crate::maintenance::watchdog::WatchdogConfig;
use crate::metrics::Telemetry;
use crate::model::ProcessId;
use crate::registry::Registry;
use crate::store::SharedStore;

mod children;
mod shutdown;
mod signals;

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
    /// The cleaner of ended jobs; `None`: they are kept for ever.
    pub cleaner: Option<Cleaner>,
    /// How long a drain waits for running jobs.
    pub shutdown_timeout: Duration,
    /// Minimum time without progress before a child counts as stuck (raised per child to ten
    /// of its intervals, three for the heartbeat).
    pub stuck_after: Duration,
    /// Handle TERM/INT (drain) and QUIT (exit at once) and stop the System when done.
    pub standalone: bool,
    /// The latency alarm; `None`: `SOLIDQ_ALERT_QUEUE_LATENCY` is not set.
    pub latency_alarm: Option<LatencyAlarmConfig>,
    /// How the election of the leader paces itself.
    pub election: ElectionConfig,
    /// Where the children report metrics and events.
    pub(crate) telemetry: Telemetry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChildKind {
    Heartbeat,
    Worker(usize),
    Completer,
    Dispatcher,
    Watchdog,
    Scheduler,
    BlockedSweep,
    Cleaner,
    Tidier,
    LatencyAlarm,
    Election,
}

pub(super) struct Running {
    pub(super) arbiter: Arbiter,
    pub(super) ping: Recipient<Ping>,
    pub(super) set_process: Recipient<SetProcess>,
    pub(super) stop: Recipient<StopChild>,
    pub(super) worker: Option<Addr<Worker>>,
    pub(super) heartbeat: Option<Addr<Heartbeat>>,
    pub(super) started_at: Instant,
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

pub(super) struct Child {
    pub(super) kind: ChildKind,
    pub(super) running: Option<Running>,
    pub(super) restarts: u32,
    pub(super) backoff: Duration,
    pub(super) restart_at: Option<Instant>,
    pub(super) ping_in_flight: bool,
    pub(super) stuck_after: Duration,
    /// The seat of the running worker instance (workers only).
    pub(super) seat: Seat,
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
        let children = Supervisor::children_of(&settings);
        let claims = Arc::new(ClaimBook::reporting_to(settings.telemetry.clone()));
        Supervisor {
            settings,
            store,
            registry,
            claims,
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
