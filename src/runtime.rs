//! The [`Runtime`]: configuration, handler registration, start (embedded or standalone) and
//! graceful stop.

use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use slog::{info, warn, Logger};

use crate::actors::heartbeat::HeartbeatSettings;
pub use crate::actors::supervisor::ShutdownReport;
use crate::actors::supervisor::{CurrentProcess, Shutdown, Supervisor, SupervisorSettings};
use crate::actors::worker::WorkerSettings;
use crate::arbiters::{StoppedArbiters, THREAD_JOIN_TIMEOUT};
use crate::config::{Config, ConfigError};
use crate::events::Event;
use crate::health::Health;
use crate::job::Queue;
use crate::job::{Job, Perform};
use crate::logging::LoggingGuard;
use crate::maintenance::cleaner::Cleaner;
use crate::maintenance::dispatcher::{DispatcherConfig, DEFAULT_MAX_BATCHES_PER_PASS};
use crate::maintenance::election::ElectionConfig;
use crate::maintenance::latency_alarm::{LatencyAlarmConfig, DEFAULT_INTERVAL as LATENCY_ALARM_INTERVAL};
use crate::maintenance::scheduler::{SchedulerConfig, RELOAD_INTERVAL};
use crate::maintenance::watchdog::{WatchdogConfig, DEFAULT_SESSION_CONFIRMATION};
use crate::metrics::server::{Endpoints, MetricsServer};
use crate::metrics::{Exporter, Metrics, Telemetry};
use crate::model::{ProcessDetails, ProcessId, WorkerDetails};
use crate::recurring::RecurringTasks;
use crate::recurring::{RecurringError, RecurringTask};
use crate::registry::{self, ActorHandler, ErasedHandler, OwnArbiter, Registry, SyncPool};
use crate::store::{self, SharedStore, StoreError};

/// Why a runtime could not be built or started.
///
/// Its `Debug` prints the same text as `Display`, so that an application's
/// `fn main() -> Result<(), Box<dyn Error>>` shows a bad setting as a readable message.
#[derive(thiserror::Error)]
pub enum RuntimeError {
    /// A `SOLIDQ_*` variable is malformed.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Two handlers were registered for one job kind.
    #[error("job kind {0:?} has two handlers registered")]
    DuplicateKind(&'static str),
    /// A job type registered with a `KIND` or `QUEUE` that breaks the rules of names
    /// ([`name_problem`](crate::model::name_problem)).
    #[error("job type {type_name} cannot be registered: {problem}")]
    InvalidJobType {
        /// The Rust type.
        type_name: &'static str,
        /// What is wrong with its kind or queue.
        problem: String,
    },
    /// A static recurring task is invalid, or two have one key.
    #[error(transparent)]
    Recurring(#[from] RecurringError),
    /// The actix System failed to run.
    #[error("the actix system failed: {0}")]
    System(String),
    /// `SOLIDQ_METRICS_BIND` names an address this process cannot listen on.
    #[error("cannot serve metrics on SOLIDQ_METRICS_BIND={addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why (the port is taken, the address is not this host's).
        source: std::io::Error,
    },
}

impl std::fmt::Debug for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A solidq runtime: a supervisor with workers, dispatcher, scheduler of recurring tasks,
/// heartbeat and watchdog, and the job-handler actors the application registers.
///
/// Embedded in an actix application (inside a running `System`):
/// ```no_run
/// use actix::prelude::*;
/// use serde::{Deserialize, Serialize};
/// use solidq::{Job, JobError, Perform, Runtime};
///
/// #[derive(Serialize, Deserialize)]
/// struct Welcome { user_id: i64 }
/// impl Job for Welcome { const KIND: &'static str = "mailer.welcome"; }
///
/// struct Mailer;
/// impl Actor for Mailer { type Context = Context<Self>; }
/// impl Handler<Perform<Welcome>> for Mailer {
///     type Result = Result<(), JobError>;
///     fn handle(&mut self, msg: Perform<Welcome>, _: &mut Context<Self>) -> Self::Result {
///         println!("welcome, user {}", msg.job.user_id);
///         Ok(())
///     }
/// }
///
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let runtime = Runtime::from_env()?.register::<Welcome, _, _>(|| Mailer);
///     let queue = runtime.queue();
///     let handle = runtime.start()?;
///     queue.enqueue(Welcome { user_id: 7 }).await?;
///     // ... serve requests ...
///     handle.shutdown().await;
///     Ok(())
/// }
/// ```
pub struct Runtime {
    config: Config,
    store: SharedStore,
    logger: Logger,
    /// The registered handlers, and the first registration refused (a kind twice, a bad
    /// name): `start` returns it.
    handlers: Registrations,
    guard: Option<LoggingGuard>,
    stuck_after: Duration,
    /// Static recurring tasks given with [`Runtime::recurring`].
    recurring: Vec<RecurringTask>,
    /// Arbiters stopped by the supervisor and the registry, joined before `run()`/`shutdown()`
    /// return.
    stopped: StoppedArbiters,
    /// This process's metrics and event subscribers.
    telemetry: Telemetry,
}

/// Default for [`Runtime::stuck_after`].
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(15);

impl Runtime {
    /// Reads `SOLIDQ_*`, sets up logging (bridging the `log` crate), opens the database and,
    /// unless `SOLIDQ_AUTO_MIGRATE=false`, applies pending migrations.
    pub fn from_env() -> Result<Runtime, RuntimeError> {
        let config = Config::from_env()?;
        let (logger, guard) = crate::logging::init(&config);
        let mut runtime = Runtime::new(config, logger)?;
        runtime.guard = Some(guard);
        Ok(runtime)
    }

