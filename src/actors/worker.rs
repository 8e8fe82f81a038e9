//! Worker: claims ready jobs for one worker group and starts their executions.
//!
//! The loop ticks every polling interval (and at once after a full claim, or when the
//! completer frees slots after a full claim). It claims only up to its group's free slots and
//! only while it has a process id. While jobs are known to wait, it claims once half its slots
//! are free, after waiting up to [`CLAIM_GATHER`] for three quarters: jobs that end quickly
//! free the rest within it, and one claim of many jobs costs the database much less than
//! several of a few (at concurrency 100, about 95 jobs per claim instead of 70, 1.3× the
//! drain rate). Every claim goes into the process's [`ClaimBook`]; each
//! execution runs as a task on the process's executions arbiter, not on the worker, and
//! reports its outcome to the book, where the completer writes it. So a worker that crashes or
//! is replaced as stuck takes no running job with it: its replacement finds the executions in
//! the book and counts their slots as busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use chrono::Utc;
use slog::{debug, info, o, warn, Logger};

use super::claim_book::{ClaimBook, ClaimPass, Group, Seat, WakeReason};
use super::{answer_the_supervisor, blocking, PeriodicCall, SetProcess, HOT_PATH_MAX_BACKOFF};
use crate::job::Cancellation;
use crate::lifecycle::{Outcome, Transition};
use crate::model::{ClaimedJob, ProcessId, WorkerGroup};
use crate::registry::Registry;
use crate::store::params::Claim;
use crate::store::SharedStore;

/// Supervisor → worker: stop claiming new jobs (drain, or the process cannot prove it is
/// alive).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopClaiming;

/// Supervisor → worker: claim again (the process proved it is alive).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ResumeClaiming;

/// Claim book → worker: a batch of its group's slots is free, or jobs were made ready.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Woken(pub WakeReason);

/// Longest wait between polls of an idle worker when nothing tells it of new jobs made ready
/// by other processes (a store without a listener): each empty claim doubles the wait from
/// the polling interval up to this.
pub const MAX_IDLE_POLL: Duration = Duration::from_secs(1);
/// The same with a listener (PostgreSQL's LISTEN/NOTIFY, SQLite's `data_version` watcher):
/// polling is then only a safety net, far apart so that a fleet of idle processes costs the
/// database little (100 processes: about 3 statements per second).
pub const MAX_IDLE_POLL_LISTENING: Duration = Duration::from_secs(30);

/// Default time between polls of a worker that found nothing the last time
/// (`SOLIDQ_POLLING_INTERVAL`); each empty poll doubles it, up to a second (30 seconds where
/// the store has a listener).
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_millis(100);

/// How long a worker with half its slots free waits for three quarters before it claims,
/// while jobs are known to wait (see the module documentation).
pub const CLAIM_GATHER: Duration = Duration::from_millis(2);

/// Settings of one worker.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Queues and concurrency.
    pub group: WorkerGroup,
    /// Idle polling interval.
    pub polling_interval: Duration,
}

/// What a worker shares with the rest of its process.
#[derive(Clone)]
pub struct WorkerContext {
    /// The store.
    pub store: SharedStore,
    /// Handlers by kind.
    pub registry: Arc<Registry>,
    /// The process's claims.
    pub book: Arc<ClaimBook>,
    /// Where executions run: an arbiter that lives as long as the runtime.
    pub executions: ArbiterHandle,
    /// The kinds the registry has handlers for: the only ones this process claims.
    pub kinds: Arc<Vec<String>>,
    /// Whether a listener tells of jobs made ready by other processes.
    pub listening: bool,
}

/// The worker actor of one worker group.
pub struct Worker {
    settings: WorkerSettings,
    shared: WorkerContext,
    group: Group,
    seat: Seat,
    /// A claim failed with the database unreachable: it may have committed without our knowing.
    claims_in_doubt: bool,
    logger: Logger,
    process: Option<ProcessId>,
    claiming: bool,
    claims: PeriodicCall,
    /// The last claim filled every free slot, so more jobs may be waiting.
    more_ready: bool,
    /// Jobs were made ready while a claim was under way: claim again after it.
    recheck: bool,
    /// Empty claims in a row, and the time before which an idle worker does not poll.
    idle: (u32, Option<Instant>),
    /// A claim is due once [`CLAIM_GATHER`] has passed.
    gathering: bool,
    /// The timer set for the earliest job this process deferred for its rate limit.
    rate_wake: Option<(chrono::NaiveDateTime, SpawnHandle)>,
}

