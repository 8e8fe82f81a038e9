//! Supervision of the runtime's own actors: a worker whose loop stops making progress (its
//! claim hangs on the database) is replaced, and what the hung claim takes is handed back.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fixtures::{Noop, NoopHandler};
use common::{backend_test, TestDb};
use solidq::config::{Config, WorkerGroup};
use solidq::model::QueuePattern;
use solidq::store::{Observer, StoreEvent};
use solidq::{Runtime, SharedStore, Store};

/// Makes the first claim hang for `hang` after it committed, as a claim whose answer is stuck
/// on a half-open connection would: the store's observer runs on the claiming thread before
/// the claim returns.
struct HangFirstClaim {
    claims: AtomicUsize,
    hang: Duration,
}

impl Observer for HangFirstClaim {
    fn finished(&self, event: &StoreEvent) {
        if event.operation == "claiming jobs" && self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(self.hang);
        }
    }
}

/// A second store on `db` whose first claim hangs for `hang`.
fn hanging_store(db: &TestDb, hang: Duration) -> SharedStore {
    let observer = Arc::new(HangFirstClaim { claims: AtomicUsize::new(0), hang });
    Arc::new(Store::connect(&db.url, common::TEST_POOL_SIZE).unwrap().observed_by(observer))
}

fn state(db: &TestDb, id: i64) -> String {
    db.state(id)
}

backend_test!(
    async fn stuck_worker_is_replaced_and_its_late_claims_are_released(db: TestDb) {
        let hang = Duration::from_secs(4);
        let store = hanging_store(&db, hang);
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
        assert_eq!(
            db.store.job(early).unwrap().unwrap().attempts,
            1,
            "the hung claim never started it: no attempt used"
        );
        let (counts, _) = db.store.counts().unwrap();
        assert_eq!(counts.claimed, 0, "no claim is left with the live process");
        handle.shutdown().await;
    }
);

backend_test!(
    /// A drain that starts while a claim is under way waits for the jobs it brings back instead of
    /// deregistering (and releasing them) underneath a worker about to run them.
    async fn drain_waits_for_a_claim_under_way(db: TestDb) {
        let store = hanging_store(&db, Duration::from_millis(800));
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
);
