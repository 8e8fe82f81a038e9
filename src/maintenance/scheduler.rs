//! Scheduler: enqueues the runs of recurring tasks (see [`crate::recurring`]), in every
//! runtime process. Many schedulers on one database enqueue each run once: the store records
//! each run under a unique (task key, run time), and only the scheduler whose record went in
//! enqueues the job (see [`crate::store::recurring`]).
//!
//! Its first pass writes the static tasks (from `SOLIDQ_RECURRING` and `Runtime::recurring`)
//! to the database, deleting static tasks no longer configured; dynamic tasks stay. Then it
//! passes when the next run of any task is due, or when the task list is to be reloaded
//! ([`RELOAD_INTERVAL`]) so that tasks added or removed elsewhere are picked up.
//!
//! Database cost when idle: one `SELECT` of the task list per reload (0.2 statements/s at
//! the default 5 s), and one more, reading the last runs, when the list has new tasks. Each
//! due run costs one write transaction: `INSERT … ON CONFLICT DO NOTHING` of the run, and for
//! the scheduler that wins it the job's insert and an `UPDATE` of the run with the job's id.
//! A run due while the database does not answer is enqueued late once it does (see
//! [`RecurringTask::due`](crate::recurring::RecurringTask::due)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use slog::{debug, info, warn, Logger};

use super::{Pass, Service};
use crate::events::Event;
use crate::job::EnqueueOptions;
use crate::metrics::Telemetry;
use crate::model::{JobId, NewJob};
use crate::recurring::{local_time, RecurringTask};
use crate::store::{DueRun, Store, StoreResult};

/// Default time between two reloads of the task list.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Sets on a run's job the unique key and concurrency limit its kind derives from the
/// arguments (the process's handlers know their kinds' options).
pub type KindOptions = Arc<dyn Fn(&mut NewJob) + Send + Sync>;

/// What the scheduler works with.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// The static tasks, written to the database at the first pass if `write_static`.
    pub static_tasks: Vec<RecurringTask>,
    /// Whether this scheduler writes `static_tasks` (`SOLIDQ_SCHEDULER`); without, it only
    /// enqueues the runs of the tasks in the database.
    pub write_static: bool,
    /// Time between reloads of the task list.
    pub reload_interval: Duration,
    /// The options a run's kind derives from its arguments.
    pub kind_options: KindOptions,
}

impl std::fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerConfig")
            .field("static_tasks", &self.static_tasks)
            .field("reload_interval", &self.reload_interval)
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            static_tasks: Vec::new(),
            write_static: true,
            reload_interval: RELOAD_INTERVAL,
            kind_options: Arc::new(|_| {}),
        }
    }
}

/// One task this scheduler watches, and its next run.
#[derive(Debug, Clone)]
struct Watched {
    task: RecurringTask,
    next: Option<DateTime<Utc>>,
}

/// The scheduler's memory between passes (moved to the blocking pool for a pass).
#[derive(Debug, Clone, Default)]
struct Book {
    /// Whether the static tasks were written.
    synced: bool,
    tasks: BTreeMap<String, Watched>,
    /// Keys of stored tasks that could not be read, already logged.
    unreadable: BTreeSet<String>,
    last_reload: Option<Instant>,
}

impl Book {
    fn reload_due(&self, interval: Duration) -> bool {
        !self.synced || self.last_reload.is_none_or(|at| at.elapsed() >= interval)
    }

