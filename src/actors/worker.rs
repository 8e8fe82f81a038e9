//! Worker: claims ready jobs for one worker group, hands them to the registry, records outcomes.
//!
//! The loop ticks every polling interval (and at once after a full claim or a [`Wake`]). It
//! claims only up to its free capacity and only while it has a process id; every outcome is
//! written with the claim's token, so a finish from a process that lost its claim is discarded.
//! An outcome the database refused stays pending and is written again with backoff: a claim is
//! never forgotten because a write failed (Solid Queue #748).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use slog::{debug, info, o, warn, Logger};

use super::claim_book::{ClaimBook, ClaimPass, Seat};
use super::messages::{InFlight, Ping, ResumeClaiming, SetProcess, StopChild, StopClaiming, Wake};
use super::{blocking, PeriodicCall};
use crate::config::WorkerGroup;
use crate::registry::{Outcome, Registry};
use crate::store::{ClaimToken, ClaimedJob, Fenced, ProcessId, SharedStore, StoreResult};

/// Longest wait between retries of a failing database call.
pub const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(2);

/// What to write for a finished execution.
#[derive(Debug, Clone)]
enum Record {
    Finish,
    Fail(crate::store::FailureRecord),
    Retry(crate::store::FailureRecord, Duration),
    Release,
}

impl Record {
    fn from_outcome(outcome: Outcome, job: &ClaimedJob) -> Record {
        match outcome {
            Outcome::Succeeded => Record::Finish,
            Outcome::Failed { error, retryable, retry_in } if retryable && job.attempts < job.max_attempts => {
                Record::Retry(error, retry_in)
            }
            Outcome::Failed { error, .. } => Record::Fail(error),
            Outcome::Interrupted(_) => Record::Release,
        }
    }

    fn apply(&self, store: &dyn crate::store::Store, token: ClaimToken) -> StoreResult<Fenced> {
        let now = Utc::now().naive_utc();
        match self {
            Record::Finish => store.finish(token, now),
            Record::Fail(error) => store.fail(token, error, now),
            Record::Retry(error, delay) => {
                let run_at = now + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::MAX);
                store.retry(token, error, run_at, now)
            }
            Record::Release => store.release(token, now),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Record::Finish => "finished",
            Record::Fail(_) => "failed",
            Record::Retry(..) => "retry scheduled",
            Record::Release => "released",
        }
    }
}

/// Settings of one worker.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Queues and concurrency.
    pub group: WorkerGroup,
    /// Idle polling interval.
    pub polling_interval: Duration,
}

/// The worker actor of one worker group.
pub struct Worker {
    settings: WorkerSettings,
    store: SharedStore,
    registry: Arc<Registry>,
    book: Arc<ClaimBook>,
    seat: Seat,
    /// A claim failed with the database unreachable: it may have committed without our knowing.
    claims_in_doubt: bool,
    logger: Logger,
    process: Option<ProcessId>,
    claiming: bool,
    claims: PeriodicCall,
    /// The last claim filled every free slot, so more jobs may be waiting.
    more_ready: bool,
    running: HashMap<ClaimToken, (ClaimedJob, Instant)>,
    /// Outcomes the database has not accepted yet.
    unrecorded: Vec<(ClaimedJob, Record)>,
    recording: usize,
    /// Backoff for outcome writes the database refused.
    records: PeriodicCall,
    stale_discarded: u64,
}

impl Worker {
    /// A worker for `settings.group`.
    pub fn new(
        settings: WorkerSettings,
        store: SharedStore,
        registry: Arc<Registry>,
        book: Arc<ClaimBook>,
        seat: Seat,
        process: Option<ProcessId>,
        logger: &Logger,
    ) -> Self {
        let queues: Vec<String> = settings.group.queues.iter().map(|q| q.to_string()).collect();
        Worker {
            logger: logger.new(o!("actor" => "worker", "queues" => queues.join(","))),
            settings,
            store,
            registry,
            book,
            seat,
            claims_in_doubt: false,
            process,
            claiming: true,
            claims: PeriodicCall::new(MAX_ERROR_BACKOFF),
            more_ready: false,
            running: HashMap::new(),
            unrecorded: Vec::new(),
            recording: 0,
            records: PeriodicCall::new(MAX_ERROR_BACKOFF),
            stale_discarded: 0,
        }
    }

    fn busy(&self) -> usize {
        self.running.len() + self.unrecorded.len() + self.recording
    }

