//! Scheduler: enqueues the runs of recurring tasks (see [`crate::recurring`]), in every
//! runtime process. Many schedulers on one database enqueue each run once: the store records
//! each run under a unique (task key, run time), and only the scheduler whose record went in
//! enqueues the job (see [`crate::store::recurring`]).
//!
//! At start it writes the static tasks (from `SOLIDQ_RECURRING` and `Runtime::recurring`) to
//! the database, deleting static tasks no longer configured; dynamic tasks stay. Then it
//! sleeps until the next run of any task is due, or until the task list is to be reloaded
//! ([`RELOAD_INTERVAL`]) so that tasks added or removed elsewhere are picked up.
//!
//! Database cost when idle: one `SELECT` of the task list per reload (0.2 statements/s at
//! the default 5 s), and one more, reading the last runs, when the list has new tasks. Each
//! due run costs one write transaction: `INSERT … ON CONFLICT DO NOTHING` of the run, and for
//! the scheduler that wins it the job's insert and an `UPDATE` of the run with the job's id.
//!
//! Database errors are retried with backoff (100 ms doubling to [`MAX_ERROR_BACKOFF`]); a run
//! due meanwhile is enqueued late once the database answers (see
//! [`RecurringTask::due`](crate::recurring::RecurringTask::due)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use slog::{debug, info, o, warn, Logger};

use super::{blocking, PeriodicCall, Ping, SetProcess, StopChild};
use crate::job::EnqueueOptions;
use crate::model::{JobId, NewJob};
use crate::recurring::{local_time, RecurringTask};
use crate::registry::Registry;
use crate::store::{DueRun, SharedStore, Store, StoreResult};

/// Default time between two reloads of the task list.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait between passes that failed.
pub const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(4);

/// What the scheduler works with.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The static tasks, written to the database at start.
    pub static_tasks: Vec<RecurringTask>,
    /// Time between reloads of the task list.
    pub reload_interval: Duration,
}

/// One task this scheduler watches, and its next run.
#[derive(Debug, Clone)]
struct Watched {
    task: RecurringTask,
    next: Option<DateTime<Utc>>,
}

/// The scheduler's memory between passes (moved to the blocking pool for a pass).
#[derive(Debug, Default)]
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

/// What one pass did, for the log.
#[derive(Debug, Default)]
struct PassReport {
    synced: Option<(usize, Vec<String>)>,
    added: Vec<String>,
    removed: Vec<String>,
    unreadable: Vec<String>,
    /// (task, run time, job id; `None`: another scheduler had enqueued it).
    enqueued: Vec<(String, DateTime<Utc>, Option<JobId>)>,
    /// (task, first, last) run times skipped as too late.
    skipped: Vec<(String, DateTime<Utc>, DateTime<Utc>)>,
    /// (task, why) runs whose job could not be built.
    refused: Vec<(String, String)>,
}

/// The job a run of `task` enqueues.
/// The job of a run of `task`, with the unique key and concurrency limit its kind derives from
/// the arguments when this process has a handler for it.
fn job_of(task: &RecurringTask, registry: &Registry) -> Result<NewJob, String> {
    let options = EnqueueOptions::new().queue(task.queue.clone()).priority(task.priority);
    let mut job = NewJob::from_json(&task.kind, task.arguments.clone(), options).map_err(|err| err.to_string())?;
    registry.apply_kind_options(&mut job);
    Ok(job)
}

/// One pass: write the static tasks (first pass), reload the task list (when `reload`), and
/// enqueue what is due at `now`. The book changes only with what the database confirmed.
fn pass(
    store: &Store,
    registry: &Registry,
    settings: &SchedulerSettings,
    book: &mut Book,
    reload: bool,
    now: DateTime<Utc>,
) -> StoreResult<PassReport> {
    let mut report = PassReport::default();
    let stamp = now.naive_utc();
    if !book.synced {
        let synced = store.sync_static_recurring_tasks(&settings.static_tasks, stamp)?;
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
        match job_of(&watched.task, registry) {
            Ok(job) => runs.push(DueRun { task_key: key, run_at: at.naive_utc(), job }),
            Err(why) => report.refused.push((key, why)),
        }
    }
    let ids = store.enqueue_recurring_runs(&runs, stamp)?;
    report.enqueued = runs.into_iter().zip(ids).map(|(run, id)| (run.task_key, run.run_at.and_utc(), id)).collect();
    for (key, next) in nexts {
        if let Some(watched) = book.tasks.get_mut(&key) {
            watched.next = next;
        }
    }
    Ok(report)
}

