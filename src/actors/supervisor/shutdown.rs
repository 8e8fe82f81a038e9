//! The shutdown sequence: stop claiming → wait for running jobs and their outcomes up to the
//! shutdown timeout → deregister (claims still open go back to ready) → stop the children.

use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{info, warn};

use super::{Shutdown, ShutdownReport, Supervisor};
use crate::actors::heartbeat::Deregister;
use crate::actors::worker::StopClaiming;
use crate::actors::StopChild;
use crate::job::CancelReason;

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let workers = self.workers();
        workers.iter().for_each(|w| w.do_send(StopClaiming));
        let timeout = if msg.immediate { Duration::ZERO } else { self.settings.shutdown_timeout };
        let heartbeat = self.children.iter().find_map(|c| c.running.as_ref().and_then(|r| r.heartbeat.clone()));
        let deregister = !msg.immediate;
        let (logger, book) = (self.logger.clone(), self.claims.clone());
        let drain = async move {
            let deadline = Instant::now() + timeout;
            while book.open() > 0 && Instant::now() < deadline {
                actix_rt::time::sleep(Duration::from_millis(25)).await;
            }
            let open = book.open();
            if open > 0 && deregister {
                warn!(logger, "shutdown timeout reached with jobs still running or unrecorded; their claims are released";
                    "open" => open);
            }
            // Nobody waits for them any more: handlers that watch their token may stop.
            book.cancel_all(CancelReason::Shutdown);
            let mut report = ShutdownReport { abandoned: open, ..Default::default() };
            // Workers stop before deregistering so nothing claims after.
            workers.iter().for_each(|w| w.do_send(StopChild));
            if let (true, Some(heartbeat)) = (deregister, heartbeat) {
                if let Ok(Ok(released)) = heartbeat.send(Deregister).await {
                    report.released = released;
                    report.deregistered = true;
                    let cut_short = book.clear();
                    if !cut_short.is_empty() {
                        warn!(logger, "claims still open went back to ready without using an attempt; outcomes that arrive later are dropped";
                            "job_ids" => ?cut_short);
                    }
                }
            }
            report
        };
        Box::pin(drain.into_actor(self).map(|report, act, ctx| {
            for child in act.children.iter_mut() {
                if let Some(running) = child.running.take() {
                    running.stop.do_send(StopChild);
                    act.stopped.stop(running.arbiter);
                }
            }
            act.registry.stop_all();
            act.stop_listening();
            if let Some(executions) = act.executions.take() {
                act.stopped.stop(executions);
            }
            info!(act.logger, "stopped"; "abandoned" => report.abandoned, "released" => report.released,
                "deregistered" => report.deregistered);
            ctx.stop();
            if act.settings.standalone {
                System::current().stop_with_code(0);
            }
            report
        }))
    }
}