impl Worker {
    /// Worker number `group` for `settings.group`, sitting in `seat`.
    pub fn new(
        settings: WorkerSettings,
        shared: WorkerContext,
        (group, seat): (Group, Seat),
        process: Option<ProcessId>,
        logger: &Logger,
    ) -> Self {
        let queues: Vec<String> = settings.group.queues.iter().map(|q| q.to_string()).collect();
        Worker {
            logger: logger.new(o!("actor" => "worker", "queues" => queues.join(","))),
            settings,
            shared,
            group,
            seat,
            claims_in_doubt: false,
            process,
            claiming: true,
            claims: PeriodicCall::new(HOT_PATH_MAX_BACKOFF),
            more_ready: false,
            recheck: false,
            idle: (0, None),
            gathering: false,
            rate_wake: None,
        }
    }

    fn free_slots(&self) -> usize {
        self.shared.book.free(self.group)
    }

    /// Free slots worth a claim while jobs are known to wait: half the group's concurrency,
    /// so that a busy group claims in batches, not slot by slot, and claims the next batch
    /// while the last one still runs.
    fn batch(&self) -> usize {
        (self.settings.group.concurrency / 2).max(1)
    }

    /// Free slots worth a claim at once: three quarters of the concurrency.
    fn full_batch(&self) -> usize {
        (self.settings.group.concurrency * 3 / 4).max(1)
    }

    /// Claims now if three quarters of the slots are free, else once [`CLAIM_GATHER`] has
    /// passed (more may free meanwhile).
    fn claim_soon(&mut self, ctx: &mut Context<Self>) {
        if self.free_slots() >= self.full_batch() {
            self.tick(ctx);
        } else if !self.gathering {
            self.gathering = true;
            ctx.run_later(CLAIM_GATHER, |act, ctx| {
                act.gathering = false;
                act.tick(ctx);
            });
        }
    }

    /// Sets a timer for the earliest time a job the store deferred for its rate limit is due
    /// again (unless one is set for that time or earlier): deferred jobs start then, not at
    /// the dispatcher's next pass.
    fn arm_rate_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.shared.store.rate_limit_wake() else { return };
        if let Some((at, handle)) = self.rate_wake {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = (next - Utc::now().naive_utc()).to_std().unwrap_or_default();
        let handle = ctx.run_later(delay, |act, ctx| {
            act.rate_wake = None;
            act.rate_woke(ctx);
        });
        self.rate_wake = Some((next, handle));
    }

    /// Moves the deferred jobs now due to ready (which wakes the workers to claim them), then
    /// sets the timer for the next.
    fn rate_woke(&mut self, ctx: &mut Context<Self>) {
        let call = blocking(&self.shared.store, |s| s.dispatch_rate_limited(Utc::now().naive_utc()));
        ctx.spawn(call.into_actor(self).map(|result, act, ctx| {
            if let Err(err) = result {
                debug!(act.logger, "rate-limited jobs not dispatched (the dispatcher will)"; "error" => %err);
            }
            act.arm_rate_wake(ctx);
        }));
    }