/// The scheduler actor.
pub struct Scheduler {
    settings: SchedulerSettings,
    store: SharedStore,
    /// The process's handlers, for the options kinds derive from a run's arguments.
    registry: Arc<Registry>,
    logger: Logger,
    /// Between passes; taken while a pass runs.
    book: Option<Book>,
    call: PeriodicCall,
    /// The pending wake-up.
    timer: Option<SpawnHandle>,
}

impl Scheduler {
    /// A scheduler over `store`.
    pub fn new(settings: SchedulerSettings, store: SharedStore, registry: Arc<Registry>, logger: &Logger) -> Self {
        Scheduler {
            settings,
            store,
            registry,
            logger: logger.new(o!("actor" => "scheduler")),
            book: Some(Book::default()),
            call: PeriodicCall::new(MAX_ERROR_BACKOFF),
            timer: None,
        }
    }

    /// Runs a pass if something is due (a run, a reload, a retry), then sleeps until the next
    /// thing is.
    fn wake(&mut self, ctx: &mut Context<Self>) {
        self.timer = None;
        if self.call.running() {
            return;
        }
        let now = Utc::now();
        let Some(book) = self.book.as_ref() else { return };
        let reload = book.reload_due(self.settings.reload_interval);
        let run_due = book.next_run().is_some_and(|next| next <= now);
        if !reload && !run_due {
            self.call.idle();
            self.sleep(ctx);
            return;
        }
        if !self.call.begin() {
            // Backing off after an error.
            self.sleep(ctx);
            return;
        }
        let mut book = self.book.take().unwrap_or_default();
        let settings = self.settings.clone();
        let registry = self.registry.clone();
        let call = blocking(&self.store, move |store| {
            let report = pass(store, &registry, &settings, &mut book, reload, now);
            Ok((book, report))
        });
        ctx.spawn(call.into_actor(self).map(|result, act, ctx| {
            let report = match result {
                Ok((book, report)) => {
                    act.book = Some(book);
                    report
                }
                Err(lost) => {
                    // The pass panicked or was cancelled: start over (write the static tasks,
                    // reload, and begin each task anew).
                    act.book = Some(Book::default());
                    Err(lost)
                }
            };
            match report {
                Ok(report) => {
                    act.call.succeeded(&act.logger);
                    act.log(&report);
                }
                Err(err) => act.call.failed(&act.logger, "scheduler", &err),
            }
            act.sleep(ctx);
        }));
    }

    /// Sets the timer for the next run, reload or retry, whichever is first.
    fn sleep(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let mut delay = self.settings.reload_interval;
        if let Some(book) = &self.book {
            if let Some(at) = book.last_reload {
                delay = delay.min(self.settings.reload_interval.saturating_sub(at.elapsed()));
            }
            if let Some(next) = book.next_run() {
                delay = delay.min((next - Utc::now()).to_std().unwrap_or_default());
            }
        }
        if let Some(retry_at) = self.call.retry_at() {
            delay = delay.max(retry_at.saturating_duration_since(Instant::now()));
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| act.wake(ctx)));
    }

    fn log(&self, report: &PassReport) {
        let logger = &self.logger;
        if let Some((written, removed)) = &report.synced {
            info!(logger, "static recurring tasks written"; "tasks" => written, "removed" => ?removed);
        }
        for problem in &report.unreadable {
            warn!(logger, "a stored recurring task cannot be read; it does not run"; "problem" => problem);
        }
        if !report.added.is_empty() || !report.removed.is_empty() {
            debug!(logger, "recurring tasks loaded"; "new_or_changed" => ?report.added, "removed" => ?report.removed);
        }
        let zone = |key: &str| self.book.as_ref().and_then(|b| b.tasks.get(key)).map(|w| w.task.time_zone);
        for (key, at, id) in &report.enqueued {
            let local = zone(key).map(|zone| local_time(*at, zone)).unwrap_or_default();
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

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.wake(ctx);
    }
}

impl Handler<SetProcess> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: SetProcess, _: &mut Context<Self>) {}
}

impl Handler<Ping> for Scheduler {
    type Result = MessageResult<Ping>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.call.last_progress)
    }
}

impl Handler<StopChild> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
