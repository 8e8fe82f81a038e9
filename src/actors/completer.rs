//! Completer: writes the outcomes of ended executions, with their claim tokens.
//!
//! Executions report to the [`ClaimBook`], not to an actor, so an outcome survives the restart
//! of whichever actor would have written it. The completer takes every ended execution from
//! the book in one pass and writes them in one transaction ([`Store::record`]); while one pass
//! is under way, new outcomes gather for the next. A pass updates the book itself, on the
//! blocking thread, so a pass that returns after its completer was replaced still settles its
//! claims. Outcomes the database refused stay in the book and are written again with backoff
//! (Solid Queue #748); one refused as fenced (the claim was reaped meanwhile) is logged with
//! its job id.
//!
//! While executions run in this process, the completer also reads, about once per
//! [`CANCEL_POLL`], which of the process's jobs an operator asked to cancel, and fires their
//! tokens. An idle process (no running execution) reads nothing.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use slog::{debug, info, o, warn, Logger};

use super::claim_book::{ClaimBook, PendingOutcome};
use super::{answer_the_supervisor, blocking, Backoff, PeriodicCall, SetProcess, HOT_PATH_MAX_BACKOFF};
use crate::events::Event;
use crate::job::CancelReason;
use crate::lifecycle::Transition;
use crate::metrics::{ExecutionOutcome, Telemetry};
use crate::model::{ClaimToken, ProcessId};
use crate::store::{SharedStore, Store, StoreResult};

/// How often pending outcomes are retried while the database refuses them.
pub const RETRY_TICK: Duration = Duration::from_millis(100);
/// How often the cancel requests of running jobs are read, while jobs run.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// Book → completer: executions ended and their outcomes wait to be written; `retry_now` asks
/// a completer that is backing off after database errors to try at once (the database was
/// just seen answering).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct OutcomesReady {
    /// Skip the error backoff.
    pub retry_now: bool,
}

/// What one pass wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassOutcome {
    /// Outcomes written.
    pub applied: usize,
    /// Outcomes refused because the claim was no longer this process's.
    pub stale: usize,
}

/// Writes `pending` in one transaction and settles each in `book`; on a database error they
/// all go back to the book to be written again, and the error is returned. Blocking.
pub(crate) fn write_outcomes(
    store: &Store,
    book: &ClaimBook,
    pending: Vec<PendingOutcome>,
    logger: &Logger,
) -> StoreResult<PassOutcome> {
    let now = Utc::now().naive_utc();
    let batch: Vec<_> = pending.iter().map(|p| (p.job.token, p.transition.clone())).collect();
    let settled = match store.record(&batch, now) {
        Ok(settled) => settled,
        Err(err) => {
            book.unwritten(pending);
            return Err(err);
        }
    };
    let pass = PassOutcome { applied: settled.applied.len(), stale: settled.fenced.len() };
    report_outcomes(book.telemetry(), &pending, &settled.fenced);
    if !settled.fenced.is_empty() {
        let fenced: std::collections::HashSet<_> = settled.fenced.iter().collect();
        for outcome in pending.iter().filter(|outcome| fenced.contains(&outcome.job.token)) {
            let token = outcome.job.token;
            warn!(logger, "outcome discarded: the claim is no longer this process's (it was reaped)";
                "job_id" => token.job_id, "claim_id" => token.claim_id, "outcome" => outcome.transition.label());
        }
    }
    debug!(logger, "outcomes recorded"; "applied" => pass.applied, "fenced" => pass.stale);
    book.written(&batch.iter().map(|(token, _)| *token).collect::<Vec<_>>());
    Ok(pass)
}