    /// A poll: skipped while an idle worker waits out its backoff.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.idle.1.is_some_and(|until| Instant::now() < until) {
            self.claims.idle();
            return;
        }
        self.tick(ctx);
    }

    /// After a claim: empty ones double the wait before the next poll, up to a cap.
    fn note_claimed(&mut self, claimed: usize) {
        if claimed > 0 {
            self.idle = (0, None);
            return;
        }
        let streak = self.idle.0.saturating_add(1).min(16);
        let cap = if self.shared.listening { MAX_IDLE_POLL_LISTENING } else { MAX_IDLE_POLL };
        let wait = self
            .settings
            .polling_interval
            .saturating_mul(1 << (streak - 1))
            .min(cap.max(self.settings.polling_interval));
        self.idle = (streak, Some(Instant::now() + wait));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(process) = self.process else {
            self.claims.idle();
            return;
        };
        if !self.claiming || self.free_slots() == 0 {
            self.claims.idle();
            return;
        }
        if !self.claims.begin() {
            return;
        }
        let limit = self.free_slots();
        let queues = self.settings.group.queues.clone();
        let (book, place, settle, logger) =
            (self.shared.book.clone(), (self.group, self.seat), self.claims_in_doubt, self.logger.clone());
        let kinds = self.shared.kinds.clone();
        let call = blocking(&self.shared.store, move |s| {
            let claim = Claim { process, queues: &queues, kinds: &kinds, limit, now: Utc::now().naive_utc() };
            book.claim(s, place, &claim, settle, &logger)
        });
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| match result {
            Ok(ClaimPass { jobs, settled }) => {
                if act.claims.failing() {
                    // The database answers again: pending outcomes may be written now.
                    act.shared.book.database_answered();
                }
                act.claims.succeeded(&act.logger);
                match settled {
                    Some(0) => act.claims_in_doubt = false,
                    Some(released) => {
                        act.claims_in_doubt = false;
                        warn!(act.logger, "claims left by a claim whose answer was lost returned to ready";
                            "process_id" => process, "released" => released);
                    }
                    None => {}
                }
                act.more_ready = jobs.len() == limit;
                act.note_claimed(jobs.len());
                act.start_jobs(process, jobs);
                act.arm_rate_wake(ctx);
                let recheck = std::mem::take(&mut act.recheck);
                let free = act.free_slots();
                if recheck && free > 0 {
                    act.tick(ctx);
                } else if act.more_ready && free >= act.batch() {
                    act.claim_soon(ctx);
                }
            }
            Err(err) => {
                act.claims_in_doubt = true;
                act.claims.failed(&act.logger, "claiming jobs", &err);
            }
        }));
    }

    /// Starts `jobs` as tasks on the executions arbiter (one hand-over for the batch), except
    /// those whose claims were handed back.
    fn start_jobs(&mut self, process: ProcessId, jobs: Vec<ClaimedJob>) {
        let jobs: Vec<(ClaimedJob, Cancellation)> = jobs
            .into_iter()
            .filter_map(|job| self.shared.book.start(job.token).map(|cancellation| (job, cancellation)))
            .collect();
        if jobs.is_empty() {
            return;
        }
        for (job, _) in &jobs {
            debug!(self.logger, "job started"; "process_id" => process, "job_id" => job.token.job_id,
                "kind" => &job.kind, "queue" => &job.queue, "attempt" => job.attempts);
        }
        self.shared
            .book
            .telemetry()
            .metrics
            .jobs_started(jobs.iter().map(|(job, _)| (job.queue.as_str(), job.kind.as_str(), job.ready_at)));
        let tokens: Vec<_> = jobs.iter().map(|(job, _)| job.token).collect();
        let (registry, book, logger) = (self.shared.registry.clone(), self.shared.book.clone(), self.logger.clone());
        let store = self.shared.store.clone();
        let spawned = self.shared.executions.spawn_fn(move || {
            let process_name: Arc<str> = process.to_string().into();
            let mut late_jobs = Vec::new();
            for (job, cancellation) in jobs {
                if let Some(wait) = until_rate_limit_start(&job) {
                    // Admitted for a start a few ms ahead (its window's place frees then):
                    // held until then, checked against its deadline, then run.
                    let (registry, book, logger, store) =
                        (registry.clone(), book.clone(), logger.clone(), store.clone());
                    let process_name = process_name.clone();
                    actix_rt::spawn(async move {
                        actix_rt::time::sleep(wait).await;
                        match past_rate_limit_deadline(&job) {
                            Some(late) => hand_back_late(store, book, logger, process, vec![(job, late)]).await,
                            None => {
                                let run = registry.perform(&job, &process_name, cancellation);
                                run_to_end(run, &book, &logger, process, job).await;
                            }
                        }
                    });
                    continue;
                }
                if let Some(late) = past_rate_limit_deadline(&job) {
                    late_jobs.push((job, late));
                    continue;
                }
                let run = registry.perform(&job, &process_name, cancellation);
                let (book, logger) = (book.clone(), logger.clone());
                actix_rt::spawn(async move { run_to_end(run, &book, &logger, process, job).await });
            }
            if !late_jobs.is_empty() {
                actix_rt::spawn(hand_back_late(store, book, logger, process, late_jobs));
            }
        });
        if !spawned {
            // The executions arbiter is gone (the runtime is stopping): hand the jobs back.
            for token in tokens {
                self.shared.book.ended(token, Transition::Release);
            }
        }
    }
}

/// Awaits a job's run and hands its outcome to the book.
async fn run_to_end(
    run: crate::registry::OutcomeFuture,
    book: &ClaimBook,
    logger: &Logger,
    process: ProcessId,
    job: ClaimedJob,
) {
    let outcome = run.await;
    execution_ended(book, logger, process, job, outcome);
}

/// Hands back rate-limited jobs that came past their deadline unstarted: started now, they
/// could crowd the next window of their keys. Their counted starts are taken back first.
async fn hand_back_late(
    store: SharedStore,
    book: Arc<ClaimBook>,
    logger: Logger,
    process: ProcessId,
    late_jobs: Vec<(ClaimedJob, i64)>,
) {
    let ids: Vec<_> = late_jobs.iter().map(|(job, _)| job.token.job_id).collect();
    if let Err(err) = crate::actors::blocking(&store, move |s| s.forget_rate_limit_starts(&ids)).await {
        debug!(logger, "rate-limit starts not taken back (they count until the window passes)"; "error" => %err);
    }
    for (job, late) in late_jobs {
        let why = format!("its rate-limited start came {late} ms past its deadline (a stalled process)");
        execution_ended(&book, &logger, process, job, Outcome::NotStarted(why));
    }
}