    /// A runtime from an explicit configuration and logger (tests, custom setups).
    pub fn new(config: Config, logger: Logger) -> Result<Runtime, RuntimeError> {
        let store = store::connect(&config.database_url, config.pool_size)?;
        Runtime::with_store(config, store, logger)
    }

    /// A runtime over an already opened store (a wrapped or instrumented one, in tests);
    /// `config.database_url` is not used. Applies migrations unless `auto_migrate` is off.
    pub fn with_store(config: Config, store: SharedStore, logger: Logger) -> Result<Runtime, RuntimeError> {
        if config.auto_migrate {
            let applied = store.migrate()?;
            if applied > 0 {
                info!(logger, "migrations applied"; "count" => applied, "backend" => store.backend());
            }
        }
        let stopped = StoppedArbiters::default();
        Ok(Runtime {
            config,
            store,
            handlers: Registrations::new(&logger, stopped.clone()),
            logger,
            guard: None,
            stuck_after: DEFAULT_STUCK_AFTER,
            recurring: Vec::new(),
            stopped,
            telemetry: Telemetry::default(),
        })
    }

    /// Calls `callback` with every [`Event`] this process emits (a job failed for good, a
    /// process pruned, ...; see [`crate::events`]). Callbacks run one after another on a
    /// thread of their own, never on a worker: a slow one delays only later events, and a
    /// panicking one is logged and stays subscribed.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), solidq::RuntimeError> {
    /// let runtime = solidq::Runtime::from_env()?.on_event(|event| {
    ///     if let solidq::Event::JobFailed { id, kind, message, .. } = event {
    ///         eprintln!("job {id} ({kind}) failed for good: {message}");
    ///     }
    /// });
    /// # let _ = runtime; Ok(()) }
    /// ```
    pub fn on_event(self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.telemetry.events.subscribe(Arc::new(callback));
        self
    }

    /// Sends every [`Event`] this process emits to `recipient` (an actix actor's address),
    /// as [`Runtime::on_event`] does for a callback.
    pub fn subscribe(self, recipient: Recipient<Event>) -> Self {
        self.on_event(move |event| recipient.do_send(event.clone()))
    }

