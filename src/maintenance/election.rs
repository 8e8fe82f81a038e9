//! Election: makes one process of all those on a database the leader, the only one that runs
//! the other maintenance services (see `store::leadership` for the lock and the term).
//!
//! Every process runs it. A candidate tries the leader lock now and then: on the server
//! backends a try is one statement, so candidates space their tries by the fleet's size
//! ([`ElectionConfig::spacing`] times the number of processes, within 1 s to
//! [`MAX_CANDIDATE_INTERVAL`], jittered), and the fleet as a whole tries about once per
//! spacing however large it is; on SQLite a try is a file lock, free, and every candidate
//! tries each second. When the leader dies its lock is freed at once (the server ends its
//! session, the kernel closes its file), so the next try of any candidate takes over: within
//! about a spacing on average, a few at worst. The new leader's watchdog then reaps the dead
//! one like any other process.
//!
//! The leader checks its lock every [`ElectionConfig::leader_check`] (its session connection
//! is still up); a leader that lost it stops its sweeps there, and a write it makes meanwhile
//! is fenced by its term.

use std::time::Duration;

use slog::{info, warn, Logger};

use super::{Pass, Service};
use crate::store::{Leadership, Lease, Store, StoreResult};

/// Default [`ElectionConfig::spacing`] (`SOLIDQ_ELECTION_SPACING`).
pub const DEFAULT_SPACING: Duration = Duration::from_millis(400);
/// Default [`ElectionConfig::leader_check`].
pub const DEFAULT_LEADER_CHECK: Duration = Duration::from_secs(5);
/// The longest a candidate waits between two tries of the leader lock.
pub const MAX_CANDIDATE_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest: also the interval where a try costs nothing (SQLite).
pub const MIN_CANDIDATE_INTERVAL: Duration = Duration::from_secs(1);

/// How the election paces itself.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// How often the fleet as a whole tries the leader lock: each candidate tries every
    /// `spacing × processes` (within [`MIN_CANDIDATE_INTERVAL`] and
    /// [`MAX_CANDIDATE_INTERVAL`]). A dead leader is replaced about one spacing after its
    /// lock is freed, on average.
    pub spacing: Duration,
    /// How often the leader checks that it still holds the lock.
    pub leader_check: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig { spacing: DEFAULT_SPACING, leader_check: DEFAULT_LEADER_CHECK }
    }
}

/// What one pass of the election did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionOutcome {
    /// The process is not registered yet: it cannot lead.
    Unregistered,
    /// Another process holds the lock.
    Candidate,
    /// This process took the lock and the next term.
    Elected(Lease),
    /// This process still leads.
    Leading(Lease),
    /// This process led with this lease and lost the lock (its session connection broke).
    LostLock(Lease),
}

/// The election service of one process, with the process's shared [`Leadership`].
#[derive(Debug, Clone)]
pub struct Election {
    config: ElectionConfig,
    leadership: Leadership,
    /// When the next pass runs, decided by the last.
    next: Duration,
}

impl Election {
    /// An election pacing itself by `config`, recording the outcome in `leadership`.
    pub fn new(config: ElectionConfig, leadership: Leadership) -> Self {
        Election { config, leadership, next: Duration::ZERO }
    }

    /// How long a candidate waits before its next try, given the fleet's size when a try
    /// costs a statement (`None`: it costs nothing), jittered by ±50 % so that candidates
    /// do not try together.
    pub fn candidate_interval(&self, fleet: Option<usize>) -> Duration {
        let Some(fleet) = fleet else { return MIN_CANDIDATE_INTERVAL };
        let spaced = self.config.spacing.saturating_mul(u32::try_from(fleet).unwrap_or(u32::MAX));
        let base = spaced.clamp(MIN_CANDIDATE_INTERVAL, MAX_CANDIDATE_INTERVAL);
        base.mul_f64(0.5 + fastrand::f64())
    }
}

impl Service for Election {
    type Outcome = ElectionOutcome;
    const NAME: &'static str = "election";
    const LEADER_ONLY: bool = false;

    fn interval(&self) -> Duration {
        self.config.leader_check.max(MAX_CANDIDATE_INTERVAL)
    }

    fn next_pass_in(&self) -> Duration {
        self.next
    }

    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<ElectionOutcome> {
        let Some(own) = pass.own else {
            self.next = MIN_CANDIDATE_INTERVAL;
            return Ok(ElectionOutcome::Unregistered);
        };
        if self.leadership.lease().is_some_and(|lease| lease.process != own) {
            // Led as a process row that was since reaped (this process registered again).
            self.leadership.ended();
        }
        let held = self.leadership.lease();
        let candidacy = match store.try_lead(own) {
            Ok(candidacy) => candidacy,
            Err(err) => {
                // The lock cannot be confirmed: stop leading before anyone else can start.
                self.leadership.ended();
                self.next = MIN_CANDIDATE_INTERVAL;
                return Err(err);
            }
        };
        let outcome = match (candidacy.leads, held) {
            (true, Some(lease)) => ElectionOutcome::Leading(lease),
            (true, None) => {
                let lease = store.take_leadership(own, pass.now)?;
                self.leadership.elected(lease);
                ElectionOutcome::Elected(lease)
            }
            (false, Some(lease)) => {
                self.leadership.ended();
                ElectionOutcome::LostLock(lease)
            }
            (false, None) => ElectionOutcome::Candidate,
        };
        self.next = match outcome {
            ElectionOutcome::Elected(_) | ElectionOutcome::Leading(_) => self.config.leader_check,
            _ => self.candidate_interval(candidacy.fleet),
        };
        Ok(outcome)
    }

    fn report(outcome: &ElectionOutcome, logger: &Logger) {
        match outcome {
            ElectionOutcome::Elected(lease) => {
                info!(logger, "elected leader: this process now runs the maintenance sweeps";
                    "process_id" => lease.process, "term" => lease.term);
            }
            ElectionOutcome::LostLock(lease) => {
                warn!(logger, "lost the leader lock: this process stops its maintenance sweeps";
                    "process_id" => lease.process, "term" => lease.term);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_space_their_tries_by_the_fleet() {
        let election = Election::new(ElectionConfig::default(), Leadership::default());
        assert_eq!(election.candidate_interval(None), MIN_CANDIDATE_INTERVAL);
        for _ in 0..100 {
            let one = election.candidate_interval(Some(1));
            assert!(one >= MIN_CANDIDATE_INTERVAL / 2 && one <= MIN_CANDIDATE_INTERVAL * 3 / 2, "{one:?}");
            // 10 processes: 4 s each, jittered.
            let ten = election.candidate_interval(Some(10));
            assert!(ten >= Duration::from_secs(2) && ten <= Duration::from_secs(6), "{ten:?}");
            // 1,000 processes: capped.
            let many = election.candidate_interval(Some(1000));
            assert!(many <= MAX_CANDIDATE_INTERVAL * 3 / 2, "{many:?}");
        }
    }
}
