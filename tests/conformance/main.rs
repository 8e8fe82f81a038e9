//! The store conformance suite: every behaviour of the store, written once (`backend_test!`)
//! and run against every backend in the one list of `tests/common` (`…::sqlite` always,
//! `…::postgres` when `SOLIDQ_TEST_POSTGRES_URL` is set, `…::mysql` when built with the `mysql`
//! feature and `SOLIDQ_TEST_MYSQL_URL` is set), one file per role of the store. Every test gets
//! its own database file, schema or database. A few tests prove what only one backend has (its
//! session locks, `SKIP LOCKED`, collations); they sit in `postgres_only` and `mysql_only`
//! modules.

#[path = "../common/mod.rs"]
mod common;

mod composition;
mod dashboard;
mod inspect;
mod jobs;
mod leadership;
mod lifecycle;
mod maintenance;
mod processes;
mod rate_limits;
mod recurring;
mod schema;

pub use std::collections::HashSet;
pub use std::sync::{Arc, Barrier};
pub use std::thread;
pub use std::time::{Duration, Instant};

pub use chrono::{NaiveDate, NaiveDateTime};
pub use diesel::connection::SimpleConnection;
pub use diesel::{Connection, PgConnection, SqliteConnection};
pub use serde_json::json;
pub use solidq::model::{
    ClaimedJob, DeathPolicy, FailureKind, FailureRecord, JobState, NewProcess, ProcessDetails, ProcessId,
    ProcessMetadata, QueuePattern, WorkerDetails,
};
pub use solidq::store::{Beat, DeathCause, JobCounts, QueueCounts, Settled, StoreResult, TIDY_AFTER_CLAIMS};
pub use solidq::{DatabaseUrl, EnqueueConnection, JobId, NewJob, SharedStore, Store};

/// What reaping one process did, as the tests compare it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Whether this call removed the process.
    pub reaped: bool,
    /// Its claims returned to ready.
    pub retried: usize,
    /// Its claims moved to failed.
    pub failed: usize,
}

/// Reaps one process for `cause`.
pub fn reap_process(
    store: &Store,
    process: ProcessId,
    cause: &DeathCause,
    policy: DeathPolicy,
    now: NaiveDateTime,
) -> StoreResult<ReapOutcome> {
    let reaped = store.reap_dead(&[(process, cause.clone())], policy, now)?;
    Ok(reaped.first().map_or_else(ReapOutcome::default, |r| ReapOutcome {
        reaped: true,
        retried: r.retried,
        failed: r.failed,
    }))
}

/// Whether a one-token transition changed its job.
pub fn applied(settled: Settled) -> bool {
    settled.fenced.is_empty() && settled.applied.len() == 1
}

/// Whether a one-token transition was fenced (its claim was gone): nothing changed.
pub fn fenced(settled: Settled) -> bool {
    settled.applied.is_empty() && settled.fenced.len() == 1
}

/// A fixed clock: 2026-01-01 00:00:00 UTC plus `secs`.
pub fn t(secs: i64) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("valid date")
        + chrono::Duration::seconds(secs)
}

pub fn job(kind: &str, queue: &str, priority: i32) -> NewJob {
    NewJob {
        kind: kind.to_string(),
        arguments: json!({ "kind": kind }).to_string(),
        queue: queue.to_string(),
        priority,
        max_attempts: 5,
        scheduled_at: None,
        unique_key: None,
        concurrency: None,
        after: Vec::new(),
        rate_limit: None,
    }
}

pub fn scheduled(kind: &str, at: NaiveDateTime) -> NewJob {
    NewJob { scheduled_at: Some(at), ..job(kind, "default", 0) }
}

pub fn new_process(name: &str) -> NewProcess {
    NewProcess {
        kind: "Runtime".to_string(),
        name: name.to_string(),
        pid: 4242,
        hostname: "testhost".to_string(),
        metadata: ProcessMetadata {
            boot_id: name.to_string(),
            details: ProcessDetails {
                workers: vec![WorkerDetails { queues: vec!["*".into()], concurrency: 3 }],
                ..ProcessDetails::default()
            },
            ..ProcessMetadata::default()
        },
    }
}

pub fn register(store: &Store, name: &str) -> ProcessId {
    store.register_process(&new_process(name), t(0)).expect("register_process")
}

pub fn enqueue(store: &Store, jobs: &[NewJob]) -> Vec<JobId> {
    store.enqueue(jobs, t(0)).expect("enqueue")
}

pub fn enqueue_one(store: &Store, new_job: NewJob) -> JobId {
    enqueue(store, &[new_job])[0]
}

pub fn claim(store: &Store, process: ProcessId, queues: &[&str], limit: usize) -> Vec<ClaimedJob> {
    let patterns: Vec<QueuePattern> = queues.iter().map(|q| QueuePattern::parse(q)).collect();
    store.claim(process, &patterns, &all_kinds(store), limit, t(1)).expect("claim")
}

/// Every kind that has jobs waiting: a claim for a process with handlers for all of them.
pub fn all_kinds(store: &Store) -> Vec<String> {
    let mut kinds: Vec<String> = store.waiting().expect("waiting").into_iter().map(|w| w.kind).collect();
    kinds.dedup();
    kinds
}

pub fn kinds(claims: &[ClaimedJob]) -> Vec<&str> {
    claims.iter().map(|c| c.kind.as_str()).collect()
}

pub fn state(store: &Store, id: JobId) -> String {
    store.job(id).expect("job").expect("job exists").state.map(|s| s.to_string()).unwrap_or_default()
}

pub fn totals(store: &Store) -> JobCounts {
    store.counts().expect("counts").0
}

pub fn counts(ready: i64, scheduled: i64, claimed: i64, failed: i64, finished: i64) -> JobCounts {
    JobCounts { ready, scheduled, claimed, failed, finished, ..JobCounts::default() }
}

pub fn error(message: &str) -> FailureRecord {
    FailureRecord::new(FailureKind::Error, message)
}

pub fn last_error(store: &Store, id: JobId) -> FailureRecord {
    store.job(id).expect("job").expect("job exists").last_error.expect("last_error set")
}

pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(10), done)
}