    /// This process's metrics (counters and histograms by queue and kind).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.telemetry.metrics.clone()
    }

    /// Registers an async actor (`Context<A>`) for jobs of type `J`. The runtime starts it from
    /// `factory` on an arbiter of its own, and starts a fresh one if it panics.
    ///
    /// How many jobs of this kind run at once depends on the handler's `Result` type, because
    /// one actor handles one message at a time:
    /// - `type Result = Result<(), JobError>`: **one at a time**. `handle` runs to its end
    ///   before the next job is handed over, so a handler that blocks or sleeps holds all the
    ///   others back (and blocking there also blocks the actor's thread).
    /// - `type Result = ResponseFuture<Result<(), JobError>>` (or `ResponseActFuture`): `handle`
    ///   returns a future at once and the jobs' futures **run concurrently**, up to the worker
    ///   groups' concurrency (`SOLIDQ_WORKERS`). Use this for I/O (HTTP calls, database
    ///   queries with an async client).
    /// - For blocking work use [`Runtime::register_sync`]: `threads` jobs at once, one per
    ///   thread of a `SyncArbiter`.
    ///
    /// In every case the worker groups' concurrency caps the jobs this process holds.
    pub fn register<J, A, F>(mut self, factory: F) -> Self
    where
        J: Job,
        A: Actor<Context = Context<A>> + Handler<Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.handlers.actor::<J, A, F>(factory);
        self
    }

    /// Registers a blocking actor (`SyncContext<A>`) for jobs of type `J`, run on a
    /// `SyncArbiter` of `threads` threads: up to `threads` jobs of this kind run at once (and no
    /// more than the worker groups' concurrency); a panicking thread gets the pool replaced.
    pub fn register_sync<J, A, F>(mut self, threads: usize, factory: F) -> Self
    where
        J: Job,
        A: Actor<Context = SyncContext<A>> + Handler<Perform<J>>,
        SyncContext<A>: ToEnvelope<A, Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.handlers.sync::<J, A, F>(threads, factory);
        self
    }

    /// Registers an async function for jobs of type `J`: each job's future runs on the
    /// runtime's executions arbiter, up to the worker groups' concurrency at once. solidq owns
    /// the future, so past [`Job::TIMEOUT`](crate::Job::TIMEOUT) or when the job is cancelled
    /// (`solidq jobs cancel`) it is **dropped**: the handler stops at its next `.await`, with no
    /// abandoned execution left running (an actor's `ResponseFuture` can only be asked to stop
    /// through `meta.cancellation`). A panic in it fails the attempt with the panic message, as
    /// in an actor. Do not block in it: use [`Runtime::register_sync`] for blocking work.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Ping { url: String }
    /// impl solidq::Job for Ping {
    ///     const KIND: &'static str = "ping";
    ///     const TIMEOUT: Option<std::time::Duration> = Some(std::time::Duration::from_secs(10));
    /// }
    /// # fn demo() -> Result<(), solidq::RuntimeError> {
    /// let runtime = solidq::Runtime::from_env()?.register_async::<Ping, _, _>(|job, meta| async move {
    ///     // An HTTP call would go here; past 10 s this future is dropped.
    ///     let _ = (job.url, meta.attempt);
    ///     Ok(())
    /// });
    /// # Ok(()) }
    /// ```
    pub fn register_async<J, F, Fut>(mut self, f: F) -> Self
    where
        J: Job,
        F: Fn(J, crate::JobMeta) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::JobError>> + 'static,
    {
        self.handlers.function::<J, F, Fut>(f);
        self
    }

    /// The shortest time without progress after which the supervisor treats a child actor as
    /// stuck and replaces it (each child uses at least ten of its own intervals).
    pub fn stuck_after(mut self, after: Duration) -> Self {
        self.stuck_after = after;
        self
    }

    /// Adds a static recurring task: written to the database when the scheduler starts,
    /// beside those of `SOLIDQ_RECURRING` (a key given twice is an error at start), and
    /// removed from it when a later start no longer configures it.
    ///
    /// ```no_run
    /// use solidq::recurring::RecurringTask;
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let runtime = solidq::Runtime::from_env()?
    ///     .recurring(RecurringTask::new("nightly-cleanup", "0 3 * * *", "maintenance.cleanup")?
    ///         .time_zone("Europe/Berlin")?)
    ///     .recurring(RecurringTask::new("ping", "every 30s", "monitor.ping")?);
    /// # let _ = runtime; Ok(()) }
    /// ```
    pub fn recurring(mut self, task: RecurringTask) -> Self {
        self.recurring.push(task);
        self
    }

    /// A handle for enqueueing jobs (counted in this runtime's metrics).
    pub fn queue(&self) -> Queue {
        Queue::new(self.store.clone()).counting_into(self.telemetry.metrics.clone())
    }

    /// A handle for adding, removing and listing dynamic recurring tasks.
    pub fn recurring_tasks(&self) -> RecurringTasks {
        RecurringTasks::new(self.store.clone())
    }

    /// Every static recurring task (`SOLIDQ_RECURRING`, then [`Runtime::recurring`]),
    /// checked: no problem, no key twice.
    fn static_tasks(&self) -> Result<Vec<RecurringTask>, RecurringError> {
        let mut tasks: Vec<RecurringTask> = self.config.recurring_tasks.clone();
        tasks.extend(self.recurring.iter().cloned());
        let mut keys = std::collections::HashSet::new();
        for task in &tasks {
            if let Some(problem) = task.problem() {
                return Err(RecurringError::Task {
                    key: task.key.clone(),
                    source: Box::new(RecurringError::Invalid(problem)),
                });
            }
            if !keys.insert(task.key.as_str()) {
                return Err(RecurringError::Invalid(format!(
                    "recurring task {:?} is configured twice (SOLIDQ_RECURRING and Runtime::recurring, or \
                     Runtime::recurring twice)",
                    task.key
                )));
            }
        }
        Ok(tasks)
    }

    /// The store (status views, tests).
    pub fn store(&self) -> SharedStore {
        self.store.clone()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime's logger.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    fn settings(&self, standalone: bool, static_tasks: Vec<RecurringTask>) -> SupervisorSettings {
        let c = &self.config;
        SupervisorSettings {
            workers: c
                .workers
                .iter()
                .map(|group| WorkerSettings { group: group.clone(), polling_interval: c.polling_interval })
                .collect(),
            heartbeat: HeartbeatSettings {
                interval: c.heartbeat_interval,
                alive_threshold: c.alive_threshold,
                details: ProcessDetails {
                    workers: c.workers.iter().map(WorkerDetails::from).collect(),
                    kinds: self.handlers.registry.kinds().into_iter().map(String::from).collect(),
                    backend: self.store.backend().to_string(),
                },
            },
            dispatcher: DispatcherConfig {
                batch_size: c.dispatcher_batch_size,
                interval: c.dispatcher_polling_interval,
                max_batches_per_pass: DEFAULT_MAX_BATCHES_PER_PASS,
            },
            election: ElectionConfig { spacing: c.election_spacing, ..ElectionConfig::default() },
            watchdog: WatchdogConfig {
                interval: c.watchdog_interval,
                alive_threshold: c.alive_threshold,
                policy: c.on_process_death,
                session_confirmation: DEFAULT_SESSION_CONFIRMATION,
                pid_probe: c.pid_probe,
                observation_gap: WatchdogConfig::observation_gap_for(c.watchdog_interval, c.alive_threshold),
            },
            // Every process runs the scheduler when it leads (the runs of the tasks in the
            // database); SOLIDQ_SCHEDULER says whether this one writes its static tasks.
            scheduler: Some({
                let registry = self.handlers.registry.clone();
                SchedulerConfig {
                    static_tasks,
                    write_static: c.scheduler,
                    reload_interval: RELOAD_INTERVAL,
                    kind_options: Arc::new(move |job| registry.apply_kind_options(job)),
                }
            }),
            // SOLIDQ_PRESERVE_FINISHED_JOBS=false: ended jobs go on the cleaner's next pass.
            cleaner: Some(Cleaner::new(if c.preserve_finished_jobs { c.clear_finished_after } else { Duration::ZERO })),
            shutdown_timeout: c.shutdown_timeout,
            stuck_after: self.stuck_after,
            standalone,
            latency_alarm: c
                .alert_queue_latency
                .map(|threshold| LatencyAlarmConfig { threshold, interval: LATENCY_ALARM_INTERVAL.min(threshold) }),
            telemetry: self.telemetry.clone(),
        }
    }

    /// Starts the runtime inside the current actix `System` (e.g. next to an actix-web
    /// server). Signals are left to the application; stop with [`RuntimeHandle::shutdown`].
    ///
    /// actix-web's `HttpServer` stops the whole System on SIGINT/SIGTERM, which would cut the
    /// drain short: build it with `.disable_signals()`, stop it on your own signal handling, then
    /// await [`RuntimeHandle::shutdown`] (see `examples/actix_web.rs`).
    pub fn start(self) -> Result<RuntimeHandle, RuntimeError> {
        self.start_with(false)
    }

    fn start_with(self, standalone: bool) -> Result<RuntimeHandle, RuntimeError> {
        if let Some(refused) = self.handlers.refused {
            return Err(refused);
        }
        let static_tasks = self.static_tasks()?;
        if !self.config.scheduler && !static_tasks.is_empty() {
            warn!(self.logger, "SOLIDQ_SCHEDULER=false: this process does not write its static recurring tasks (the elected leader enqueues the runs of the tasks in the database)";
                "static_tasks" => static_tasks.len());
        }
        if self.config.scheduler {
            // Now, not when this process is elected (perhaps never): the leader enqueues the
            // runs of every task in the database, whoever wrote it.
            let synced = self.store.sync_static_recurring_tasks(&static_tasks, chrono::Utc::now().naive_utc())?;
            if synced.written > 0 || !synced.removed.is_empty() {
                info!(self.logger, "static recurring tasks written"; "tasks" => synced.written, "removed" => ?synced.removed);
            }
        }
        registry::install_panic_hook();
        self.telemetry.events.set_logger(&self.logger);
        let metrics_server = match self.config.metrics_bind {
            Some(addr) => {
                let endpoints = Endpoints {
                    exporter: Exporter::new(self.store.clone(), self.config.alive_threshold)
                        .with_process(self.telemetry.metrics.clone()),
                    store: self.store.clone(),
                    metrics: self.telemetry.metrics.clone(),
                };
                let server = MetricsServer::start(addr, endpoints)
                    .map_err(|source| RuntimeError::MetricsBind { addr, source })?;
                info!(self.logger, "serving metrics and health checks"; "address" => %server.addr());
                Some(Arc::new(server))
            }
            None => None,
        };
        let settings = self.settings(standalone, static_tasks);
        let registry = Arc::new(self.handlers.registry);
        let supervisor = Supervisor::new(settings, self.store.clone(), registry, &self.logger)
            .with_stopped_arbiters(self.stopped.clone())
            .start();
        Ok(RuntimeHandle {
            supervisor,
            recurring: RecurringTasks::new(self.store.clone()),
            queue: Queue::new(self.store.clone()).counting_into(self.telemetry.metrics.clone()),
            store: self.store,
            telemetry: self.telemetry,
            alive_threshold: self.config.alive_threshold,
            metrics_server,
            stopped: self.stopped,
            logger: self.logger,
            _guard: self.guard.map(Arc::new),
        })
    }

    /// Runs standalone: creates a System, starts, and blocks until TERM or INT has drained the
    /// process (exit code 0) or QUIT ended it at once.
    pub fn run(self) -> Result<(), RuntimeError> {
        let system = System::new();
        let handle = system.block_on(async move { self.start_with(true) })?;
        let code = system.run_with_code();
        // The System is gone; the children's and handlers' arbiter threads may still be
        // finishing database calls. Returning now could let the process exit under them.
        join_stopped(&handle.stopped, &handle.logger);
        drop(handle);
        match code {
            Ok(0) => Ok(()),
            Ok(code) => std::process::exit(code),
            Err(err) => Err(RuntimeError::System(err.to_string())),
        }
    }
}

