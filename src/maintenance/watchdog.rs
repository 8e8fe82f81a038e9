//! Watchdog: finds dead processes and reaps them (hands their claims back); every process
//! runs one.
//!
//! A process is dead when any of these says so, fastest first:
//! - its database session ended: its session proof (a PostgreSQL advisory lock) is missing,
//!   seen on two passes at least [`DEFAULT_SESSION_CONFIRMATION`] apart, so that a live process
//!   whose lock connection dropped with a database restart has time to take its lock again;
//! - it was registered from this host, boot and PID namespace and its pid no longer runs
//!   (see `src/liveness.rs`);
//! - its heartbeat is older than the alive threshold (the fallback that always applies),
//!   counted from when this watchdog last regained sight of the database: time during which the
//!   judge itself could not reach the database (an outage, or this process frozen) is no
//!   evidence against anyone, since nobody may have been able to write a heartbeat either.
//!   After such a gap every process gets a whole threshold to beat again before its age can
//!   condemn it. A process that stops beating while the database is up is still reaped at the
//!   threshold.
//!
//! The dead are reaped in one transaction per pass (the row deletion decides, so several
//! watchdogs never double-release); now and then a pass also returns claims whose process row
//! is missing.
//!
//! Where the store sees every change to the database (SQLite, see `store::changes`), a pass
//! judges from the rows the last pass read while nothing was written since: heartbeat ages
//! and pids change with time, not with the rows. An idle process then reads nothing, and its
//! watch of the database is as unbroken as the store's watcher's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slog::{warn, Logger};

use super::{Pass, Service};
use crate::events::Event;
use crate::liveness::{self, HostIdentity};
use crate::metrics::Telemetry;
use crate::model::{DeathPolicy, ProcessId, ProcessRow};
use crate::store::changes::ChangeMark;
use crate::store::{DeathCause, Store, StoreResult};

/// Default time between passes (`SOLIDQ_WATCHDOG_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default alive threshold (`SOLIDQ_ALIVE_THRESHOLD`).
pub const DEFAULT_ALIVE_THRESHOLD: Duration = Duration::from_secs(300);
/// How long a session proof must stay missing before its process counts as dead.
pub const DEFAULT_SESSION_CONFIRMATION: Duration = Duration::from_millis(400);

/// How the watchdog judges.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Heartbeats older than this mean death.
    pub alive_threshold: Duration,
    /// What happens to a dead process's claims.
    pub policy: DeathPolicy,
    /// How long a missing session proof must stay missing.
    pub session_confirmation: Duration,
    /// Whether to check the pids of processes registered from this host and PID namespace.
    pub pid_probe: bool,
    /// The longest time between two passes that reached the database that still counts as
    /// watching it without a break; after a longer gap, heartbeat ages count from the pass
    /// that ended it. [`WatchdogConfig::observation_gap_for`] gives the usual value.
    pub observation_gap: Duration,
}

impl WatchdogConfig {
    /// The observation gap for a watchdog passing every `interval` with `alive_threshold`:
    /// four intervals but at least 5 s (a slow pass is no blind spot), and at most a quarter
    /// of the threshold (a gap that long could hide heartbeats nobody was able to write).
    pub fn observation_gap_for(interval: Duration, alive_threshold: Duration) -> Duration {
        (interval * 4).max(Duration::from_secs(5)).min(alive_threshold / 4)
    }
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            interval: DEFAULT_INTERVAL,
            alive_threshold: DEFAULT_ALIVE_THRESHOLD,
            policy: DeathPolicy::Retry,
            session_confirmation: DEFAULT_SESSION_CONFIRMATION,
            pid_probe: true,
            observation_gap: Self::observation_gap_for(DEFAULT_INTERVAL, DEFAULT_ALIVE_THRESHOLD),
        }
    }
}

/// One process reaped by a pass.
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

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOutcome {
    /// Processes removed by this pass.
    pub reaped: Vec<Reaped>,
    /// Claims without a process row returned to ready.
    pub orphans_released: usize,
    /// Set when this pass ended a gap in which the database could not be watched: how long
    /// the gap was. Heartbeat ages count from this pass.
    pub watch_resumed_after: Option<Duration>,
}

