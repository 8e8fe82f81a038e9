//! Prometheus metrics: what this process counted ([`Metrics`]) and what the database holds
//! (gauges read per scrape by an [`Exporter`]), in the text exposition format ([`text`]).
//!
//! Per-process series (counters and histograms by queue and kind) are counted where the facts
//! happen: an enqueue through [`Queue`](crate::Queue), an execution's outcome when the
//! completer has written it, a claim fenced, a process pruned by this process's watchdog. The
//! hot path takes one short mutex per batch (an enqueue, a batch of starts, a batch of
//! outcomes); the unlabelled counters are atomics.
//!
//! Database-wide gauges (jobs per queue and state, queue latency, processes alive, late and
//! dead) come from two statements per scrape ([`Store::metric_gauges`](crate::Store::metric_gauges)) and are cached for
//! [`DEFAULT_CACHE_FOR`], so fifty processes scraped together do not run fifty counts. Labels
//! are only queue, kind, outcome and state: never ids or messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};

use crate::events::EventBus;
use crate::lifecycle::Transition;
use crate::model::{FailureKind, ProcessId};
use crate::store::{MetricGauges, SharedStore, StoreResult};

pub(crate) mod server;
pub mod text;

pub use text::CONTENT_TYPE;

/// How long an [`Exporter`] reuses the database gauges of its last scrape.
pub const DEFAULT_CACHE_FOR: Duration = Duration::from_secs(5);

/// Upper bounds (seconds) of the buckets of both histograms: 5 ms to 10 min.
pub const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0];

/// How an execution ended, as `solidq_jobs_executed_total{outcome}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecutionOutcome {
    /// Succeeded: the job is done.
    Finished,
    /// Failed and runs again later.
    Retried,
    /// Failed for good.
    Failed,
    /// Its handler asked not to retry.
    Discarded,
    /// An operator cancelled it while it ran.
    Cancelled,
    /// Its handler asked to run again later.
    Snoozed,
    /// Cut short (its handler actor stopped, or a drain ran out of time) and runs again.
    Interrupted,
}