/// Counts the written outcomes (all of `pending` but the `fenced`) and emits the events of
/// jobs that failed for good or were discarded.
fn report_outcomes(telemetry: &Telemetry, pending: &[PendingOutcome], fenced: &[ClaimToken]) {
    let written = || pending.iter().filter(|p| !fenced.contains(&p.job.token));
    telemetry.metrics.jobs_executed(
        written().map(|p| (p.job.queue.as_str(), p.job.kind.as_str(), ExecutionOutcome::of(&p.transition), p.ran_for)),
    );
    telemetry.metrics.claims_fenced(fenced.len() as u64);
    if !telemetry.events.has_subscribers() {
        return;
    }
    for p in written() {
        let job = &p.job;
        match &p.transition {
            Transition::Fail(error) => telemetry.events.emit(Event::JobFailed {
                id: job.token.job_id,
                kind: job.kind.clone(),
                queue: job.queue.clone(),
                error_kind: error.kind.as_str().to_string(),
                message: error.message.clone(),
                attempt: job.attempts,
            }),
            Transition::Discard(error) => telemetry.events.emit(Event::JobDiscarded {
                id: job.token.job_id,
                kind: job.kind.clone(),
                queue: job.queue.clone(),
                message: error.message.clone(),
            }),
            _ => {}
        }
    }
}

/// The completer actor.
pub struct Completer {
    store: SharedStore,
    book: Arc<ClaimBook>,
    logger: Logger,
    call: PeriodicCall,
    process: Option<ProcessId>,
    /// A read of cancel requests is under way.
    polling_cancels: bool,
    /// Failed reads of cancel requests, for logging with backoff.
    cancel_errors: Backoff,
}

impl Completer {
    /// A completer writing the outcomes `book` collects, for `process` (`None` until it is
    /// registered).
    pub fn new(store: SharedStore, book: Arc<ClaimBook>, process: Option<ProcessId>, logger: &Logger) -> Self {
        Completer {
            store,
            book,
            logger: logger.new(o!("actor" => "completer")),
            call: PeriodicCall::new(HOT_PATH_MAX_BACKOFF),
            process,
            polling_cancels: false,
            cancel_errors: Backoff::new(CANCEL_POLL, CANCEL_POLL),
        }
    }

    /// Reads which running jobs of the process an operator asked to cancel, and fires their
    /// tokens; nothing while no execution runs.
    fn poll_cancels(&mut self, ctx: &mut Context<Self>) {
        let Some(process) = self.process else { return };
        if self.polling_cancels || !self.book.running() {
            return;
        }
        self.polling_cancels = true;
        let call = blocking(&self.store, move |s| s.cancel_requests(process));
        ctx.spawn(call.into_actor(self).map(|result, act, _| {
            act.polling_cancels = false;
            match result {
                Ok(ids) => {
                    act.cancel_errors.succeed();
                    for id in ids {
                        if act.book.cancel(id, CancelReason::Cancelled) {
                            info!(act.logger, "cancel requested for a running job: its handler is told";
                                "job_id" => id);
                        }
                    }
                }
                Err(err) => {
                    act.cancel_errors.fail();
                    if act.cancel_errors.should_log() {
                        warn!(act.logger, "could not read cancel requests"; "error" => %err,
                            "failures" => act.cancel_errors.failures);
                    }
                }
            }
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.call.may_run() {
            return;
        }
        let pending = self.book.take_ended();
        if pending.is_empty() {
            self.call.idle();
            return;
        }
        self.call.begin();
        let (book, logger) = (self.book.clone(), self.logger.clone());
        let call = blocking(&self.store, move |s| write_outcomes(s, &book, pending, &logger));
        ctx.spawn(call.into_actor(self).map(|result, act, ctx| match result {
            Ok(_) => {
                act.call.succeeded(&act.logger);
                act.flush(ctx);
            }
            Err(err) => act.call.failed(&act.logger, "recording job outcomes", &err),
        }));
    }
}

impl Actor for Completer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.book.set_completer(std::sync::Arc::new(move |retry_now| me.do_send(OutcomesReady { retry_now })));
        ctx.run_interval(RETRY_TICK, |act, ctx| act.flush(ctx));
        ctx.run_interval(CANCEL_POLL, |act, ctx| act.poll_cancels(ctx));
        self.flush(ctx);
    }
}

impl Handler<OutcomesReady> for Completer {
    type Result = ();
    fn handle(&mut self, msg: OutcomesReady, ctx: &mut Context<Self>) {
        if msg.retry_now {
            self.call.retry_now();
        }
        self.flush(ctx);
    }
}

impl Handler<SetProcess> for Completer {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, _: &mut Context<Self>) {
        if msg.0.is_some() {
            self.process = msg.0;
        }
    }
}

answer_the_supervisor!(Completer, |this| this.call.last_progress);