    fn free_slots(&self) -> usize {
        self.settings.group.concurrency.saturating_sub(self.busy())
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.records.may_run() {
            self.record_pending(ctx);
        }
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
        let (book, seat, settle) = (self.book.clone(), self.seat, self.claims_in_doubt);
        let call = blocking(&self.store, move |s| {
            book.claim(s, seat, process, &queues, limit, settle, Utc::now().naive_utc())
        });
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| match result {
            Ok(ClaimPass { jobs, settled }) => {
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
                if act.records.failing() {
                    // The database answers again: write pending outcomes now, not after backoff.
                    act.records.succeeded(&act.logger);
                    act.record_pending(ctx);
                }
                act.more_ready = jobs.len() == limit;
                for job in jobs {
                    act.start_job(process, job, ctx);
                }
                if act.more_ready && act.free_slots() > 0 {
                    act.tick(ctx);
                }
            }
            Err(err) => {
                act.claims_in_doubt = true;
                act.claims.failed(&act.logger, "claiming jobs", &err);
            }
        }));
    }

    fn start_job(&mut self, process: ProcessId, job: ClaimedJob, ctx: &mut Context<Self>) {
        let token = job.token;
        debug!(self.logger, "job started"; "process_id" => process, "job_id" => token.job_id, "kind" => &job.kind,
            "queue" => &job.queue, "attempt" => job.attempts);
        let run = self.registry.perform(&job, &format!("{process}"));
        self.running.insert(token, (job, Instant::now()));
        ctx.spawn(run.into_actor(self).map(move |outcome, act, ctx| act.job_done(token, outcome, ctx)));
    }

    fn job_done(&mut self, token: ClaimToken, outcome: Outcome, ctx: &mut Context<Self>) {
        let Some((job, started)) = self.running.remove(&token) else { return };
        let duration_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Outcome::Succeeded => {
                debug!(self.logger, "job succeeded"; "process_id" => self.process, "job_id" => token.job_id,
                "kind" => &job.kind, "attempt" => job.attempts, "duration_ms" => duration_ms)
            }
            Outcome::Failed { error, .. } => {
                warn!(self.logger, "job failed"; "process_id" => self.process, "job_id" => token.job_id,
                "kind" => &job.kind, "attempt" => job.attempts, "max_attempts" => job.max_attempts,
                "class" => &error.class, "error" => &error.message, "duration_ms" => duration_ms)
            }
            Outcome::Interrupted(why) => {
                warn!(self.logger, "job interrupted"; "process_id" => self.process, "job_id" => token.job_id,
                "kind" => &job.kind, "reason" => why)
            }
        }
        let record = Record::from_outcome(outcome, &job);
        self.write_record(job, record, ctx);
    }

    fn write_record(&mut self, job: ClaimedJob, record: Record, ctx: &mut Context<Self>) {
        self.recording += 1;
        let token = job.token;
        let call_record = record.clone();
        let call = blocking(&self.store, move |s| call_record.apply(s, token));
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            act.recording -= 1;
            match result {
                Ok(Fenced::Applied) => {
                    act.book.settled(&token);
                    debug!(act.logger, "outcome recorded"; "job_id" => token.job_id, "outcome" => record.label());
                }
                Ok(Fenced::Stale) => {
                    act.book.settled(&token);
                    act.stale_discarded += 1;
                    warn!(act.logger, "outcome discarded: the claim is no longer this process's";
                        "job_id" => token.job_id, "claim_id" => token.claim_id, "outcome" => record.label(),
                        "discarded_total" => act.stale_discarded);
                }
                Err(err) => {
                    act.records.failed(&act.logger, "recording a job outcome", &err);
                    act.unrecorded.push((job, record));
                    return;
                }
            }
            if act.records.failing() {
                act.records.succeeded(&act.logger);
            }
            if act.claiming && act.more_ready {
                act.tick(ctx);
            }
        }));
    }

    fn record_pending(&mut self, ctx: &mut Context<Self>) {
        for (job, record) in std::mem::take(&mut self.unrecorded) {
            self.write_record(job, record, ctx);
        }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(self.logger, "worker started"; "concurrency" => self.settings.group.concurrency);
        ctx.run_interval(self.settings.polling_interval, |act, ctx| act.tick(ctx));
        self.tick(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if !self.running.is_empty() || !self.unrecorded.is_empty() {
            warn!(self.logger, "worker stopped with claims still open";
                "running" => self.running.len(), "unrecorded" => self.unrecorded.len());
        }
    }
}

impl Handler<SetProcess> for Worker {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, ctx: &mut Context<Self>) {
        self.process = msg.0;
        self.tick(ctx);
    }
}

impl Handler<Ping> for Worker {
    type Result = MessageResult<Ping>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.claims.last_progress)
    }
}

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

impl Handler<InFlight> for Worker {
    type Result = usize;
    fn handle(&mut self, _: InFlight, _: &mut Context<Self>) -> usize {
        // A claim under way counts too: the jobs it brings back will run, so a drain must wait
        // for them rather than deregister (and release them) underneath.
        self.busy() + usize::from(self.claims.in_progress())
    }
}

impl Handler<Wake> for Worker {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<StopChild> for Worker {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