    fn next_run(&self) -> Option<DateTime<Utc>> {
        self.tasks.values().filter_map(|watched| watched.next).min()
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct SchedulerPass {
    /// The static tasks written at the first pass, and the keys of those removed.
    pub synced: Option<(usize, Vec<String>)>,
    /// Tasks new or changed since the last reload.
    pub added: Vec<String>,
    /// Tasks gone since the last reload.
    pub removed: Vec<String>,
    /// Stored tasks that could not be read, first seen by this pass.
    pub unreadable: Vec<String>,
    /// Runs due: task, run time, its time zone, and the job's id (`None`: another scheduler
    /// had enqueued it).
    pub enqueued: Vec<(String, DateTime<Utc>, Tz, Option<JobId>)>,
    /// (task, first, last) run times skipped as too late.
    pub skipped: Vec<(String, DateTime<Utc>, DateTime<Utc>)>,
    /// (task, why) runs whose job could not be built.
    pub refused: Vec<(String, String)>,
}

/// The job of a run of `task`, with the unique key and concurrency limit its kind derives from
/// the arguments.
fn job_of(task: &RecurringTask, kind_options: &KindOptions) -> Result<NewJob, String> {
    let options = EnqueueOptions::new().queue(task.queue.clone()).priority(task.priority);
    let mut job = NewJob::from_json(&task.kind, task.arguments.clone(), options).map_err(|err| err.to_string())?;
    kind_options(&mut job);
    Ok(job)
}

/// One pass: write the static tasks (first pass), reload the task list (when `reload`), and
/// enqueue what is due at `now`. The book changes only with what the database confirmed.
fn pass_of(
    store: &Store,
    config: &SchedulerConfig,
    book: &mut Book,
    reload: bool,
    now: DateTime<Utc>,
) -> StoreResult<SchedulerPass> {
    let mut report = SchedulerPass::default();
    let stamp = now.naive_utc();
    if !book.synced && config.write_static {
        let synced = store.sync_static_recurring_tasks(&config.static_tasks, stamp)?;
        book.synced = true;
        report.synced = Some((synced.written, synced.removed));
    }
    let mut due_runs = Vec::new();
    if reload || report.synced.is_some() {
        let rows = store.recurring_task_list()?;
        let mut loaded = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for row in rows {
            match row.task() {
                Ok(task) => {
                    loaded.insert(task.key.clone(), task);
                }
                Err(err) => {
                    if !book.unreadable.contains(&row.key) {
                        report.unreadable.push(err.to_string());
                    }
                    unreadable.insert(row.key);
                }
            }
        }
        let fresh: Vec<String> = loaded
            .iter()
            .filter(|(key, task)| book.tasks.get(*key).is_none_or(|watched| watched.task != **task))
            .map(|(key, _)| key.clone())
            .collect();
        let last_runs = store.last_recurring_runs(&fresh)?;
        let mut tasks = BTreeMap::new();
        for (key, task) in loaded {
            let watched = match book.tasks.remove(&key) {
                Some(watched) if watched.task == task => watched,
                _ => {
                    let last = last_runs.get(&key).map(|at| at.and_utc());
                    let start = task.start(last, now);
                    if let Some(missed) = start.catch_up {
                        due_runs.push((key.clone(), missed));
                    }
                    report.added.push(key.clone());
                    Watched { task, next: start.next }
                }
            };
            tasks.insert(key, watched);
        }
        report.removed = book.tasks.keys().cloned().collect();
        book.tasks = tasks;
        book.unreadable = unreadable;
        book.last_reload = Some(Instant::now());
    }
    // Runs due now; the book's next runs move only once they are enqueued.
    let mut nexts = Vec::new();
    for (key, watched) in &book.tasks {
        let Some(next) = watched.next.filter(|next| *next <= now) else { continue };
        let due = watched.task.due(next, now);
        if let Some((first, last)) = due.skipped {
            report.skipped.push((key.clone(), first, last));
        }
        due_runs.extend(due.runs.into_iter().map(|at| (key.clone(), at)));
        nexts.push((key.clone(), due.next));
    }
    let mut runs = Vec::new();
    for (key, at) in due_runs {
        let Some(watched) = book.tasks.get(&key) else { continue };
        match job_of(&watched.task, &config.kind_options) {
            Ok(job) => runs.push(DueRun { task_key: key, run_at: at.naive_utc(), job }),
            Err(why) => report.refused.push((key, why)),
        }
    }
    let ids = store.enqueue_recurring_runs(&runs, stamp)?;
    let zone = |key: &str| book.tasks.get(key).map_or(Tz::UTC, |watched| watched.task.time_zone);
    report.enqueued = runs
        .into_iter()
        .zip(ids)
        .map(|(run, id)| (zone(&run.task_key), run, id))
        .map(|(zone, run, id)| (run.task_key, run.run_at.and_utc(), zone, id))
        .collect();
    for (key, next) in nexts {
        if let Some(watched) = book.tasks.get_mut(&key) {
            watched.next = next;
        }
    }
    Ok(report)
}

/// The scheduler service, with the tasks it watches.
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: SchedulerConfig,
    book: Book,
    /// Told of skipped runs, with the alive threshold that picks the process reporting them.
    telemetry: Option<Telemetry>,
}

impl Scheduler {
    /// A scheduler that has not written its static tasks yet.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler { config, book: Book::default(), telemetry: None }
    }

    /// Emits [`Event::RecurringRunMissed`] for skipped runs when the pass runs as the elected
    /// leader (a scheduler outside the election skips the same runs silently).
    pub(crate) fn reporting_to(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn report_missed(&self, pass: &Pass, report: &SchedulerPass) -> StoreResult<()> {
        let Some(telemetry) = &self.telemetry else { return Ok(()) };
        if report.skipped.is_empty() || !telemetry.events.has_subscribers() {
            return Ok(());
        }
        if pass.lease.is_none() {
            return Ok(());
        }
        for (key, _, last) in &report.skipped {
            telemetry.events.emit(Event::RecurringRunMissed { key: key.clone(), run_at: last.naive_utc() });
        }
        Ok(())
    }
}

impl Service for Scheduler {
    type Outcome = SchedulerPass;
    const NAME: &'static str = "scheduler";

    fn interval(&self) -> Duration {
        self.config.reload_interval
    }

