//! Periodic: the one actor that runs a maintenance [`Service`] on its schedule. It only ticks,
//! runs one pass at a time on the blocking pool (the next starts when the service asks, after
//! the last ended), backs off on database errors (logging the 1st, 2nd, 4th, 8th… failure, not
//! every tick) and has the service report what a pass did; what a pass does is the service's.
//! A service only the leader runs ([`Service::LEADER_ONLY`]) passes only while this process
//! leads, each pass writing as the leader (fenced by its term), and starts afresh at each new
//! term.

use actix::prelude::*;
use slog::{o, warn, Logger};

use super::{answer_the_supervisor, blocking, PeriodicCall, SetProcess, MAINTENANCE_MAX_BACKOFF};
use crate::maintenance::{Pass, Service};
use crate::model::ProcessId;
use crate::store::{Leadership, SharedStore, StoreError};

/// Runs the service `S`, a pass [`Service::next_pass_in`] after the last.
pub struct Periodic<S: Service> {
    /// The service between passes; taken while a pass runs on the blocking pool.
    service: Option<S>,
    /// The service as configured, to start over from if a pass was lost (it panicked).
    pristine: S,
    store: SharedStore,
    own: Option<ProcessId>,
    logger: Logger,
    call: PeriodicCall,
    /// Whether this process leads, for a service only the leader runs.
    leadership: Leadership,
    /// The term the service's state belongs to: a new term starts from `pristine`.
    term: Option<i64>,
    /// The tick scheduled next, if no pass is under way: cancelled when the tick comes sooner.
    next_tick: Option<SpawnHandle>,
    /// Subscribed to the election while the actor lives.
    _on_elected: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

/// Tick now: this process was just elected, or just registered.
#[derive(Message)]
#[rtype(result = "()")]
struct TickNow;

impl<S: Service> Periodic<S> {
    /// Runs `service` for the process `own` (not yet registered: `None`), while `leadership`
    /// says this process leads if the service is [`Service::LEADER_ONLY`].
    pub fn new(
        service: S,
        store: SharedStore,
        own: Option<ProcessId>,
        leadership: Leadership,
        logger: &Logger,
    ) -> Self {
        Periodic {
            service: Some(service.clone()),
            pristine: service,
            store,
            own,
            logger: logger.new(o!("actor" => S::NAME)),
            call: PeriodicCall::new(MAINTENANCE_MAX_BACKOFF),
            leadership,
            term: None,
            next_tick: None,
            _on_elected: None,
        }
    }

    /// Runs the next tick now instead of when it was scheduled (nothing if a pass is under
    /// way: its end schedules the next).
    fn tick_now(&mut self, ctx: &mut Context<Self>) {
        if let Some(next) = self.next_tick.take() {
            ctx.cancel_future(next);
            self.tick(ctx);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let lease = match (S::LEADER_ONLY, self.leadership.lease()) {
            (true, None) => {
                // Not the leader: nothing to do, which is progress.
                self.call.idle();
                self.schedule(ctx);
                return;
            }
            (true, lease) => lease,
            (false, _) => None,
        };
        if !self.call.begin() {
            // Backing off after a failed pass.
            self.schedule(ctx);
            return;
        }
        if let Some(lease) = lease.filter(|lease| self.term != Some(lease.term)) {
            // What the service remembered belongs to an earlier term (or to none).
            self.term = Some(lease.term);
            self.service = Some(self.pristine.clone());
        }
        let mut service = self.service.take().unwrap_or_else(|| self.pristine.clone());
        let own = self.own;
        let call = blocking(&self.store, move |store| {
            let pass = Pass { lease, ..Pass::now(own) };
            let outcome = match lease {
                Some(lease) => store.as_leader(lease, || service.run_once(store, pass)),
                None => service.run_once(store, pass),
            };
            Ok((service, outcome))
        });
        ctx.spawn(call.into_actor(self).map(|result, act, ctx| {
            let outcome = match result {
                Ok((service, outcome)) => {
                    act.service = Some(service);
                    outcome
                }
                Err(lost) => Err(lost),
            };
            match outcome {
                Ok(outcome) => {
                    act.call.succeeded(&act.logger);
                    S::report(&outcome, &act.logger);
                }
                Err(StoreError::Deposed { term }) => {
                    if act.leadership.deposed(term) {
                        warn!(act.logger, "another process was elected leader: this process stops its maintenance sweeps";
                            "term" => term);
                    }
                    act.call.succeeded(&act.logger);
                }
                Err(err) => act.call.failed(&act.logger, S::NAME, &err),
            }
            act.schedule(ctx);
        }));
    }

    /// Ticks again when the service wants its next pass, or when a backoff ends if later.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let service = self.service.as_ref().unwrap_or(&self.pristine);
        let mut delay = service.next_pass_in();
        if let Some(retry_at) = self.call.retry_at() {
            delay = delay.max(retry_at.saturating_duration_since(std::time::Instant::now()));
        }
        self.next_tick = Some(ctx.run_later(delay, |act, ctx| {
            act.next_tick = None;
            act.tick(ctx);
        }));
    }
}

impl<S: Service> Actor for Periodic<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if S::LEADER_ONLY {
            let addr = ctx.address();
            let wake: std::sync::Arc<dyn Fn() + Send + Sync> = std::sync::Arc::new(move || addr.do_send(TickNow));
            self.leadership.on_elected(&wake);
            self._on_elected = Some(wake);
        }
        self.tick(ctx);
    }
}

impl<S: Service> Handler<SetProcess> for Periodic<S> {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, ctx: &mut Context<Self>) {
        if msg.0.is_some() {
            let first = self.own.is_none();
            self.own = msg.0;
            if first {
                // The election need not wait for its next try to stand.
                self.tick_now(ctx);
            }
        }
    }
}

impl<S: Service> Handler<TickNow> for Periodic<S> {
    type Result = ();
    fn handle(&mut self, _: TickNow, ctx: &mut Context<Self>) {
        self.tick_now(ctx);
    }
}

answer_the_supervisor!(Periodic<S> where S: Service, |this| this.call.last_progress);