/// How long until a job's counted rate-limit start, if that is still ahead.
fn until_rate_limit_start(job: &ClaimedJob) -> Option<Duration> {
    let start = job.rate_limit_start?;
    (start - Utc::now().naive_utc()).to_std().ok().filter(|wait| !wait.is_zero())
}

/// How many ms past its rate-limit deadline a job is, if it is: the store counted its start
/// when it was claimed, and it must start within the window's guard of that.
fn past_rate_limit_deadline(job: &ClaimedJob) -> Option<i64> {
    let deadline = job.rate_limit_deadline?;
    let late = (Utc::now().naive_utc() - deadline).num_milliseconds();
    (late > 0).then_some(late)
}

/// Logs how an execution ended and hands its transition to the book for the completer.
fn execution_ended(book: &ClaimBook, logger: &Logger, process: ProcessId, job: ClaimedJob, outcome: Outcome) {
    let job_id = job.token.job_id;
    match &outcome {
        Outcome::Succeeded => {
            debug!(logger, "job succeeded"; "process_id" => process, "job_id" => job_id, "kind" => &job.kind,
                "attempt" => job.attempts)
        }
        Outcome::Failed { error, .. } => {
            warn!(logger, "job failed"; "process_id" => process, "job_id" => job_id, "kind" => &job.kind,
                "attempt" => job.attempts, "max_attempts" => job.max_attempts, "failure" => ?error.kind,
                "error" => &error.message)
        }
        Outcome::NotStarted(why) => {
            warn!(logger, "job handed back before it started"; "process_id" => process, "job_id" => job_id,
                "kind" => &job.kind, "reason" => why)
        }
        Outcome::Interrupted(why) => {
            warn!(logger, "job interrupted"; "process_id" => process, "job_id" => job_id, "kind" => &job.kind,
                "reason" => why)
        }
        Outcome::Snoozed(delay) => {
            debug!(logger, "job snoozed"; "process_id" => process, "job_id" => job_id, "kind" => &job.kind,
                "delay_ms" => delay.as_millis() as u64)
        }
        Outcome::Discarded(error) => {
            warn!(logger, "job discarded by its handler"; "process_id" => process, "job_id" => job_id,
                "kind" => &job.kind, "error" => &error.message)
        }
        Outcome::Cancelled => {
            info!(logger, "job cancelled while running"; "process_id" => process, "job_id" => job_id,
                "kind" => &job.kind)
        }
    }
    let transition = Transition::after(outcome, job.attempts, job.max_attempts);
    match book.ended(job.token, transition.clone()) {
        Some(started) => {
            debug!(logger, "execution ended"; "job_id" => job_id, "duration_ms" => started.elapsed().as_millis() as u64,
                "outcome" => transition.label())
        }
        None => warn!(logger, "outcome dropped: the claim was released when the process stopped";
            "job_id" => job_id, "outcome" => transition.label()),
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(self.logger, "worker started"; "concurrency" => self.settings.group.concurrency);
        let me = ctx.address();
        let wake = std::sync::Arc::new(move |reason| me.do_send(Woken(reason)));
        let wake_at = [self.batch(), self.full_batch()];
        self.shared.book.set_worker(self.group, self.settings.group.concurrency, wake_at, wake);
        ctx.run_interval(self.settings.polling_interval, |act, ctx| act.poll(ctx));
        self.tick(ctx);
    }
}

impl Handler<SetProcess> for Worker {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, ctx: &mut Context<Self>) {
        self.process = msg.0;
        self.tick(ctx);
    }
}

answer_the_supervisor!(Worker, |this| this.claims.last_progress);

impl Handler<StopClaiming> for Worker {
    type Result = ();
    fn handle(&mut self, _: StopClaiming, _: &mut Context<Self>) {
        self.claiming = false;
    }
}

impl Handler<ResumeClaiming> for Worker {
    type Result = ();
    fn handle(&mut self, _: ResumeClaiming, ctx: &mut Context<Self>) {
        self.claiming = true;
        self.tick(ctx);
    }
}

impl Handler<Woken> for Worker {
    type Result = ();
    fn handle(&mut self, Woken(reason): Woken, ctx: &mut Context<Self>) {
        match reason {
            // Without a full last claim the queue looked empty: only news of jobs wakes it.
            WakeReason::SlotsFreed if self.more_ready => self.claim_soon(ctx),
            WakeReason::SlotsFreed => {}
            WakeReason::JobsReady => {
                self.idle = (0, None);
                if self.claims.running() {
                    self.recheck = true;
                } else {
                    self.tick(ctx);
                }
            }
        }
    }
}
