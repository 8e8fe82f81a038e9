//! Processes: register, beat, session liveness, deregister.

use super::*;
use crate::common::{backend_test, TestDb};

backend_test!(
    fn heartbeat_stamps_a_live_process_and_reports_a_missing_one(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "worker");
        assert_eq!(store.beat(p, t(30)).unwrap(), Beat::Stamped);
        let row = store.processes().unwrap().into_iter().find(|r| r.id == p).unwrap();
        assert_eq!((row.last_heartbeat_at, row.created_at), (t(30), t(0)));
        assert_eq!(store.beat(9_999, t(30)).unwrap(), Beat::Missing);
        store.deregister(p, t(40)).unwrap();
        assert_eq!(store.beat(p, t(50)).unwrap(), Beat::Missing);
    }
);

backend_test!(
    fn keep_session_of_a_healthy_or_unknown_process_does_nothing(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "worker");
        assert!(!store.keep_session(p).unwrap());
        assert!(!store.keep_session(9_999).unwrap());
        store.deregister(p, t(1)).unwrap();
        assert!(!store.keep_session(p).unwrap());
    }
);

backend_test!(
    fn register_rejects_a_duplicate_name(db: &TestDb) {
        let store = &db.store;
        register(store, "same");
        assert!(store.register_process(&new_process("same"), t(1)).is_err());
        assert_eq!(store.processes().unwrap().len(), 1);
    }
);

backend_test!(
    fn deregister_releases_claims_to_ready_and_removes_the_process(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
        let p = register(store, "leaving");
        let other = register(store, "staying");
        let got = claim(store, p, &["*"], 3);
        assert!(applied(store.complete_claims(&[got[0].token], t(2)).unwrap()));
        assert_eq!(store.deregister(p, t(3)).unwrap(), 2);
        assert_eq!(store.processes().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
        assert_eq!(state(store, ids[0]), "finished");
        assert_eq!(state(store, ids[1]), "ready");
        assert_eq!(state(store, ids[2]), "ready");
        assert!(fenced(store.complete_claims(&[got[1].token], t(4)).unwrap()));
        assert_eq!(store.deregister(p, t(5)).unwrap(), 0);
        assert_eq!(totals(store), counts(2, 0, 0, 0, 1));
    }
);

/// What only PostgreSQL has: session locks, `SKIP LOCKED`, row locks between claims and reaps.
mod postgres_only {
    use super::*;

    #[test]
    fn sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one() {
        let Some(db) = TestDb::postgres() else { return };
        sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one_on(&db);
    }

    #[test]
    fn keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again() {
        let Some(db) = TestDb::postgres() else { return };
        keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again_on(&db);
    }
}

/// What only MySQL/MariaDB has: named locks (`GET_LOCK`) held by each process's own session.
mod mysql_only {
    use super::*;

    #[test]
    fn sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one() {
        let Some(db) = TestDb::mysql() else { return };
        sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one_on(&db);
    }

    #[test]
    fn keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again() {
        let Some(db) = TestDb::mysql() else { return };
        keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again_on(&db);
    }

    /// Issue 17, item 2: a write that waits for a row lock longer than the pooled connections'
    /// `innodb_lock_wait_timeout` (5 s) fails with 1205, is rolled back and run again, and
    /// succeeds once the lock is gone.
    #[cfg(feature = "mysql")]
    #[test]
    fn a_write_past_the_lock_wait_timeout_is_retried_and_succeeds() {
        #[derive(diesel::QueryableByName)]
        struct Timeout {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            seconds: i64,
        }
        let Some(db) = TestDb::mysql() else { return };
        let mut pooled = solidq::store::connection::app_pool(&db.url, 1).unwrap().get().unwrap();
        let timeout: Timeout = diesel::RunQueryDsl::get_result(
            diesel::sql_query("SELECT CAST(@@innodb_lock_wait_timeout AS SIGNED) AS seconds"),
            &mut *pooled,
        )
        .unwrap();
        assert_eq!(timeout.seconds, 5, "pooled connections wait 5 s for a row lock");
        let p = register(&db.store, "worker");
        let url = db.mysql_url().unwrap().to_string();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holder = thread::spawn(move || {
            let mut conn = crate::common::mysql_connection(&url);
            conn.batch_execute(&format!("START TRANSACTION; SELECT id FROM solidq_processes WHERE id = {p} FOR UPDATE;"))
                .unwrap();
            locked.send(()).unwrap();
            thread::sleep(Duration::from_secs(7));
            conn.batch_execute("COMMIT").unwrap();
        });
        is_locked.recv().unwrap();
        let started = Instant::now();
        assert_eq!(db.store.beat(p, t(30)).unwrap(), Beat::Stamped);
        let took = started.elapsed();
        assert!(took > Duration::from_secs(5), "the heartbeat waited for the lock: {took:?}");
        holder.join().unwrap();
    }
}

fn sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one_on(db: &TestDb) {
    let live = register(&db.store, "live");
    let other_live_store = Store::connect(&db.url, 2).unwrap();
    let other_live = register(&other_live_store, "other-live");
    let dying_store = Store::connect(&db.url, 2).unwrap();
    let dead = register(&dying_store, "dead");
    assert_eq!(db.store.sessions_gone(&[live, other_live, dead]).unwrap(), Vec::<ProcessId>::new());

    drop(dying_store); // like kill -9: the row stays, the session ends
    wait_until("the dropped store's session is gone", || {
        db.store.sessions_gone(&[live, other_live, dead]).unwrap() == [dead]
    });
    // Probing does not keep the lock: the answer is the same from another store.
    assert_eq!(other_live_store.sessions_gone(&[dead, live]).unwrap(), [dead]);
    assert_eq!(db.store.processes().unwrap().len(), 3);
    assert_eq!(db.store.sessions_gone(&[]).unwrap(), Vec::<ProcessId>::new());

    // After a graceful exit the row is gone and so is the lock.
    other_live_store.deregister(other_live, t(5)).unwrap();
    wait_until("the deregistered session is gone", || db.store.sessions_gone(&[other_live]).unwrap() == [other_live]);
}

fn keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again_on(db: &TestDb) {
    let store = Store::connect(&db.url, 2).unwrap();
    let p = register(&store, "worker");
    let pid = store.session_id(p).expect("lock session");
    match db.backend() {
        "mysql" => db.execute_sql(&format!("KILL CONNECTION {pid}")),
        _ => db.execute_sql(&format!("SELECT pg_terminate_backend({pid})")),
    }
    wait_until("the killed session is reported gone", || db.store.sessions_gone(&[p]).unwrap() == [p]);
    // The heartbeat does not depend on the lock session.
    assert_eq!(store.beat(p, t(30)).unwrap(), Beat::Stamped);
    assert!(store.keep_session(p).unwrap(), "had to reconnect");
    let new_pid = store.session_id(p).expect("a new lock session");
    assert_ne!(new_pid, pid);
    assert_eq!(db.store.sessions_gone(&[p]).unwrap(), Vec::<ProcessId>::new());
    assert!(!store.keep_session(p).unwrap(), "healthy now");
}
