//! Health checks for probes: liveness (this process's actors tick; no database needed) and
//! readiness (the database answers, and this process is registered and not fenced).
//! [`RuntimeHandle::health_live`](crate::RuntimeHandle::health_live) and
//! [`RuntimeHandle::health_ready`](crate::RuntimeHandle::health_ready) answer for a runtime;
//! [`database_ready`] for a process without one (the standalone dashboard).

use std::sync::mpsc::sync_channel;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::store::SharedStore;

/// How long readiness waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of a check: `ok`, or not with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Whether the check passed (HTTP 200; else 503).
    pub ok: bool,
    /// Why, in one line.
    pub reason: String,
}

impl Health {
    /// A passing check.
    pub fn ok(reason: impl Into<String>) -> Health {
        Health { ok: true, reason: reason.into() }
    }

    /// A failing check.
    pub fn failing(reason: impl Into<String>) -> Health {
        Health { ok: false, reason: reason.into() }
    }

    /// The HTTP status a probe endpoint answers: 200 or 503.
    pub fn status_code(&self) -> u16 {
        if self.ok {
            200
        } else {
            503
        }
    }
}

/// Whether the database answers a trivial read within [`READY_TIMEOUT`]. Blocking.
pub fn database_ready(store: &SharedStore) -> Health {
    database_ready_within(store, READY_TIMEOUT)
}

/// [`database_ready`] with another timeout. The read runs on a thread of its own, so a hung
/// connection costs the caller no more than `timeout`.
pub fn database_ready_within(store: &SharedStore, timeout: Duration) -> Health {
    let (tx, rx) = sync_channel(1);
    let store = store.clone();
    let spawned = std::thread::Builder::new().name("solidq-ready".into()).spawn(move || {
        let _ = tx.send(store.ping());
    });
    if let Err(err) = spawned {
        return Health::failing(format!("could not start the database check: {err}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Health::ok("database answers"),
        Ok(Err(err)) => Health::failing(format!("database does not answer: {}", one_line(&err.to_string()))),
        Err(_) => Health::failing(format!("database did not answer within {} ms", timeout.as_millis())),
    }
}

/// Liveness from what the heartbeat actor reported into `metrics`: it ticked within two
/// heartbeat intervals.
pub fn live(metrics: &Metrics) -> Health {
    match metrics.heartbeat_tick_age() {
        None => Health::failing("the heartbeat has not ticked yet"),
        Some((age, interval)) if age > interval * 2 + Duration::from_secs(1) => Health::failing(format!(
            "the heartbeat last ticked {} ms ago (interval {} ms)",
            age.as_millis(),
            interval.as_millis()
        )),
        Some((age, _)) => Health::ok(format!("heartbeat ticked {} ms ago", age.as_millis())),
    }
}

/// Readiness of the process that counts into `metrics`: the database answers, the process is
/// registered, not fenced, and its row still exists (was not pruned). Blocking.
pub fn ready(store: &SharedStore, metrics: &Metrics) -> Health {
    let database = database_ready(store);
    if !database.ok {
        return database;
    }
    let Some(process) = metrics.process() else {
        return Health::failing("this process is not registered");
    };
    if metrics.fenced() {
        return Health::failing(format!("process {process} is fenced: it could not write its heartbeat in time"));
    }
    match store.process_exists(process) {
        Ok(true) => Health::ok(format!("database answers; process {process} is registered")),
        Ok(false) => Health::failing(format!("process {process} was pruned: its row is gone")),
        Err(err) => Health::failing(format!("database does not answer: {}", one_line(&err.to_string()))),
    }
}

fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}
