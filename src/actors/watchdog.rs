//! Watchdog: finds dead processes and hands their claims back; every process runs one.
//!
//! A process is dead when any of these says so, fastest first:
//! - its database session ended: its session lock (PostgreSQL advisory lock) is free, seen on
//!   two sweeps at least [`SESSION_CONFIRMATION`] apart, so that a live process whose lock
//!   connection dropped with a database restart has time to take its lock again;
//! - it was registered from this host, boot and PID namespace and its pid no longer runs
//!   (see [`crate::liveness`]);
//! - its heartbeat is older than the alive threshold (the fallback that always applies), counted
//!   from when this watchdog last regained sight of the database: time during which the judge
//!   itself could not reach the database (an outage, or this process frozen) is no evidence
//!   against anyone, since nobody may have been able to write a heartbeat either. After such a
//!   gap every process gets a whole threshold to beat again before its age can condemn it. A
//!   process that stops beating while the database is up is still reaped at the threshold.
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
    /// The longest time between two sweeps that reached the database that still counts as
    /// watching it without a break; after a longer gap, heartbeat ages count from the sweep
    /// that ended it.
    pub observation_gap: Duration,
}

impl SweepSettings {
    /// The observation gap for a watchdog sweeping every `interval` with `alive_threshold`:
    /// four intervals but at least 5 s (a slow sweep is no blind spot), and at most a quarter
    /// of the threshold (a gap that long could hide heartbeats nobody was able to write).
    pub fn observation_gap_for(interval: Duration, alive_threshold: Duration) -> Duration {
        (interval * 4).max(Duration::from_secs(5)).min(alive_threshold / 4)
    }
}

/// What a watchdog remembers between sweeps: processes whose session lock was found free, and
/// since when, and how long it has watched the database without a break (monotonic clock).
#[derive(Debug, Default)]
pub struct SweepState {
    suspects: HashMap<ProcessId, Instant>,
    /// When the current unbroken watch of the database began; `None` until the first sweep.
    watching_since: Option<Instant>,
    /// When a sweep last reached the database.
    last_seen: Option<Instant>,
    /// A sweep failed since then.
    broken: bool,
}

impl SweepState {
    /// Records that the database answered at `clock`; returns how long the judge had been
    /// blind before, if that broke its watch (not on the first sweep).
    fn saw_database(&mut self, clock: Instant, gap: Duration) -> Option<Duration> {
        let blind_for = self.last_seen.map(|seen| clock.saturating_duration_since(seen));
        self.last_seen = Some(clock);
        let broken = std::mem::take(&mut self.broken) || blind_for.is_some_and(|blind| blind > gap);
        if self.watching_since.is_none() || broken {
            self.watching_since = Some(clock);
            return blind_for.filter(|_| broken);
        }
        None
    }

    /// The database did not answer: the watch is broken until it does again.
    pub fn lost_sight(&mut self) {
        self.broken = true;
    }

    /// How long the database has been watched without a break at `clock`.
    fn watched_for(&self, clock: Instant) -> Duration {
        self.watching_since.map_or(Duration::ZERO, |since| clock.saturating_duration_since(since))
    }
}

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
    /// Set when this sweep ended a gap in which the database could not be watched: how long
    /// the gap was. Heartbeat ages count from this sweep.
    pub watch_resumed_after: Option<Duration>,
}

/// One watchdog pass. `own` is never judged; `now` is the wall clock for heartbeat ages,
/// `clock` the monotonic clock for session confirmation and for how long the database has been
/// watched. A failed pass breaks the watch: the caller passes the same `state` on.
pub fn sweep(
    store: &dyn Store,
    own: Option<ProcessId>,
    host: &HostIdentity,
    settings: &SweepSettings,
    state: &mut SweepState,
    now: NaiveDateTime,
    clock: Instant,
) -> StoreResult<SweepOutcome> {
    let result = sweep_watching(store, own, host, settings, state, now, clock);
    // A failed sweep, or one the database was too slow to answer, is a blind spot.
    if result.is_err() || clock.elapsed() > settings.observation_gap {
        state.lost_sight();
    }
    result
}

