//! Supervision of the runtime's own actors: a worker whose loop stops making progress (its
//! claim hangs on the database) is replaced, and what the hung claim takes is handed back.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDateTime;
use common::TestDb;
use serde::{Deserialize, Serialize};
use solidq::config::{Config, WorkerGroup};
use solidq::job::{JobId, NewJob};
use solidq::store::*;
use solidq::{Job, JobError, Perform, Runtime};

/// Delegates to a real store, but the first `claim` hangs for `hang` after claiming, as a
/// claim whose answer is stuck on a half-open connection would.
struct HangingStore {
    inner: SharedStore,
    claims: AtomicUsize,
    hang: Duration,
}

impl Store for HangingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn migrate(&self) -> StoreResult<usize> {
        self.inner.migrate()
    }
    fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        self.inner.enqueue(jobs, now)
    }
    fn claim(
        &self,
        p: ProcessId,
        q: &[QueuePattern],
        limit: usize,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let claimed = self.inner.claim(p, q, limit, now);
        if self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(self.hang);
        }
        claimed
    }
    fn finish(&self, t: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.inner.finish(t, now)
    }
    fn fail(&self, t: ClaimToken, e: &FailureRecord, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.inner.fail(t, e, now)
    }
    fn retry(&self, t: ClaimToken, e: &FailureRecord, at: NaiveDateTime, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.inner.retry(t, e, at, now)
    }
    fn release(&self, t: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.inner.release(t, now)
    }
    fn dispatch_due(&self, now: NaiveDateTime, batch: usize) -> StoreResult<usize> {
        self.inner.dispatch_due(now, batch)
    }
    fn register_process(&self, p: &NewProcess, now: NaiveDateTime) -> StoreResult<ProcessId> {
        self.inner.register_process(p, now)
    }
    fn heartbeat(&self, p: ProcessId, now: NaiveDateTime) -> StoreResult<Beat> {
        self.inner.heartbeat(p, now)
    }
    fn keep_session(&self, p: ProcessId) -> StoreResult<bool> {
        self.inner.keep_session(p)
    }
    fn deregister(&self, p: ProcessId, now: NaiveDateTime) -> StoreResult<usize> {
        self.inner.deregister(p, now)
    }
    fn processes(&self) -> StoreResult<Vec<ProcessRow>> {
        self.inner.processes()
    }
    fn sessions_gone(&self, c: &[ProcessId]) -> StoreResult<Vec<ProcessId>> {
        self.inner.sessions_gone(c)
    }
    fn reap_process(
        &self,
        p: ProcessId,
        c: &DeathCause,
        d: DeathPolicy,
        now: NaiveDateTime,
    ) -> StoreResult<ReapOutcome> {
        self.inner.reap_process(p, c, d, now)
    }
    fn release_orphans(&self, now: NaiveDateTime) -> StoreResult<usize> {
        self.inner.release_orphans(now)
    }
    fn counts(&self) -> StoreResult<(JobCounts, Vec<QueueCounts>)> {
        self.inner.counts()
    }
    fn claimed_by(&self, p: ProcessId) -> StoreResult<Vec<ClaimToken>> {
        self.inner.claimed_by(p)
    }
    fn job(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.inner.job(id)
    }
}

#[derive(Serialize, Deserialize)]
struct Noop(u32);

impl Job for Noop {
    const KIND: &'static str = "test.noop";
}

struct NoopHandler;

impl Actor for NoopHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Noop>> for NoopHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, _: Perform<Noop>, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

fn state(db: &TestDb, id: i64) -> String {
    db.store.job(id).unwrap().map(|j| j.state).unwrap_or_default()
}

async fn stuck_worker_is_replaced_and_its_late_claims_are_released(db: TestDb) {
    let hang = Duration::from_secs(4);
    let store: SharedStore = Arc::new(HangingStore { inner: db.store.clone(), claims: AtomicUsize::new(0), hang });
    let config = Config {
        database_url: db.url.clone(),
        workers: vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 2 }],
        polling_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(100),
        alive_threshold: Duration::from_secs(30),
        ..Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let runtime = Runtime::with_store(config, store, logger)
        .unwrap()
        .stuck_after(Duration::from_millis(300))
        .register::<Noop, _, _>(|| NoopHandler);
    let queue = runtime.queue();
    let early = queue.enqueue(Noop(1)).await.unwrap();
    let handle = runtime.start().unwrap();
    let started = Instant::now();
    // The first claim takes `early`, then hangs. A job enqueued after that must still run
    // before the hang ends: the stuck worker is replaced.
    while state(&db, early) != "claimed" {
        assert!(started.elapsed() < hang, "the first claim never happened");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let next = queue.enqueue(Noop(2)).await.unwrap();
    while state(&db, next) != "finished" {
        assert!(started.elapsed() < hang, "the stuck worker was not replaced before its claim returned");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state(&db, early), "claimed", "still held by the hung claim");
    // When the hung claim returns, its worker is retired: it hands `early` back itself, and
    // the live worker runs it.
    let deadline = started + hang + Duration::from_secs(10);
    while state(&db, early) != "finished" {
        assert!(Instant::now() < deadline, "the late claim was never handed back: {}", state(&db, early));
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.store.job(early).unwrap().unwrap().attempts, 1, "the hung claim never started it: no attempt used");
    let (counts, _) = db.store.counts().unwrap();
    assert_eq!(counts.claimed, 0, "no claim is left with the live process");
    handle.shutdown().await;
}

#[actix_rt::test]
async fn sqlite_stuck_worker_is_replaced_and_its_late_claims_are_released() {
    stuck_worker_is_replaced_and_its_late_claims_are_released(common::sqlite_db()).await;
}

#[actix_rt::test]
async fn postgres_stuck_worker_is_replaced_and_its_late_claims_are_released() {
    let Some(db) = common::postgres_db() else { return };
    stuck_worker_is_replaced_and_its_late_claims_are_released(db).await;
}

/// A drain that starts while a claim is under way waits for the jobs it brings back instead of
/// deregistering (and releasing them) underneath a worker about to run them.
async fn drain_waits_for_a_claim_under_way(db: TestDb) {
    let store: SharedStore = Arc::new(HangingStore {
        inner: db.store.clone(),
        claims: AtomicUsize::new(0),
        hang: Duration::from_millis(800),
    });
    let config = Config {
        database_url: db.url.clone(),
        polling_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(100),
        alive_threshold: Duration::from_secs(30),
        ..Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let runtime = Runtime::with_store(config, store, logger).unwrap().register::<Noop, _, _>(|| NoopHandler);
    let id = runtime.queue().enqueue(Noop(1)).await.unwrap();
    let handle = runtime.start().unwrap();
    let started = Instant::now();
    // The first claim has committed and is still on its way back.
    while state(&db, id) != "claimed" {
        assert!(started.elapsed() < Duration::from_secs(10), "never claimed");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let report = handle.shutdown().await;
    assert_eq!((report.abandoned, report.released, report.deregistered), (0, 0, true));
    assert_eq!(state(&db, id), "finished");
}

#[actix_rt::test]
async fn sqlite_drain_waits_for_a_claim_under_way() {
    drain_waits_for_a_claim_under_way(common::sqlite_db()).await;
}

#[actix_rt::test]
async fn postgres_drain_waits_for_a_claim_under_way() {
    let Some(db) = common::postgres_db() else { return };
    drain_waits_for_a_claim_under_way(db).await;
}