/// The watchdog service, with what it remembers between passes: processes whose session proof
/// was found missing, and since when, and how long it has watched the database without a
/// break.
#[derive(Debug, Clone)]
pub struct Watchdog {
    config: WatchdogConfig,
    host: HostIdentity,
    suspects: HashMap<ProcessId, Instant>,
    /// When the current unbroken watch of the database began; `None` until the first pass.
    watching_since: Option<Instant>,
    /// When a pass last reached the database.
    last_seen: Option<Instant>,
    /// A pass failed since then.
    broken: bool,
    /// Passes that reached the database, for the orphan sweep.
    passes: u64,
    /// The process rows of the last read, and the database as it was then.
    seen: Option<(ChangeMark, Vec<ProcessRow>)>,
    /// The database as it was before the last orphan sweep: unchanged, a sweep finds nothing.
    swept: Option<ChangeMark>,
    /// Told of every process this watchdog prunes (counted, and an event).
    telemetry: Option<Telemetry>,
}

/// Every how many passes the watchdog sweeps for orphaned claims (the first pass does).
pub const ORPHAN_SWEEP_EVERY: u64 = 30;

impl Watchdog {
    /// A watchdog judging with `config`, from this host.
    pub fn new(config: WatchdogConfig) -> Self {
        Watchdog {
            config,
            host: HostIdentity::current(),
            suspects: HashMap::new(),
            watching_since: None,
            last_seen: None,
            broken: false,
            passes: 0,
            seen: None,
            swept: None,
            telemetry: None,
        }
    }