impl ExecutionOutcome {
    /// Every outcome, in label order.
    pub const ALL: [ExecutionOutcome; 7] = [
        ExecutionOutcome::Finished,
        ExecutionOutcome::Retried,
        ExecutionOutcome::Failed,
        ExecutionOutcome::Discarded,
        ExecutionOutcome::Cancelled,
        ExecutionOutcome::Snoozed,
        ExecutionOutcome::Interrupted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionOutcome::Finished => "finished",
            ExecutionOutcome::Retried => "retried",
            ExecutionOutcome::Failed => "failed",
            ExecutionOutcome::Discarded => "discarded",
            ExecutionOutcome::Cancelled => "cancelled",
            ExecutionOutcome::Snoozed => "snoozed",
            ExecutionOutcome::Interrupted => "interrupted",
        }
    }

    /// The outcome a written transition records: a retry after an interruption, and a release
    /// (a drain cut the run short, or no handler took it), are `interrupted`.
    pub fn of(transition: &Transition) -> ExecutionOutcome {
        match transition {
            Transition::Complete => ExecutionOutcome::Finished,
            Transition::Retry(error, _) if error.kind == FailureKind::Interrupted => ExecutionOutcome::Interrupted,
            Transition::Retry(..) => ExecutionOutcome::Retried,
            Transition::Fail(_) => ExecutionOutcome::Failed,
            Transition::Discard(_) => ExecutionOutcome::Discarded,
            Transition::Cancel => ExecutionOutcome::Cancelled,
            Transition::Snooze(_) => ExecutionOutcome::Snoozed,
            Transition::Release => ExecutionOutcome::Interrupted,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A histogram over [`BUCKETS`]: counts per bucket (not cumulative; the text adds them up),
/// with the sum and count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    pub(crate) buckets: [u64; BUCKETS.len()],
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

impl Histogram {
    fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// What this process counted for one queue and kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct KindSeries {
    pub(crate) enqueued: u64,
    pub(crate) executed: [u64; ExecutionOutcome::ALL.len()],
    pub(crate) duration: Histogram,
    pub(crate) wait: Histogram,
}

/// queue → kind → series.
pub(crate) type SeriesMap = BTreeMap<String, BTreeMap<String, KindSeries>>;

/// The metrics of one process: cheap to update from any thread, read by an [`Exporter`].
/// Get the runtime's with [`RuntimeHandle::metrics`](crate::RuntimeHandle::metrics).
#[derive(Debug)]
pub struct Metrics {
    series: Mutex<SeriesMap>,
    processes_pruned: AtomicU64,
    claims_fenced: AtomicU64,
    /// Base of the monotonic millisecond stamps below.
    epoch: Instant,
    /// When the heartbeat actor last ticked (ms since `epoch`; 0: never).
    heartbeat_tick: AtomicU64,
    /// When a heartbeat was last written (ms since `epoch`; 0: never).
    heartbeat_ok: AtomicU64,
    /// The heartbeat interval, for liveness (ms).
    heartbeat_interval: AtomicU64,
    /// This process's row (0: not registered).
    process: AtomicI64,
    /// The process stopped claiming: no heartbeat for longer than the alive threshold, or the
    /// database file went away.
    fenced: AtomicBool,
    /// Whether this process is the elected leader (set by its election).
    pub(crate) leadership: crate::store::Leadership,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            series: Mutex::default(),
            processes_pruned: AtomicU64::new(0),
            claims_fenced: AtomicU64::new(0),
            epoch: Instant::now(),
            heartbeat_tick: AtomicU64::new(0),
            heartbeat_ok: AtomicU64::new(0),
            heartbeat_interval: AtomicU64::new(0),
            process: AtomicI64::new(0),
            fenced: AtomicBool::new(false),
            leadership: Default::default(),
        }
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn series(&self) -> MutexGuard<'_, SeriesMap> {
        self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `f` to the series of each `(queue, kind)` of `items`, under one lock.
    fn each<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> (&str, &str),
        f: impl Fn(&mut KindSeries, &T),
    ) {
        let mut series = self.series();
        for item in items {
            let (queue, kind) = key(&item);
            let kinds = match series.get_mut(queue) {
                Some(kinds) => kinds,
                None => series.entry(queue.to_string()).or_default(),
            };
            let entry = match kinds.get_mut(kind) {
                Some(entry) => entry,
                None => kinds.entry(kind.to_string()).or_default(),
            };
            f(entry, &item);
        }
    }

    /// Counts jobs enqueued, as `(queue, kind)` pairs.
    pub fn jobs_enqueued<'a>(&self, jobs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.each(jobs, |(queue, kind)| (queue, kind), |series, _| series.enqueued += 1);
    }

    /// Records executions that started, as `(queue, kind, ready_at)`: the time each waited
    /// since it became ready (wall clock, UTC).
    pub fn jobs_started<'a>(&self, jobs: impl IntoIterator<Item = (&'a str, &'a str, NaiveDateTime)>) {
        let now = Utc::now().naive_utc();
        self.each(
            jobs,
            |(queue, kind, _)| (queue, kind),
            |series, (_, _, ready_at)| series.wait.observe((now - *ready_at).to_std().unwrap_or_default()),
        );
    }

    /// Records executions whose outcome was written, as `(queue, kind, outcome, ran for)`.
    pub fn jobs_executed<'a>(&self, jobs: impl IntoIterator<Item = (&'a str, &'a str, ExecutionOutcome, Duration)>) {
        self.each(
            jobs,
            |(queue, kind, _, _)| (queue, kind),
            |series, (_, _, outcome, ran_for)| {
                series.executed[outcome.index()] += 1;
                series.duration.observe(*ran_for);
            },
        );
    }

    /// Counts processes this process's watchdog pruned.
    pub fn processes_pruned(&self, count: u64) {
        self.processes_pruned.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts outcomes refused because their claims were no longer this process's.
    pub fn claims_fenced(&self, count: u64) {
        self.claims_fenced.fetch_add(count, Ordering::Relaxed);
    }

    fn stamp(&self) -> u64 {
        // +1: 0 means "never".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn since(&self, stamp: u64) -> Option<Duration> {
        (stamp > 0).then(|| Duration::from_millis(self.stamp().saturating_sub(stamp)))
    }

    /// The heartbeat actor ticked (whether or not its write succeeded).
    pub(crate) fn heartbeat_ticked(&self, interval: Duration) {
        self.heartbeat_interval.store(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.heartbeat_tick.store(self.stamp(), Ordering::Relaxed);
    }

    /// A heartbeat was written for `process`.
    pub(crate) fn heartbeat_written(&self, process: ProcessId) {
        self.heartbeat_ok.store(self.stamp(), Ordering::Relaxed);
        self.process.store(process, Ordering::Relaxed);
        self.fenced.store(false, Ordering::Relaxed);
    }

    /// The process fenced itself (true) or resumed (false).
    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Relaxed);
    }

    /// The process deregistered: it has no row any more.
    pub(crate) fn deregistered(&self) {
        self.process.store(0, Ordering::Relaxed);
    }

    /// How long since the heartbeat actor last ticked, and its interval; `None` before the
    /// first tick.
    pub fn heartbeat_tick_age(&self) -> Option<(Duration, Duration)> {
        let interval = Duration::from_millis(self.heartbeat_interval.load(Ordering::Relaxed));
        self.since(self.heartbeat_tick.load(Ordering::Relaxed)).map(|age| (age, interval))
    }

    /// How long since this process last wrote its heartbeat; `None` before the first.
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.since(self.heartbeat_ok.load(Ordering::Relaxed))
    }

    /// This process's row, once registered (and until it deregisters).
    pub fn process(&self) -> Option<ProcessId> {
        Some(self.process.load(Ordering::Relaxed)).filter(|id| *id != 0)
    }

    /// Whether the process fenced itself (stopped claiming: it could not beat for longer than
    /// the alive threshold, or its database file went away).
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> (SeriesMap, u64, u64) {
        (
            self.series().clone(),
            self.processes_pruned.load(Ordering::Relaxed),
            self.claims_fenced.load(Ordering::Relaxed),
        )
    }
}