    /// Until the next run of any task or the next reload, whichever is first.
    fn next_pass_in(&self) -> Duration {
        let mut delay = self.config.reload_interval;
        if let Some(at) = self.book.last_reload {
            delay = delay.min(self.config.reload_interval.saturating_sub(at.elapsed()));
        }
        if let Some(next) = self.book.next_run() {
            delay = delay.min((next - Utc::now()).to_std().unwrap_or_default());
        }
        delay
    }

    /// Writes the static tasks (first pass), reloads the task list when due, and enqueues
    /// what is due; reads nothing when neither a run nor a reload is due.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<SchedulerPass> {
        let now = pass.now.and_utc();
        let reload = self.book.reload_due(self.config.reload_interval);
        if !reload && self.book.next_run().is_none_or(|next| next > now) {
            return Ok(SchedulerPass::default());
        }
        let report = pass_of(store, &self.config, &mut self.book, reload, now)?;
        self.report_missed(&pass, &report)?;
        Ok(report)
    }

    fn report(report: &SchedulerPass, logger: &Logger) {
        if let Some((written, removed)) = &report.synced {
            info!(logger, "static recurring tasks written"; "tasks" => written, "removed" => ?removed);
        }
        for problem in &report.unreadable {
            warn!(logger, "a stored recurring task cannot be read; it does not run"; "problem" => problem);
        }
        if !report.added.is_empty() || !report.removed.is_empty() {
            debug!(logger, "recurring tasks loaded"; "new_or_changed" => ?report.added, "removed" => ?report.removed);
        }
        for (key, at, zone, id) in &report.enqueued {
            let local = local_time(*at, *zone);
            match id {
                Some(id) => info!(logger, "recurring task enqueued"; "task" => key, "run_at" => %at.naive_utc(),
                    "local_time" => local, "job_id" => id),
                None => debug!(logger, "recurring task run already enqueued by another scheduler"; "task" => key,
                    "run_at" => %at.naive_utc()),
            }
        }
        for (key, first, last) in &report.skipped {
            warn!(logger, "recurring task runs skipped: they were due too long ago"; "task" => key,
                "first" => %first.naive_utc(), "last" => %last.naive_utc());
        }
        for (key, why) in &report.refused {
            warn!(logger, "recurring task run not enqueued: its job is invalid"; "task" => key, "problem" => why);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::events::EventBus;
    use crate::metrics::Metrics;
    use crate::model::{DatabaseUrl, NewProcess};

    /// `seconds` after a whole minute.
    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn pass(own: Option<crate::model::ProcessId>, lease: Option<crate::store::Lease>, seconds: i64) -> Pass {
        Pass { own, now: at(seconds).naive_utc(), clock: Instant::now(), lease }
    }

    /// A scheduler of one task run every minute, whose pass at 10.5 minutes finds nine runs
    /// too late to run; the events it emits, in order.
    fn missed_runs_reported(leader: bool) -> Vec<Event> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseUrl::Sqlite(dir.path().join("s.sqlite3")), 2).unwrap();
        store.migrate().unwrap();
        let row = |name: &str| NewProcess {
            kind: "Runtime".into(),
            name: name.into(),
            pid: 1,
            hostname: "here".into(),
            metadata: Default::default(),
        };
        // Elected, this scheduler's passes run under the lease.
        let own = store.register_process(&row("first"), at(630).naive_utc()).unwrap();
        let lease = leader.then(|| store.take_leadership(own, at(630).naive_utc()).unwrap());
        let own = Some(own);

        let events = Arc::new(EventBus::default());
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        events.subscribe(Arc::new(move |event: &Event| {
            let _ = tx.lock().unwrap().send(event.clone());
        }));
        let telemetry = Telemetry { metrics: Arc::new(Metrics::new()), events };
        let config = SchedulerConfig {
            static_tasks: vec![RecurringTask::new("minutely", "every 1m", "test.noop").unwrap()],
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(config).reporting_to(telemetry);

        let first_pass = scheduler.run_once(&store, pass(own, lease, 0)).unwrap();
        assert!(first_pass.skipped.is_empty());
        let late = scheduler.run_once(&store, pass(own, lease, 630)).unwrap();
        // The latest overdue run (10 min) still runs; 1 to 9 min are skipped.
        assert_eq!(late.skipped, vec![("minutely".to_string(), at(60), at(540))]);
        assert_eq!(late.enqueued.len(), 1);
        rx.recv_timeout(Duration::from_secs(2)).into_iter().chain(rx.try_iter()).collect()
    }

    #[test]
    fn the_leader_reports_skipped_runs_once() {
        let events = missed_runs_reported(true);
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0] {
            Event::RecurringRunMissed { key, run_at } => {
                assert_eq!(key, "minutely");
                assert_eq!(*run_at, at(540).naive_utc(), "the last skipped run");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn another_process_skips_the_same_runs_silently() {
        assert!(missed_runs_reported(false).is_empty());
    }
}