    /// Counts the processes this watchdog prunes and emits [`Event::ProcessPruned`] for each:
    /// the pass whose transaction deleted the row is the only one that reports it.
    pub(crate) fn reporting_to(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Every process row, read again unless the store can tell nothing changed since the
    /// last read; and when the database was last seen (now, or the store watcher's last look).
    fn process_rows(&mut self, store: &Store, pass: &Pass) -> StoreResult<(Vec<ProcessRow>, Instant)> {
        // Taken before the read: a write the read misses changes the mark.
        let mark = store.change_mark();
        if let (Some((seen_mark, rows)), Some((mark, watched_at))) = (&self.seen, mark) {
            if *seen_mark == mark {
                return Ok((rows.clone(), watched_at));
            }
        }
        self.seen = None;
        let rows = store.processes()?;
        self.seen = mark.map(|(mark, _)| (mark, rows.clone()));
        Ok((rows, pass.clock))
    }

    /// Records that the database answered at `clock`; returns how long the judge had been
    /// blind before, if that broke its watch (not on the first pass).
    fn saw_database(&mut self, clock: Instant) -> Option<Duration> {
        let blind_for = self.last_seen.map(|seen| clock.saturating_duration_since(seen));
        self.last_seen = Some(self.last_seen.map_or(clock, |seen| seen.max(clock)));
        let broken =
            std::mem::take(&mut self.broken) || blind_for.is_some_and(|blind| blind > self.config.observation_gap);
        if self.watching_since.is_none() || broken {
            self.watching_since = Some(clock);
            // A session seen gone before the break proves nothing after it: its process may
            // have been cut off with the rest and be taking its lock again.
            self.suspects.clear();
            return blind_for.filter(|_| broken);
        }
        None
    }

    /// The database did not answer (or answered too slowly to count): the watch is broken
    /// until it answers again.
    pub fn lost_sight(&mut self) {
        self.broken = true;
    }

    /// How long the database has been watched without a break at `clock`.
    fn watched_for(&self, clock: Instant) -> Duration {
        self.watching_since.map_or(Duration::ZERO, |since| clock.saturating_duration_since(since))
    }

    fn judge(&mut self, store: &Store, pass: Pass) -> StoreResult<WatchOutcome> {
        let threshold = chrono::Duration::from_std(self.config.alive_threshold).unwrap_or(chrono::Duration::MAX);
        let cutoff = pass
            .now
            .checked_sub_signed(threshold)
            .map_or(crate::model::earliest_time(), |cutoff| cutoff.max(crate::model::earliest_time()));
        let (rows, seen_at) = self.process_rows(store, &pass)?;
        let others: Vec<_> = rows.into_iter().filter(|p| Some(p.id) != pass.own).collect();
        let watch_resumed_after = self.saw_database(seen_at);
        // Ages count from the start of the unbroken watch: until it has lasted a whole
        // threshold, no heartbeat is too old.
        let judge_ages = self.watched_for(pass.clock) >= self.config.alive_threshold;

        let mut verdicts: Vec<(ProcessId, DeathCause)> = Vec::new();
        let mut undecided = Vec::new();
        for row in &others {
            if judge_ages && row.last_heartbeat_at < cutoff {
                let deadline = Some(pass.clock + self.config.observation_gap);
                verdicts.push((row.id, DeathCause::HeartbeatOlderThan { cutoff, deadline }));
            } else if let Some(reason) = liveness::local_death(row, &self.host).filter(|_| self.config.pid_probe) {
                verdicts.push((row.id, DeathCause::Proven(reason)));
            } else {
                undecided.push(row.id);
            }
        }

        let gone = store.sessions_gone(&undecided)?;
        self.suspects.retain(|id, _| gone.contains(id));
        for id in gone {
            let since = *self.suspects.entry(id).or_insert(pass.clock);
            if pass.clock.duration_since(since) >= self.config.session_confirmation {
                let reason = format!(
                    "its database session ended (session lock free for {} ms)",
                    (pass.clock - since).as_millis()
                );
                verdicts.push((id, DeathCause::Proven(reason)));
                self.suspects.remove(&id);
            }
        }

        let reaped = store.reap_dead(&verdicts, self.config.policy, pass.now)?;
        let reaped = reaped
            .into_iter()
            .map(|r| {
                let cause = match verdicts.iter().find(|(id, _)| *id == r.process).map(|(_, cause)| cause) {
                    Some(DeathCause::HeartbeatOlderThan { cutoff, .. }) => {
                        format!("no heartbeat since before {cutoff}")
                    }
                    Some(DeathCause::Proven(reason)) => reason.clone(),
                    None => String::new(),
                };
                if let Some(telemetry) = &self.telemetry {
                    telemetry.metrics.processes_pruned(1);
                    telemetry.events.emit(Event::ProcessPruned {
                        process: r.process,
                        name: r.name.clone(),
                        host: r.host,
                        jobs: r.jobs,
                        cause: cause.clone(),
                    });
                }
                Reaped { process: r.process, name: r.name, cause, retried: r.retried, failed: r.failed }
            })
            .collect();
        // Orphans (claims whose process row vanished without them) arise only from outside
        // changes: reaping and deregistering take a process's claims in the same transaction.
        // A sweep now and then finds them; every pass would cost an idle process a statement,
        // and so would a sweep while nothing changed since the last.
        let mut orphans_released = 0;
        if self.passes.is_multiple_of(ORPHAN_SWEEP_EVERY) {
            let mark = store.change_mark().map(|(mark, _)| mark);
            if mark.is_none() || mark != self.swept {
                orphans_released = store.release_orphans(pass.now)?;
                self.swept = mark;
            }
        }
        self.passes += 1;
        Ok(WatchOutcome { reaped, orphans_released, watch_resumed_after })
    }
}

impl Service for Watchdog {
    type Outcome = WatchOutcome;
    const NAME: &'static str = "watchdog";

    fn interval(&self) -> Duration {
        self.config.interval
    }

    /// One pass: judges every other process, reaps the dead, returns orphaned claims. A failed
    /// pass, or one the database was too slow to answer, breaks the watch.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<WatchOutcome> {
        let result = self.judge(store, pass);
        if result.is_err() || pass.clock.elapsed() > self.config.observation_gap {
            self.lost_sight();
        }
        result
    }