/// What the actors of one runtime report to: its metrics and its event subscribers.
#[derive(Clone, Default)]
pub(crate) struct Telemetry {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Arc<EventBus>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// Renders the metrics: the database gauges (cached for a few seconds) and, given
/// [`Exporter::with_process`], a process's own series.
///
/// ```no_run
/// # fn demo(store: solidq::SharedStore) {
/// let exporter = solidq::metrics::Exporter::new(store, std::time::Duration::from_secs(300));
/// let body = exporter.scrape(); // blocking: run it off an event loop (web::block)
/// # let _ = body; }
/// ```
#[derive(Clone)]
pub struct Exporter {
    store: SharedStore,
    alive_threshold: Duration,
    process: Option<Arc<Metrics>>,
    cache_for: Duration,
    cache: Arc<Mutex<Option<(Instant, MetricGauges)>>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("cache_for", &self.cache_for).finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter of the database gauges of `store`, judging processes against
    /// `alive_threshold` (`SOLIDQ_ALIVE_THRESHOLD`).
    pub fn new(store: SharedStore, alive_threshold: Duration) -> Exporter {
        Exporter { store, alive_threshold, process: None, cache_for: DEFAULT_CACHE_FOR, cache: Arc::default() }
    }

    /// Also exports the series of the process that counts into `metrics`.
    pub fn with_process(mut self, metrics: Arc<Metrics>) -> Exporter {
        self.process = Some(metrics);
        self
    }

    /// How long the database gauges of a scrape are reused (default [`DEFAULT_CACHE_FOR`];
    /// zero reads them on every scrape).
    pub fn cache_for(mut self, cache_for: Duration) -> Exporter {
        self.cache_for = cache_for;
        self
    }

    /// The database gauges, from the cache while they are fresh.
    pub fn gauges(&self) -> StoreResult<MetricGauges> {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, gauges)) = cache.as_ref() {
            if at.elapsed() < self.cache_for {
                return Ok(gauges.clone());
            }
        }
        let gauges = self.store.metric_gauges(Utc::now().naive_utc(), self.alive_threshold)?;
        *cache = Some((Instant::now(), gauges.clone()));
        Ok(gauges)
    }

    /// The metrics in Prometheus text format ([`CONTENT_TYPE`]). Blocking (reads the
    /// database unless the cache is fresh). When the database does not answer, `solidq_up` is
    /// 0 and the database gauges are left out; the process's own series are still there.
    pub fn scrape(&self) -> String {
        let gauges = self.gauges();
        let mut out = text::Writer::default();
        out.gauge(
            "solidq_up",
            "1 when the database answered this scrape's reads, else 0.",
            &[],
            f64::from(u8::from(gauges.is_ok())),
        );
        if let Ok(gauges) = &gauges {
            text::write_gauges(&mut out, gauges);
        }
        if let Some(metrics) = &self.process {
            text::write_process(&mut out, metrics);
        }
        out.finish()
    }
}
