//! Dispatcher: moves due scheduled jobs (and retries whose backoff has passed) to ready, in
//! batches, every dispatcher polling interval.

use std::time::Duration;

use actix::prelude::*;
use chrono::{NaiveDateTime, Utc};
use slog::{debug, o, Logger};

use super::messages::{Ping, SetProcess, StopChild};
use super::{blocking, PeriodicCall};
use crate::store::{SharedStore, Store, StoreResult};

/// Most batches moved in one tick, so one tick never monopolises the writer.
pub const MAX_BATCHES_PER_TICK: usize = 20;

/// One dispatcher pass: moves due jobs batch by batch until a batch comes back short.
/// Returns how many jobs became ready.
pub fn dispatch_once(store: &dyn Store, now: NaiveDateTime, batch: usize) -> StoreResult<usize> {
    let mut moved = 0;
    for _ in 0..MAX_BATCHES_PER_TICK {
        let n = store.dispatch_due(now, batch)?;
        moved += n;
        if n < batch {
            break;
        }
    }
    Ok(moved)
}

/// The dispatcher actor.
pub struct Dispatcher {
    store: SharedStore,
    interval: Duration,
    batch: usize,
    logger: Logger,
    call: PeriodicCall,
}

impl Dispatcher {
    /// A dispatcher moving up to `batch` jobs per statement every `interval`.
    pub fn new(store: SharedStore, interval: Duration, batch: usize, logger: &Logger) -> Self {
        Dispatcher {
            store,
            interval,
            batch: batch.max(1),
            logger: logger.new(o!("actor" => "dispatcher")),
            call: PeriodicCall::new(Duration::from_secs(4)),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.call.begin() {
            return;
        }
        let batch = self.batch;
        let call = blocking(&self.store, move |s| dispatch_once(s, Utc::now().naive_utc(), batch));
        ctx.spawn(call.into_actor(self).map(|result, act, _| match result {
            Ok(moved) => {
                act.call.succeeded(&act.logger);
                if moved > 0 {
                    debug!(act.logger, "scheduled jobs dispatched"; "moved" => moved);
                }
            }
            Err(err) => act.call.failed(&act.logger, "dispatching scheduled jobs", &err),
        }));
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
        self.tick(ctx);
    }
}

impl Handler<SetProcess> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: SetProcess, _: &mut Context<Self>) {}
}

impl Handler<Ping> for Dispatcher {
    type Result = MessageResult<Ping>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.call.last_progress)
    }
}

impl Handler<StopChild> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
