//! The children: how each is built (on an arbiter of its own), named, checked for progress,
//! and restarted with backoff when it stops, panics or gets stuck.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use slog::{error, info, warn, Logger};

use super::{
    Child, ChildKind, Running, Supervisor, SupervisorSettings, CHECK_INTERVAL, MAX_RESTART_BACKOFF,
    MIN_RESTART_BACKOFF, PAUSE_AFTER, PING_INTERVAL, STABLE_AFTER,
};
use crate::actors::blocking;
use crate::actors::claim_book::release_all;
use crate::actors::completer::{self, Completer};
use crate::actors::heartbeat::Heartbeat;
use crate::actors::periodic::Periodic;
use crate::actors::worker::{StopClaiming, Worker, WorkerContext};
use crate::actors::{Ping, StopChild};
use crate::maintenance::blocked_sweep::BlockedSweep;
use crate::maintenance::cleaner::Cleaner;
use crate::maintenance::dispatcher::Dispatcher;
use crate::maintenance::election::{self, Election};
use crate::maintenance::latency_alarm::{LatencyAlarm, LatencyAlarmConfig};
use crate::maintenance::scheduler::Scheduler;
use crate::maintenance::tidier::Tidier;
use crate::maintenance::watchdog::Watchdog;
use crate::maintenance::Service;
use crate::model::ProcessId;
use crate::store::{Leadership, SharedStore};

/// How long `kind` may go without progress before it counts as stuck: at least
/// `stuck_after`, and at least ten of its own ticks (three for the heartbeat, which ticks once
/// per heartbeat interval).
pub(super) fn stuck_limit(settings: &SupervisorSettings, kind: ChildKind) -> Duration {
    let ticks = match kind {
        ChildKind::Heartbeat => settings.heartbeat.interval * 3,
        ChildKind::Worker(i) => settings.workers[i].polling_interval * 10,
        ChildKind::Completer => completer::RETRY_TICK * 10,
        ChildKind::Dispatcher => settings.dispatcher.interval * 10,
        ChildKind::Watchdog => settings.watchdog.interval * 10,
        // It sleeps up to one reload interval between passes.
        ChildKind::Scheduler => settings.scheduler.as_ref().map_or(Duration::ZERO, |s| s.reload_interval * 3),
        ChildKind::BlockedSweep => BlockedSweep.interval() * 10,
        ChildKind::Cleaner => settings.cleaner.as_ref().map_or(Duration::ZERO, |c| c.interval() * 10),
        ChildKind::Tidier => Tidier.interval() * 10,
        ChildKind::LatencyAlarm => settings.latency_alarm.as_ref().map_or(Duration::ZERO, |a| a.interval * 10),
        ChildKind::Election => election::MAX_CANDIDATE_INTERVAL * 3,
    };
    settings.stuck_after.max(ticks)
}

/// Starts `service` under a [`Periodic`] actor on `handle`'s arbiter.
fn periodic<S: Service>(
    arbiter: Arbiter,
    service: S,
    (handle, store, process, logger, leadership): (&ArbiterHandle, SharedStore, Option<ProcessId>, &Logger, Leadership),
) -> Running {
    let logger = logger.clone();
    let addr = Periodic::start_in_arbiter(handle, move |_| Periodic::new(service, store, process, leadership, &logger));
    Running::new(arbiter, &addr)
}

impl Supervisor {
    /// One child per part the settings ask for, none running yet.
    pub(super) fn children_of(settings: &SupervisorSettings) -> Vec<Child> {
        let mut kinds = vec![ChildKind::Heartbeat, ChildKind::Election];
        kinds.extend((0..settings.workers.len()).map(ChildKind::Worker));
        kinds.extend([ChildKind::Completer, ChildKind::Dispatcher, ChildKind::Watchdog, ChildKind::BlockedSweep]);
        kinds.push(ChildKind::Tidier);
        if settings.latency_alarm.is_some() {
            kinds.push(ChildKind::LatencyAlarm);
        }
        if settings.scheduler.is_some() {
            kinds.push(ChildKind::Scheduler);
        }
        if settings.cleaner.is_some() {
            kinds.push(ChildKind::Cleaner);
        }
        kinds
            .into_iter()
            .map(|kind| (kind, stuck_limit(settings, kind)))
            .map(|(kind, stuck_after)| Child {
                kind,
                running: None,
                restarts: 0,
                backoff: MIN_RESTART_BACKOFF,
                restart_at: None,
                ping_in_flight: false,
                stuck_after,
                seat: 0,
            })
            .collect()
    }

