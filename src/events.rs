//! Alert events: lifecycle facts an operator wants to hear about, delivered to callbacks
//! ([`Runtime::on_event`](crate::Runtime::on_event)) and actix recipients
//! ([`Runtime::subscribe`](crate::Runtime::subscribe)).
//!
//! Each fact is emitted once, by the process that established it:
//! - [`Event::ProcessPruned`]: by the watchdog whose transaction deleted the dead process's
//!   row (the deletion decides which watchdog reaps, so two never both report it);
//! - [`Event::QueueLatencyHigh`] / [`Event::QueueLatencyRecovered`]: every process with
//!   `SOLIDQ_ALERT_QUEUE_LATENCY` set follows the crossings, but only the *leader* emits them:
//!   the live process with the lowest id. Followers track the same state, so a new leader
//!   (the old one died) neither repeats nor misses a crossing;
//! - [`Event::RecurringRunMissed`]: by the scheduler whose pass skipped the runs;
//! - the per-process facts ([`Event::JobFailed`], [`Event::JobDiscarded`],
//!   [`Event::ProcessFenced`], [`Event::HeartbeatFailing`]): by the process they happened in,
//!   once its outcome was written.
//!
//! Delivery runs on a thread of its own: a slow callback delays only later events, never a
//! worker, and a panicking one is caught and logged (the others still get the event).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::model::{JobId, ProcessId};

/// A lifecycle fact worth an alert.
#[derive(Debug, Clone, PartialEq, Serialize, actix::Message)]
#[rtype(result = "()")]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// This process's watchdog pruned a dead process and handed its jobs back (or failed them,
    /// per `SOLIDQ_ON_PROCESS_DEATH`).
    ProcessPruned {
        /// The pruned process row.
        process: ProcessId,
        /// Its name.
        name: String,
        /// Its host.
        host: String,
        /// The jobs it held.
        jobs: Vec<JobId>,
        /// Why it was judged dead.
        cause: String,
    },
    /// This process was cut off: it could not write its heartbeat for longer than the alive
    /// threshold (or its database file went away) and stopped claiming until the database
    /// confirms its row; or it found its row deleted (another watchdog pruned it and took its
    /// claims) and registered again under a new id.
    ProcessFenced {
        /// Its row, if it had registered.
        process: Option<ProcessId>,
        /// How long since its last heartbeat.
        silent_for: Duration,
    },
    /// A job failed for good (no attempts left, or not retryable).
    JobFailed {
        /// The job.
        id: JobId,
        /// Its kind.
        kind: String,
        /// Its queue.
        queue: String,
        /// The failure kind (`Error`, `Panic`, `Timeout`, ...).
        error_kind: String,
        /// The failure message.
        message: String,
        /// The attempt that failed.
        attempt: i32,
    },
    /// A job's handler asked not to retry it: it ended as discarded.
    JobDiscarded {
        /// The job.
        id: JobId,
        /// Its kind.
        kind: String,
        /// Its queue.
        queue: String,
        /// Why.
        message: String,
    },
    /// Heartbeat writes of this process keep failing (emitted on the 1st, 2nd, 4th, 8th...
    /// consecutive failure).
    HeartbeatFailing {
        /// Failures in a row.
        consecutive: u32,
        /// The last error.
        error: String,
    },
    /// The job at the head of `queue` (the next to be claimed) has waited longer than `threshold`.
    QueueLatencyHigh {
        /// The queue.
        queue: String,
        /// How long it has waited.
        latency: Duration,
        /// `SOLIDQ_ALERT_QUEUE_LATENCY`.
        threshold: Duration,
    },
    /// The queue's latency is back under the threshold (after [`Event::QueueLatencyHigh`]).
    QueueLatencyRecovered {
        /// The queue.
        queue: String,
        /// Its latency now.
        latency: Duration,
        /// `SOLIDQ_ALERT_QUEUE_LATENCY`.
        threshold: Duration,
    },
    /// Runs of a recurring task were due too long ago and were skipped.
    RecurringRunMissed {
        /// The task's key.
        key: String,
        /// The (latest) run that was skipped.
        run_at: NaiveDateTime,
    },
}

impl Event {
    /// A short name for logs (`process_pruned`, `job_failed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ProcessPruned { .. } => "process_pruned",
            Event::ProcessFenced { .. } => "process_fenced",
            Event::JobFailed { .. } => "job_failed",
            Event::JobDiscarded { .. } => "job_discarded",
            Event::HeartbeatFailing { .. } => "heartbeat_failing",
            Event::QueueLatencyHigh { .. } => "queue_latency_high",
            Event::QueueLatencyRecovered { .. } => "queue_latency_recovered",
            Event::RecurringRunMissed { .. } => "recurring_run_missed",
        }
    }
}

/// A subscriber.
pub type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// The subscribers of one runtime and the thread that calls them.
#[derive(Default)]
pub struct EventBus {
    subscribers: RwLock<Vec<Callback>>,
    sender: Mutex<Option<Sender<Event>>>,
    logger: Mutex<Option<slog::Logger>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").finish_non_exhaustive()
    }
}

impl EventBus {
    /// Adds a subscriber; starts the delivery thread with the first.
    pub fn subscribe(self: &Arc<Self>, callback: Callback) {
        self.subscribers.write().unwrap_or_else(|p| p.into_inner()).push(callback);
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if sender.is_none() {
            let (tx, rx) = channel::<Event>();
            // Weak: the thread ends when the bus is dropped (the sender with it).
            let bus = Arc::downgrade(self);
            let spawned = std::thread::Builder::new().name("solidq-events".into()).spawn(move || {
                while let Ok(event) = rx.recv() {
                    let Some(bus) = bus.upgrade() else { return };
                    bus.deliver(&event);
                }
            });
            if spawned.is_ok() {
                *sender = Some(tx);
            }
        }
    }

    /// Where panics of callbacks are logged.
    pub(crate) fn set_logger(&self, logger: &slog::Logger) {
        *self.logger.lock().unwrap_or_else(|p| p.into_inner()) = Some(logger.clone());
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Queues `event` for delivery; returns at once.
    pub fn emit(&self, event: Event) {
        if let Some(sender) = self.sender.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = sender.send(event);
        }
    }

    fn deliver(&self, event: &Event) {
        let subscribers: Vec<Callback> = self.subscribers.read().unwrap_or_else(|p| p.into_inner()).clone();
        for subscriber in subscribers {
            if std::panic::catch_unwind(AssertUnwindSafe(|| subscriber(event))).is_err() {
                if let Some(logger) = self.logger.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    slog::error!(logger, "an event subscriber panicked; it stays subscribed"; "event" => event.name());
                }
            }
        }
    }
}