/// The handlers registered so far and the first registration refused: what [`Runtime`] and
/// [`crate::testing::TestQueue`] register into, with one set of constructors for both.
pub(crate) struct Registrations {
    pub(crate) registry: Registry,
    /// The first registration refused (a kind twice, a bad name).
    pub(crate) refused: Option<RuntimeError>,
    logger: Logger,
    stopped: StoppedArbiters,
}

impl Registrations {
    /// No handlers yet; async actors' arbiters, once stopped, go to `stopped`.
    pub(crate) fn new(logger: &Logger, stopped: StoppedArbiters) -> Registrations {
        Registrations { registry: Registry::default(), refused: None, logger: logger.clone(), stopped }
    }

    /// See [`Runtime::register`].
    pub(crate) fn actor<J, A, F>(&mut self, factory: F)
    where
        J: Job,
        A: Actor<Context = Context<A>> + Handler<Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let handler: Arc<dyn ErasedHandler> = Arc::new(Arc::new(ActorHandler::<J, A, _>::new(
            factory,
            OwnArbiter::joined_by(self.stopped.clone()),
            &self.logger,
        )));
        self.insert::<J>(handler);
    }

    /// See [`Runtime::register_sync`].
    pub(crate) fn sync<J, A, F>(&mut self, threads: usize, factory: F)
    where
        J: Job,
        A: Actor<Context = SyncContext<A>> + Handler<Perform<J>>,
        SyncContext<A>: ToEnvelope<A, Perform<J>>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let handler: Arc<dyn ErasedHandler> =
            Arc::new(Arc::new(ActorHandler::<J, A, _>::new(factory, SyncPool(threads), &self.logger)));
        self.insert::<J>(handler);
    }

    /// See [`Runtime::register_async`].
    pub(crate) fn function<J, F, Fut>(&mut self, f: F)
    where
        J: Job,
        F: Fn(J, crate::JobMeta) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::JobError>> + 'static,
    {
        let handler: Arc<dyn ErasedHandler> = Arc::new(crate::registry::FnHandler::<J, F>::new(f, &self.logger));
        self.insert::<J>(handler);
    }

    fn insert<J: Job>(&mut self, handler: Arc<dyn ErasedHandler>) {
        let problem = crate::model::name_problem("kind", J::KIND)
            .or_else(|| crate::model::queue_name_problem(J::QUEUE).map(|problem| format!("its QUEUE: {problem}")));
        if let Some(problem) = problem {
            self.refused.get_or_insert(RuntimeError::InvalidJobType { type_name: std::any::type_name::<J>(), problem });
        } else if !self.registry.insert(J::KIND, handler) {
            self.refused.get_or_insert(RuntimeError::DuplicateKind(J::KIND));
        }
    }
}