    pub(super) fn spawn(&self, index: usize, me: &Addr<Self>) -> Running {
        let child = &self.children[index];
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let (store, logger, process) = (self.store.clone(), self.root_logger.clone(), self.process);
        let leadership = self.settings.telemetry.metrics.leadership.clone();
        let run = (&handle, store.clone(), process, &logger, leadership);
        match child.kind {
            ChildKind::Heartbeat => {
                let settings = self.settings.heartbeat.clone();
                let (replaced, fenced) = (me.clone().recipient(), me.clone().recipient());
                let abandoned = self.registry.abandoned().clone();
                let telemetry = self.settings.telemetry.clone();
                let addr = Heartbeat::start_in_arbiter(&handle, move |_| {
                    Heartbeat::new(settings, store, replaced, fenced, process, abandoned, &logger)
                        .reporting_to(telemetry)
                });
                Running { heartbeat: Some(addr.clone()), ..Running::new(arbiter, &addr) }
            }
            ChildKind::Worker(i) => {
                let settings = self.settings.workers[i].clone();
                let executions = match &self.executions {
                    Some(arbiter) => arbiter.handle(),
                    None => handle.clone(),
                };
                let kinds = Arc::new(self.registry.kinds().into_iter().map(String::from).collect());
                let (registry, book) = (self.registry.clone(), self.claims.clone());
                let listening = self.listener.is_some();
                let shared = WorkerContext { store, registry, book, executions, kinds, listening };
                let seat = child.seat;
                let addr = Worker::start_in_arbiter(&handle, move |_| {
                    Worker::new(settings, shared, (i, seat), process, &logger)
                });
                if self.fenced || self.stopping {
                    addr.do_send(StopClaiming);
                }
                Running { worker: Some(addr.clone()), ..Running::new(arbiter, &addr) }
            }
            ChildKind::Completer => {
                let book = self.claims.clone();
                let addr = Completer::start_in_arbiter(&handle, move |_| Completer::new(store, book, process, &logger));
                Running::new(arbiter, &addr)
            }
            ChildKind::Dispatcher => periodic(arbiter, Dispatcher::new(self.settings.dispatcher.clone()), run),
            ChildKind::Watchdog => {
                let watchdog =
                    Watchdog::new(self.settings.watchdog.clone()).reporting_to(self.settings.telemetry.clone());
                periodic(arbiter, watchdog, run)
            }
            ChildKind::Scheduler => {
                let config = self.settings.scheduler.clone().unwrap_or_default();
                periodic(arbiter, Scheduler::new(config).reporting_to(self.settings.telemetry.clone()), run)
            }
            ChildKind::BlockedSweep => periodic(arbiter, BlockedSweep, run),
            ChildKind::Cleaner => periodic(arbiter, self.settings.cleaner.clone().unwrap_or_default(), run),
            ChildKind::Tidier => periodic(arbiter, Tidier, run),
            ChildKind::Election => {
                let election = Election::new(self.settings.election.clone(), run.4.clone());
                periodic(arbiter, election, run)
            }
            ChildKind::LatencyAlarm => {
                let config = self.settings.latency_alarm.clone().unwrap_or(LatencyAlarmConfig {
                    threshold: Duration::MAX,
                    interval: crate::maintenance::latency_alarm::DEFAULT_INTERVAL,
                });
                periodic(arbiter, LatencyAlarm::new(config).reporting_to(self.settings.telemetry.clone()), run)
            }
        }
    }

    pub(super) fn child_name(kind: ChildKind) -> String {
        match kind {
            ChildKind::Heartbeat => "heartbeat".into(),
            ChildKind::Worker(i) => format!("worker-{i}"),
            ChildKind::Completer => "completer".into(),
            ChildKind::Dispatcher => Dispatcher::NAME.into(),
            ChildKind::Watchdog => Watchdog::NAME.into(),
            ChildKind::Scheduler => Scheduler::NAME.into(),
            ChildKind::BlockedSweep => BlockedSweep::NAME.into(),
            ChildKind::Cleaner => Cleaner::NAME.into(),
            ChildKind::Tidier => Tidier::NAME.into(),
            ChildKind::LatencyAlarm => LatencyAlarm::NAME.into(),
            ChildKind::Election => Election::NAME.into(),
        }
    }

    /// Takes a child down (it stopped, panicked or is stuck) and schedules its restart.
    pub(super) fn schedule_restart(&mut self, index: usize, why: &str) {
        let child = &mut self.children[index];
        let Some(old) = child.running.take() else { return };
        old.stop.do_send(StopChild);
        self.stopped.stop(old.arbiter);
        if old.started_at.elapsed() > STABLE_AFTER {
            child.backoff = MIN_RESTART_BACKOFF;
        }
        let delay = child.backoff;
        child.backoff = (child.backoff * 2).min(MAX_RESTART_BACKOFF);
        child.restart_at = Some(Instant::now() + delay);
        child.ping_in_flight = false;
        let name = Self::child_name(child.kind);
        error!(self.logger, "child actor is down; restarting"; "child" => &name, "reason" => why,
            "restart_in_ms" => delay.as_millis() as u64, "restarts_so_far" => child.restarts);
        // Claims the replaced worker took but never started: nobody will run them. Running
        // executions stay with the process; the replacement counts them.
        let unstarted = self.claims.retire(child.seat);
        if !unstarted.is_empty() {
            let logger = self.logger.clone();
            let call = blocking(&self.store, move |s| release_all(s, &unstarted, Utc::now().naive_utc()));
            actix_rt::spawn(async move {
                match call.await {
                    Ok(outcome) => warn!(logger, "unstarted claims of the replaced worker returned to ready";
                        "child" => name, "released" => outcome.released, "fenced" => outcome.fenced),
                    Err(err) => error!(logger,
                        "could not release the replaced worker's unstarted claims; they go back when this process deregisters or dies";
                        "child" => name, "error" => %err),
                }
            });
        }
    }

