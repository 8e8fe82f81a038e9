//! Periodic: the one actor that runs a maintenance [`Service`] on its schedule. It only ticks,
//! runs one pass at a time on the blocking pool (the next starts when the service asks, after
//! the last ended), backs off on database errors (logging the 1st, 2nd, 4th, 8th… failure, not
//! every tick) and has the service report what a pass did; what a pass does is the service's.

use actix::prelude::*;
use slog::{o, Logger};

use super::{answer_the_supervisor, blocking, PeriodicCall, SetProcess, MAINTENANCE_MAX_BACKOFF};
use crate::maintenance::{Pass, Service};
use crate::model::ProcessId;
use crate::store::SharedStore;

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
}

impl<S: Service> Periodic<S> {
    /// Runs `service` for the process `own` (not yet registered: `None`).
    pub fn new(service: S, store: SharedStore, own: Option<ProcessId>, logger: &Logger) -> Self {
        Periodic {
            service: Some(service.clone()),
            pristine: service,
            store,
            own,
            logger: logger.new(o!("actor" => S::NAME)),
            call: PeriodicCall::new(MAINTENANCE_MAX_BACKOFF),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.call.begin() {
            // Backing off after a failed pass.
            self.schedule(ctx);
            return;
        }
        let mut service = self.service.take().unwrap_or_else(|| self.pristine.clone());
        let own = self.own;
        let call = blocking(&self.store, move |store| {
            let outcome = service.run_once(store, Pass::now(own));
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
        ctx.run_later(delay, |act, ctx| act.tick(ctx));
    }
}

impl<S: Service> Actor for Periodic<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl<S: Service> Handler<SetProcess> for Periodic<S> {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, _: &mut Context<Self>) {
        if msg.0.is_some() {
            self.own = msg.0;
        }
    }
}

answer_the_supervisor!(Periodic<S> where S: Service, |this| this.call.last_progress);
