//! Watchdog: finds dead processes and hands their claims back; every process runs one.
//!
//! A process is dead when any of these says so, fastest first:
//! - its database session ended: its session lock (PostgreSQL advisory lock) is free, seen on
//!   two sweeps at least [`SESSION_CONFIRMATION`] apart, so that a live process whose lock
//!   connection dropped with a database restart has time to take its lock again;
//! - it was registered from this host, boot and PID namespace and its pid no longer runs
//!   (see [`crate::liveness`]);
//! - its heartbeat is older than the alive threshold (the fallback that always applies).
//!
//! Reaping is one store transaction per process; several watchdogs never double-release.
//! Each sweep also returns claims whose process row is missing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{NaiveDateTime, Utc};
use slog::{o, warn, Logger};

use super::messages::{Ping, SetProcess, StopChild};
use super::{blocking, PeriodicCall};
use crate::liveness::{self, HostIdentity};
use crate::store::{DeathCause, DeathPolicy, ProcessId, SharedStore, Store, StoreResult};

/// How long a session lock must stay free before its process counts as dead.
pub const SESSION_CONFIRMATION: Duration = Duration::from_millis(400);

/// Settings of a sweep.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Heartbeats older than this mean death.
    pub alive_threshold: Duration,
    /// What happens to a dead process's claims.
    pub policy: DeathPolicy,
    /// How long a free session lock must stay free.
    pub session_confirmation: Duration,
    /// Whether to check the pids of processes registered from this host and PID namespace.
    pub pid_probe: bool,
}

/// Processes whose session lock was found free, and since when (monotonic clock).
#[derive(Debug, Default)]
pub struct SessionSuspects(HashMap<ProcessId, Instant>);

/// One process reaped by a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Its id.
    pub process: ProcessId,
    /// Its name.
    pub name: String,
    /// Why it was judged dead.
    pub cause: String,
    /// Claims returned to ready.
    pub retried: usize,
    /// Claims moved to failed.
    pub failed: usize,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Processes removed by this sweep.
    pub reaped: Vec<Reaped>,
    /// Claims without a process row returned to ready.
    pub orphans_released: usize,
}

/// One watchdog pass. `own` is never judged; `now` is the wall clock for heartbeat ages,
/// `clock` the monotonic clock for session confirmation.
pub fn sweep(
    store: &dyn Store,
    own: Option<ProcessId>,
    host: &HostIdentity,
    settings: &SweepSettings,
    suspects: &mut SessionSuspects,
    now: NaiveDateTime,
    clock: Instant,
) -> StoreResult<SweepOutcome> {
    let threshold = chrono::Duration::from_std(settings.alive_threshold).unwrap_or(chrono::Duration::MAX);
    let cutoff = now - threshold;
    let others: Vec<_> = store.processes()?.into_iter().filter(|p| Some(p.id) != own).collect();

    let mut verdicts: Vec<(ProcessId, String, DeathCause)> = Vec::new();
    let mut undecided = Vec::new();
    for row in &others {
        if row.last_heartbeat_at < cutoff {
            verdicts.push((row.id, row.name.clone(), DeathCause::HeartbeatOlderThan(cutoff)));
        } else if let Some(reason) = liveness::local_death(row, host).filter(|_| settings.pid_probe) {
            verdicts.push((row.id, row.name.clone(), DeathCause::Proven(reason)));
        } else {
            undecided.push(row.id);
        }
    }

    let gone = if undecided.is_empty() { Vec::new() } else { store.sessions_gone(&undecided)? };
    suspects.0.retain(|id, _| gone.contains(id));
    for id in gone {
        let since = *suspects.0.entry(id).or_insert(clock);
        if clock.duration_since(since) >= settings.session_confirmation {
            let name = others.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
            let reason =
                format!("its database session ended (session lock free for {} ms)", (clock - since).as_millis());
            verdicts.push((id, name, DeathCause::Proven(reason)));
            suspects.0.remove(&id);
        }
    }

    let mut outcome = SweepOutcome::default();
    for (process, name, cause) in verdicts {
        let reaped = store.reap_process(process, &cause, settings.policy, now)?;
        if reaped.reaped {
            let cause = match cause {
                DeathCause::HeartbeatOlderThan(cutoff) => format!("no heartbeat since before {cutoff}"),
                DeathCause::Proven(reason) => reason,
            };
            outcome.reaped.push(Reaped { process, name, cause, retried: reaped.retried, failed: reaped.failed });
        }
    }
    outcome.orphans_released = store.release_orphans(now)?;
    Ok(outcome)
}

/// The watchdog actor.
pub struct Watchdog {
    store: SharedStore,
    settings: SweepSettings,
    interval: Duration,
    host: HostIdentity,
    own: Option<ProcessId>,
    suspects: Option<SessionSuspects>,
    logger: Logger,
    call: PeriodicCall,
}

impl Watchdog {
    /// A watchdog sweeping every `interval`.
    pub fn new(
        store: SharedStore,
        settings: SweepSettings,
        interval: Duration,
        own: Option<ProcessId>,
        logger: &Logger,
    ) -> Self {
        Watchdog {
            store,
            settings,
            interval,
            host: HostIdentity::current(),
            own,
            suspects: Some(SessionSuspects::default()),
            logger: logger.new(o!("actor" => "watchdog")),
            call: PeriodicCall::new(Duration::from_secs(4)),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.call.begin() {
            return;
        }
        let (own, host, settings) = (self.own, self.host.clone(), self.settings.clone());
        let mut suspects = self.suspects.take().unwrap_or_default();
        let call = blocking(&self.store, move |s| {
            let result = sweep(s, own, &host, &settings, &mut suspects, Utc::now().naive_utc(), Instant::now());
            Ok((result, suspects))
        });
        ctx.spawn(call.into_actor(self).map(|result, act, _| {
            let result = match result {
                Ok((result, suspects)) => {
                    act.suspects = Some(suspects);
                    result
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(outcome) => {
                    act.call.succeeded(&act.logger);
                    for r in &outcome.reaped {
                        warn!(act.logger, "dead process reaped"; "process_id" => r.process, "name" => &r.name,
                            "cause" => &r.cause, "retried" => r.retried, "failed" => r.failed);
                    }
                    if outcome.orphans_released > 0 {
                        warn!(act.logger, "claims without a process returned to ready"; "released" => outcome.orphans_released);
                    }
                }
                Err(err) => act.call.failed(&act.logger, "looking for dead processes", &err),
            }
        }));
    }
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<SetProcess> for Watchdog {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, _: &mut Context<Self>) {
        if msg.0.is_some() {
            self.own = msg.0;
        }
    }
}

impl Handler<Ping> for Watchdog {
    type Result = MessageResult<Ping>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.call.last_progress)
    }
}

impl Handler<StopChild> for Watchdog {
    type Result = ();
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