/// A running runtime.
#[derive(Clone)]
pub struct RuntimeHandle {
    supervisor: Addr<Supervisor>,
    queue: Queue,
    recurring: RecurringTasks,
    stopped: StoppedArbiters,
    logger: Logger,
    _guard: Option<Arc<LoggingGuard>>,
    store: SharedStore,
    telemetry: Telemetry,
    alive_threshold: Duration,
    /// The `SOLIDQ_METRICS_BIND` responder; stops when the last handle is dropped.
    metrics_server: Option<Arc<MetricsServer>>,
}

impl RuntimeHandle {
    /// A handle for enqueueing jobs.
    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// A handle for adding, removing and listing dynamic recurring tasks.
    pub fn recurring_tasks(&self) -> RecurringTasks {
        self.recurring.clone()
    }

    /// This process's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.telemetry.metrics.clone()
    }

    /// How long a silent heartbeat may last before the watchdog judges a process dead
    /// (`SOLIDQ_ALIVE_THRESHOLD`).
    pub fn alive_threshold(&self) -> Duration {
        self.alive_threshold
    }

    /// An exporter of the database gauges and this process's series.
    pub fn exporter(&self) -> Exporter {
        Exporter::new(self.store.clone(), self.alive_threshold).with_process(self.telemetry.metrics.clone())
    }

    /// The metrics in Prometheus text format, from a fresh [`RuntimeHandle::exporter`] (so
    /// without its cache: keep an exporter to scrape often). Blocking.
    pub fn metrics_text(&self) -> String {
        self.exporter().scrape()
    }

    /// Where `SOLIDQ_METRICS_BIND` serves, if set (with the port the system chose for `:0`).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_server.as_ref().map(|server| server.addr())
    }

    /// Liveness: this process's heartbeat actor ticked within two heartbeat intervals. Reads
    /// no database.
    pub fn health_live(&self) -> Health {
        crate::health::live(&self.telemetry.metrics)
    }

    /// Readiness: the database answers within [`READY_TIMEOUT`](crate::health::READY_TIMEOUT),
    /// this process is registered, not fenced, and its row was not pruned.
    pub async fn health_ready(&self) -> Health {
        let this = self.clone();
        actix_rt::task::spawn_blocking(move || this.health_ready_blocking())
            .await
            .unwrap_or_else(|_| Health::failing("the readiness check panicked"))
    }

    /// Blocking form of [`RuntimeHandle::health_ready`].
    pub fn health_ready_blocking(&self) -> Health {
        crate::health::ready(&self.store, &self.telemetry.metrics)
    }

    /// The id of this process's row, once registered.
    pub async fn process_id(&self) -> Option<ProcessId> {
        self.supervisor.send(CurrentProcess).await.ok().flatten()
    }

    /// Graceful stop: no new claims, running jobs get up to `SOLIDQ_SHUTDOWN_TIMEOUT`, the rest
    /// go back to ready, then the process deregisters.
    ///
    /// Returns once the runtime's threads have ended (waiting up to 10 s for them), so that
    /// the process may exit right after.
    pub async fn shutdown(&self) -> ShutdownReport {
        let report = self.supervisor.send(Shutdown { immediate: false }).await.unwrap_or_default();
        self.join_stopped_async().await;
        report
    }

    /// Stops at once without deregistering (as after SIGQUIT): claims stay with the process
    /// row until a watchdog reaps it.
    pub async fn abort(&self) -> ShutdownReport {
        let report = self.supervisor.send(Shutdown { immediate: true }).await.unwrap_or_default();
        self.join_stopped_async().await;
        report
    }

    /// [`join_stopped`] off the caller's event loop.
    async fn join_stopped_async(&self) {
        let (stopped, logger) = (self.stopped.clone(), self.logger.clone());
        let _ = actix_rt::task::spawn_blocking(move || join_stopped(&stopped, &logger)).await;
    }
}

/// Joins the threads of the arbiters stopped so far, waiting up to [`THREAD_JOIN_TIMEOUT`].
fn join_stopped(stopped: &StoppedArbiters, logger: &Logger) {
    let left = stopped.join(THREAD_JOIN_TIMEOUT);
    if left > 0 {
        warn!(logger, "runtime threads still running after the shutdown; exiting now may crash the process";
            "threads" => left, "waited_ms" => THREAD_JOIN_TIMEOUT.as_millis() as u64);
    }
}