    fn report(outcome: &WatchOutcome, logger: &Logger) {
        if let Some(blind) = outcome.watch_resumed_after {
            warn!(logger, "the database could not be watched for a while; heartbeat ages count from now, so every process gets a full alive threshold to beat again";
                "blind_ms" => u64::try_from(blind.as_millis()).unwrap_or(u64::MAX));
        }
        for r in &outcome.reaped {
            warn!(logger, "dead process reaped"; "process_id" => r.process, "name" => &r.name,
                "cause" => &r.cause, "retried" => r.retried, "failed" => r.failed);
        }
        if outcome.orphans_released > 0 {
            warn!(logger, "claims without a process returned to ready"; "released" => outcome.orphans_released);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DatabaseUrl, NewProcess};
    use chrono::NaiveDateTime;

    const THRESHOLD: Duration = Duration::from_secs(10);

    fn watchdog() -> Watchdog {
        Watchdog::new(WatchdogConfig {
            alive_threshold: THRESHOLD,
            session_confirmation: Duration::ZERO,
            pid_probe: false,
            observation_gap: Duration::from_secs(2),
            ..WatchdogConfig::default()
        })
    }

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap().naive_utc()
    }

    /// A fresh watchdog over a store with one process that last beat at `at(0)` and never
    /// again; the watchdog's clock starts at `start`.
    struct Judge {
        _dir: tempfile::TempDir,
        store: Store,
        watchdog: Watchdog,
        start: Instant,
    }

    impl Judge {
        fn of_a_silent_process() -> Judge {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::connect(&DatabaseUrl::Sqlite(dir.path().join("w.sqlite3")), 2).unwrap();
            store.migrate().unwrap();
            let row = NewProcess {
                kind: "Runtime".into(),
                name: "silent".into(),
                pid: 1,
                hostname: "elsewhere".into(),
                metadata: Default::default(),
            };
            store.register_process(&row, at(0)).unwrap();
            Judge { _dir: dir, store, watchdog: watchdog(), start: Instant::now() }
        }

        /// One pass at `second`.
        fn pass(&mut self, second: i64) -> WatchOutcome {
            let pass = Pass {
                own: None,
                now: at(second),
                clock: self.start + Duration::from_secs(second as u64),
                lease: None,
            };
            self.watchdog.run_once(&self.store, pass).unwrap()
        }

        /// Passes once a second from `from` to `to` seconds; returns the second it reaped at.
        fn pass_each_second(&mut self, from: i64, to: i64) -> Option<i64> {
            (from..=to).find(|&second| !self.pass(second).reaped.is_empty())
        }
    }

    #[test]
    fn a_silent_process_is_reaped_once_the_watch_lasted_a_threshold() {
        let mut judge = Judge::of_a_silent_process();
        // Its heartbeat is already 60 s old at the first pass, but this judge has only just
        // begun to watch: it waits one threshold, then reaps.
        assert_eq!(judge.pass_each_second(60, 80), Some(70));
    }

    #[test]
    fn an_outage_of_the_judge_restarts_the_threshold_for_everyone() {
        let mut judge = Judge::of_a_silent_process();
        assert_eq!(judge.pass_each_second(0, 8), None, "fresh heartbeat");
        // The database is unreachable from 9 s to 30 s: the passes fail.
        judge.watchdog.lost_sight();
        // Back at 30 s: the process's heartbeat is 30 s old, but nobody could beat meanwhile.
        let back = judge.pass(30);
        assert!(back.reaped.is_empty(), "reaped on the first pass after the outage");
        assert_eq!(back.watch_resumed_after, Some(Duration::from_secs(22)));
        // A process that still does not beat is reaped one threshold after the watch resumed.
        assert_eq!(judge.pass_each_second(31, 50), Some(40));
    }

    #[test]
    fn a_judge_that_did_not_run_for_a_while_also_restarts_its_watch() {
        let mut judge = Judge::of_a_silent_process();
        assert_eq!(judge.pass_each_second(0, 5), None);
        // Frozen from 5 s to 20 s without a failed pass: a gap longer than the observation gap.
        assert_eq!(judge.pass_each_second(20, 40), Some(30));
    }

    #[test]
    fn observation_gap_is_bounded_by_the_threshold() {
        let gap = WatchdogConfig::observation_gap_for;
        assert_eq!(gap(Duration::from_millis(500), Duration::from_secs(300)), Duration::from_secs(5));
        assert_eq!(gap(Duration::from_secs(60), Duration::from_secs(300)), Duration::from_secs(75));
        assert_eq!(gap(Duration::from_millis(500), Duration::from_secs(10)), Duration::from_millis(2500));
    }
}