fn sweep_watching(
    store: &dyn Store,
    own: Option<ProcessId>,
    host: &HostIdentity,
    settings: &SweepSettings,
    state: &mut SweepState,
    now: NaiveDateTime,
    clock: Instant,
) -> StoreResult<SweepOutcome> {
    let threshold = chrono::Duration::from_std(settings.alive_threshold).unwrap_or(chrono::Duration::MAX);
    let cutoff = now.checked_sub_signed(threshold).unwrap_or(NaiveDateTime::MIN);
    let others: Vec<_> = store.processes()?.into_iter().filter(|p| Some(p.id) != own).collect();
    let watch_resumed_after = state.saw_database(clock, settings.observation_gap);
    // Ages count from the start of the unbroken watch: until it has lasted a whole threshold,
    // no heartbeat is too old.
    let judge_ages = state.watched_for(clock) >= settings.alive_threshold;

    let mut verdicts: Vec<(ProcessId, String, DeathCause)> = Vec::new();
    let mut undecided = Vec::new();
    for row in &others {
        if judge_ages && row.last_heartbeat_at < cutoff {
            let deadline = Some(clock + settings.observation_gap);
            verdicts.push((row.id, row.name.clone(), DeathCause::HeartbeatOlderThan { cutoff, deadline }));
        } else if let Some(reason) = liveness::local_death(row, host).filter(|_| settings.pid_probe) {
            verdicts.push((row.id, row.name.clone(), DeathCause::Proven(reason)));
        } else {
            undecided.push(row.id);
        }
    }

    let gone = if undecided.is_empty() { Vec::new() } else { store.sessions_gone(&undecided)? };
    let suspects = &mut state.suspects;
    suspects.retain(|id, _| gone.contains(id));
    for id in gone {
        let since = *suspects.entry(id).or_insert(clock);
        if clock.duration_since(since) >= settings.session_confirmation {
            let name = others.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
            let reason =
                format!("its database session ended (session lock free for {} ms)", (clock - since).as_millis());
            verdicts.push((id, name, DeathCause::Proven(reason)));
            suspects.remove(&id);
        }
    }

    let mut outcome = SweepOutcome { watch_resumed_after, ..SweepOutcome::default() };
    for (process, name, cause) in verdicts {
        let reaped = store.reap_process(process, &cause, settings.policy, now)?;
        if reaped.reaped {
            let cause = match cause {
                DeathCause::HeartbeatOlderThan { cutoff, .. } => format!("no heartbeat since before {cutoff}"),
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
    state: Option<SweepState>,
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
            state: Some(SweepState::default()),
            logger: logger.new(o!("actor" => "watchdog")),
            call: PeriodicCall::new(Duration::from_secs(4)),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.call.begin() {
            return;
        }
        let (own, host, settings) = (self.own, self.host.clone(), self.settings.clone());
        let mut state = self.state.take().unwrap_or_default();
        let call = blocking(&self.store, move |s| {
            let result = sweep(s, own, &host, &settings, &mut state, Utc::now().naive_utc(), Instant::now());
            Ok((result, state))
        });
        ctx.spawn(call.into_actor(self).map(|result, act, _| {
            let result = match result {
                Ok((result, state)) => {
                    act.state = Some(state);
                    result
                }
                Err(err) => {
                    let mut state = SweepState::default();
                    state.lost_sight();
                    act.state = Some(state);
                    Err(err)
                }
            };
            match result {
                Ok(outcome) => {
                    act.call.succeeded(&act.logger);
                    if let Some(blind) = outcome.watch_resumed_after {
                        warn!(act.logger, "the database could not be watched for a while; heartbeat ages count from now, so every process gets a full alive threshold to beat again";
                            "blind_ms" => u64::try_from(blind.as_millis()).unwrap_or(u64::MAX));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::NewProcess;

    const THRESHOLD: Duration = Duration::from_secs(10);

    fn settings() -> SweepSettings {
        SweepSettings {
            alive_threshold: THRESHOLD,
            policy: DeathPolicy::Retry,
            session_confirmation: Duration::ZERO,
            pid_probe: false,
            observation_gap: Duration::from_secs(2),
        }
    }

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap().naive_utc()
    }

    /// A store with one process that last beat at `at(0)` and never again.
    fn silent_process() -> (tempfile::TempDir, SqliteStore, ProcessId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.sqlite3"), 2).unwrap();
        store.migrate().unwrap();
        let row = NewProcess {
            kind: "Runtime".into(),
            name: "silent".into(),
            pid: 1,
            hostname: "elsewhere".into(),
            metadata: serde_json::Value::Null,
        };
        let id = store.register_process(&row, at(0)).unwrap();
        (dir, store, id)
    }

    /// Sweeps once a second from `from` to `to` seconds; returns the second it reaped at.
    fn sweep_each_second(
        store: &SqliteStore,
        state: &mut SweepState,
        start: Instant,
        from: i64,
        to: i64,
    ) -> Option<i64> {
        let host = HostIdentity::current();
        (from..=to).find(|&second| {
            let clock = start + Duration::from_secs(second as u64);
            let outcome = sweep(store, None, &host, &settings(), state, at(second), clock).unwrap();
            !outcome.reaped.is_empty()
        })
    }

    #[test]
    fn a_silent_process_is_reaped_once_the_watch_lasted_a_threshold() {
        let (_dir, store, _) = silent_process();
        let mut state = SweepState::default();
        let start = Instant::now();
        // Its heartbeat is already 60 s old at the first sweep, but this judge has only just
        // begun to watch: it waits one threshold, then reaps.
        assert_eq!(sweep_each_second(&store, &mut state, start, 60, 80), Some(70));
    }

    #[test]
    fn an_outage_of_the_judge_restarts_the_threshold_for_everyone() {
        let (_dir, store, _) = silent_process();
        let mut state = SweepState::default();
        let start = Instant::now();
        assert_eq!(sweep_each_second(&store, &mut state, start, 0, 8), None, "fresh heartbeat");
        // The database is unreachable from 9 s to 30 s: the sweeps fail.
        state.lost_sight();
        // Back at 30 s: the process's heartbeat is 30 s old, but nobody could beat meanwhile.
        let host = HostIdentity::current();
        let back =
            sweep(&store, None, &host, &settings(), &mut state, at(30), start + Duration::from_secs(30)).unwrap();
        assert!(back.reaped.is_empty(), "reaped on the first sweep after the outage");
        assert_eq!(back.watch_resumed_after, Some(Duration::from_secs(22)));
        // A process that still does not beat is reaped one threshold after the watch resumed.
        assert_eq!(sweep_each_second(&store, &mut state, start, 31, 50), Some(40));
    }

    #[test]
    fn a_judge_that_did_not_run_for_a_while_also_restarts_its_watch() {
        let (_dir, store, _) = silent_process();
        let mut state = SweepState::default();
        let start = Instant::now();
        assert_eq!(sweep_each_second(&store, &mut state, start, 0, 5), None);
        // Frozen from 5 s to 20 s without a failed sweep: a gap longer than the observation gap.
        assert_eq!(sweep_each_second(&store, &mut state, start, 20, 40), Some(30));
    }

    #[test]
    fn observation_gap_is_bounded_by_the_threshold() {
        let gap = SweepSettings::observation_gap_for;
        assert_eq!(gap(Duration::from_millis(500), Duration::from_secs(300)), Duration::from_secs(5));
        assert_eq!(gap(Duration::from_secs(60), Duration::from_secs(300)), Duration::from_secs(75));
        assert_eq!(gap(Duration::from_millis(500), Duration::from_secs(10)), Duration::from_millis(2500));
    }
}
