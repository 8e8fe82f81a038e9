//! Session liveness (PostgreSQL's advisory locks, MySQL's named locks) when the server drops
//! every session at once (as a restart or failover does): live processes take their locks again
//! and nobody reaps anybody.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fixtures::{Noop, NoopHandler};
use solidq::config::{Config, WorkerGroup};
use solidq::model::{JobState, QueuePattern};
use solidq::{Runtime, RuntimeHandle, SharedStore, Store};

fn start(db: &common::TestDb, store: SharedStore) -> RuntimeHandle {
    let config = Config {
        database_url: db.url.clone(),
        workers: vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 2 }],
        polling_interval: Duration::from_millis(20),
        heartbeat_interval: Duration::from_millis(200),
        alive_threshold: Duration::from_secs(60),
        watchdog_interval: Duration::from_millis(50),
        // Both runtimes share this test's pid: only the session lock can judge them.
        pid_probe: false,
        ..Config::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    Runtime::with_store(config, store, logger).unwrap().register::<Noop, _, _>(|| NoopHandler).start().unwrap()
}

#[actix_rt::test]
async fn postgres_sessions_dropped_by_the_server_do_not_get_live_processes_reaped() {
    let Some(db) = common::TestDb::postgres() else { return };
    sessions_dropped_by_the_server_do_not_get_live_processes_reaped(db).await;
}

#[actix_rt::test]
async fn mysql_sessions_dropped_by_the_server_do_not_get_live_processes_reaped() {
    let Some(db) = common::TestDb::mysql() else { return };
    sessions_dropped_by_the_server_do_not_get_live_processes_reaped(db).await;
}

async fn sessions_dropped_by_the_server_do_not_get_live_processes_reaped(db: common::TestDb) {
    let stores: Vec<SharedStore> = (0..2).map(|_| Arc::new(Store::connect(&db.url, 3).unwrap())).collect();
    let handles: Vec<RuntimeHandle> = stores.iter().map(|s| start(&db, s.clone())).collect();
    let started = Instant::now();
    let mut ids = Vec::new();
    for h in &handles {
        loop {
            if let Some(id) = h.process_id().await {
                ids.push(id);
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "registration");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The server ends both lock sessions, as a restart would.
    let mut admin = db.raw_connection();
    for (store, id) in stores.iter().zip(&ids) {
        let pid = store.session_id(*id).expect("a lock session");
        match db.backend() {
            "mysql" => admin.batch_execute(&format!("KILL CONNECTION {pid}")).unwrap(),
            _ => admin.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap(),
        }
    }
    // Well past the watchdogs' confirmation window: both must still be registered as themselves.
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let alive: Vec<i64> = db.store.processes().unwrap().iter().map(|p| p.id).collect();
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(alive, expected, "no live process was reaped");
    for (store, id) in stores.iter().zip(&ids) {
        assert!(store.session_id(*id).is_some(), "process {id} holds its lock again");
    }
    // And work goes on.
    let job = handles[0].queue().enqueue(Noop(1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.store.job(job).unwrap().unwrap().state != Some(JobState::Finished) {
        assert!(Instant::now() < deadline);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    for h in &handles {
        h.shutdown().await;
    }
}