    /// Notes a pause: the checks came late by more than [`PAUSE_AFTER`], so the process (or
    /// this thread) did not run and its children could not make progress either.
    pub(super) fn observe_pause(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_check);
        if gap > CHECK_INTERVAL + PAUSE_AFTER {
            warn!(self.logger, "this process did not run for a while (stopped, frozen or starved of CPU); children's progress counts from now";
                "paused_ms" => gap.as_millis() as u64);
            self.resumed_at = now;
            self.last_check = now;
        }
    }

    /// Whether a child whose loop last progressed at `last_progress` is stuck: no progress for
    /// longer than `limit` while the process ran.
    pub(super) fn stuck(&self, last_progress: Instant, limit: Duration) -> bool {
        last_progress.max(self.resumed_at).elapsed() > limit
    }

    pub(super) fn check_children(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        self.observe_pause(now);
        self.last_check = now;
        let ping_now = now.duration_since(self.last_ping) >= PING_INTERVAL;
        if ping_now {
            self.last_ping = now;
        }
        for index in 0..self.children.len() {
            let child = &self.children[index];
            match &child.running {
                None => {
                    if child.restart_at.is_some_and(|at| now >= at) {
                        self.start_child(index, ctx);
                    }
                }
                Some(running) if !running.ping.connected() => {
                    self.schedule_restart(index, "its mailbox closed (it stopped or panicked)");
                }
                Some(running) if ping_now && !child.ping_in_flight => {
                    let request = running.ping.send(Ping).timeout(child.stuck_after);
                    let stuck_after = child.stuck_after;
                    self.children[index].ping_in_flight = true;
                    ctx.spawn(request.into_actor(self).map(move |answer, act, _| {
                        act.children[index].ping_in_flight = false;
                        // An answer (or a timeout) that spans a pause says nothing about the child.
                        act.observe_pause(Instant::now());
                        if act.resumed_at > now {
                            return;
                        }
                        let stuck = match answer {
                            Ok(last_progress) => act.stuck(last_progress, stuck_after),
                            Err(MailboxError::Timeout) => true,
                            Err(MailboxError::Closed) => false,
                        };
                        if stuck && !act.stopping {
                            act.schedule_restart(index, "it made no progress for too long (stuck)");
                        }
                    }));
                }
                Some(_) => {}
            }
        }
    }

    pub(super) fn start_child(&mut self, index: usize, ctx: &mut Context<Self>) {
        self.children[index].seat = self.claims.seat();
        let running = self.spawn(index, &ctx.address());
        let child = &mut self.children[index];
        if child.restart_at.take().is_some() {
            child.restarts += 1;
            info!(self.logger, "child actor restarted"; "child" => Self::child_name(child.kind), "restarts" => child.restarts);
        }
        child.running = Some(running);
    }

    pub(super) fn workers(&self) -> Vec<Addr<Worker>> {
        self.children.iter().filter_map(|c| c.running.as_ref().and_then(|r| r.worker.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::heartbeat::HeartbeatSettings;
    use crate::actors::worker::WorkerSettings;
    use crate::maintenance::dispatcher::DispatcherConfig;
    use crate::maintenance::watchdog::WatchdogConfig;
    use crate::model::QueuePattern;
    use crate::model::WorkerGroup;

    #[test]
    fn no_child_counts_as_stuck_between_two_of_its_ticks() {
        let settings = SupervisorSettings {
            workers: vec![WorkerSettings {
                group: WorkerGroup { queues: vec![QueuePattern::All], concurrency: 1 },
                polling_interval: Duration::from_millis(100),
            }],
            heartbeat: HeartbeatSettings {
                interval: Duration::from_secs(30),
                alive_threshold: Duration::from_secs(300),
                details: Default::default(),
            },
            dispatcher: DispatcherConfig::default(),
            watchdog: WatchdogConfig::default(),
            scheduler: None,
            cleaner: Some(Cleaner::default()),
            shutdown_timeout: Duration::from_secs(5),
            stuck_after: Duration::from_secs(15),
            standalone: false,
            latency_alarm: None,
            election: Default::default(),
            telemetry: Default::default(),
        };
        // The heartbeat beats every 30 s: a 15 s limit would restart it while idle.
        assert_eq!(stuck_limit(&settings, ChildKind::Heartbeat), Duration::from_secs(90));
        assert_eq!(stuck_limit(&settings, ChildKind::Worker(0)), Duration::from_secs(15));
        assert_eq!(stuck_limit(&settings, ChildKind::Dispatcher), Duration::from_secs(15));
        let slow = SupervisorSettings {
            dispatcher: DispatcherConfig { interval: Duration::from_secs(60), ..DispatcherConfig::default() },
            ..settings
        };
        assert_eq!(stuck_limit(&slow, ChildKind::Dispatcher), Duration::from_secs(600));
    }
}
