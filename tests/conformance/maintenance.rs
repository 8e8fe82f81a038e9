//! Maintenance: dispatch due jobs, reap dead processes, release orphaned claims.

use super::*;
use crate::common::{backend_test, TestDb};

backend_test!(
    /// PostgreSQL vacuums its queue tables after `TIDY_AFTER_CLAIMS` claims through one store (so
    /// that claims keep their speed without autovacuum); SQLite has nothing to tidy.
    fn tidy_runs_once_enough_jobs_were_claimed(db: &TestDb) {
        let store = &db.store;
        assert!(!store.tidy().unwrap(), "nothing claimed yet");
        let jobs: Vec<NewJob> = (0..TIDY_AFTER_CLAIMS).map(|_| job("k", "q", 0)).collect();
        enqueue(store, &jobs);
        let p = register(store, "worker");
        assert_eq!(claim(store, p, &["*"], TIDY_AFTER_CLAIMS).len(), TIDY_AFTER_CLAIMS);
        assert_eq!(store.tidy().unwrap(), store.backend() == "postgres");
        assert!(!store.tidy().unwrap(), "the count starts again");
        assert_eq!(totals(store), counts(0, 0, TIDY_AFTER_CLAIMS as i64, 0, 0), "tidying changes no job");
    }
);

backend_test!(
    fn dispatch_due_moves_only_due_jobs_in_order_up_to_the_batch(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(
            store,
            &[
                scheduled("t30", t(30)),
                scheduled("t10", t(10)),
                NewJob { priority: -1, ..scheduled("t20-urgent", t(20)) },
                scheduled("t20", t(20)),
                scheduled("t50", t(50)),
            ],
        );
        assert_eq!(store.dispatch_due(t(5), 10).unwrap(), 0);
        assert_eq!(store.dispatch_due(t(35), 2).unwrap(), 2);
        let ready: Vec<String> = ids.iter().map(|&id| state(store, id)).collect();
        assert_eq!(ready, ["scheduled", "ready", "ready", "scheduled", "scheduled"]);
        assert_eq!(store.dispatch_due(t(35), 10).unwrap(), 2);
        assert_eq!(store.dispatch_due(t(35), 10).unwrap(), 0);
        assert_eq!(state(store, ids[4]), "scheduled");
        assert_eq!(store.dispatch_due(t(50), 0).unwrap(), 0);
        assert_eq!(totals(store), counts(4, 1, 0, 0, 0));
        let p = register(store, "worker");
        assert_eq!(kinds(&claim(store, p, &["*"], 10)), ["t20-urgent", "t30", "t10", "t20"]);
    }
);

backend_test!(
    fn reap_with_heartbeat_cutoff_skips_a_process_that_beat_after_it(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "slow");
        claim(store, p, &["*"], 1);
        assert_eq!(store.beat(p, t(100)).unwrap(), Beat::Stamped);
        let skipped = reap_process(
            store,
            p,
            &DeathCause::HeartbeatOlderThan { cutoff: t(50), deadline: None },
            DeathPolicy::Retry,
            t(120),
        )
        .unwrap();
        assert_eq!(skipped, ReapOutcome { reaped: false, retried: 0, failed: 0 });
        assert_eq!(store.processes().unwrap().len(), 1);
        assert_eq!(state(store, id), "claimed");
        // A verdict that expired before the store could act on it (the judge waited for a lock or
        // a lost connection meanwhile) changes nothing.
        let expired = DeathCause::HeartbeatOlderThan {
            cutoff: t(101),
            deadline: Some(std::time::Instant::now() - std::time::Duration::from_millis(1)),
        };
        assert!(!reap_process(store, p, &expired, DeathPolicy::Retry, t(120)).unwrap().reaped);
        assert_eq!((store.processes().unwrap().len(), state(store, id).as_str()), (1, "claimed"));
        // Equal to the cutoff is not older than it.
        let equal = reap_process(
            store,
            p,
            &DeathCause::HeartbeatOlderThan { cutoff: t(100), deadline: None },
            DeathPolicy::Retry,
            t(120),
        )
        .unwrap();
        assert!(!equal.reaped);
        let reaped = reap_process(
            store,
            p,
            &DeathCause::HeartbeatOlderThan { cutoff: t(101), deadline: None },
            DeathPolicy::Retry,
            t(120),
        )
        .unwrap();
        assert_eq!(reaped, ReapOutcome { reaped: true, retried: 1, failed: 0 });
        assert_eq!(state(store, id), "ready");
        assert!(store.processes().unwrap().is_empty());
    }
);

backend_test!(
    fn reap_retry_returns_claims_to_ready_with_a_process_died_record(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
        let p = register(store, "victim-7");
        claim(store, p, &["*"], 2);
        let outcome =
            reap_process(store, p, &DeathCause::Proven("pid 4242 is gone".into()), DeathPolicy::Retry, t(9)).unwrap();
        assert_eq!(outcome, ReapOutcome { reaped: true, retried: 2, failed: 0 });
        for &id in &ids {
            let row = store.job(id).unwrap().unwrap();
            assert_eq!((row.state.unwrap().as_str(), row.attempts, row.process_id), ("ready", 1, None));
            let record = last_error(store, id);
            assert_eq!(record.kind, FailureKind::ProcessDied);
            for part in [p.to_string().as_str(), "victim-7", "testhost", "4242"] {
                assert!(record.message.contains(part), "{part:?} in {:?}", record.message);
            }
            assert_eq!((record.cause.as_deref(), record.backtrace), (Some("pid 4242 is gone"), None));
        }
        assert!(store.processes().unwrap().is_empty());
        assert_eq!(totals(store), counts(2, 0, 0, 0, 0));
    }
);

backend_test!(
    fn reap_fail_policy_moves_claims_to_failed(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
        let p = register(store, "victim");
        claim(store, p, &["*"], 2);
        let cutoff = DeathCause::HeartbeatOlderThan { cutoff: t(60), deadline: None };
        let outcome = reap_process(store, p, &cutoff, DeathPolicy::Fail, t(61)).unwrap();
        assert_eq!(outcome, ReapOutcome { reaped: true, retried: 0, failed: 2 });
        for &id in &ids {
            assert_eq!(state(store, id), "failed");
            let record = last_error(store, id);
            assert_eq!(record.kind, FailureKind::ProcessDied);
            assert!(record.message.contains("victim"));
            assert!(record.cause.is_some());
        }
        assert_eq!(totals(store), counts(0, 0, 0, 2, 0));
    }
);

backend_test!(
    fn reap_retry_fails_jobs_that_reached_max_attempts(db: &TestDb) {
        let store = &db.store;
        let last_try = enqueue_one(store, NewJob { max_attempts: 1, ..job("once", "q", 0) });
        let more = enqueue_one(store, NewJob { max_attempts: 3, ..job("thrice", "q", 0) });
        let p = register(store, "victim");
        claim(store, p, &["*"], 2);
        let outcome = reap_process(store, p, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)).unwrap();
        assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 1 });
        assert_eq!(state(store, last_try), "failed");
        assert_eq!(last_error(store, last_try).kind, FailureKind::ProcessDied);
        assert_eq!(state(store, more), "ready");
    }
);

backend_test!(
    fn reap_of_a_missing_process_changes_nothing(db: &TestDb) {
        let store = &db.store;
        let outcome = reap_process(store, 9_999, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)).unwrap();
        assert_eq!(outcome, ReapOutcome::default());
    }
);

backend_test!(
    fn concurrent_reaps_of_one_process_release_its_claims_once(db: &TestDb) {
        let ids =
            enqueue(&db.store, &(0..10).map(|_| NewJob { max_attempts: 100, ..job("k", "q", 0) }).collect::<Vec<_>>());
        let other = db.connect_again();
        for round in 0..8 {
            let victim = register(&db.store, &format!("victim-{round}"));
            assert_eq!(claim(&db.store, victim, &["*"], 100).len(), 10);
            let barrier = Arc::new(Barrier::new(2));
            let watchdogs: Vec<_> = [db.store.clone(), other.clone()]
                .into_iter()
                .map(|store| {
                    let barrier = barrier.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        let cause = DeathCause::HeartbeatOlderThan { cutoff: t(1_000), deadline: None };
                        reap_process(&store, victim, &cause, DeathPolicy::Retry, t(1_000)).expect("reap_process")
                    })
                })
                .collect();
            let outcomes: Vec<ReapOutcome> =
                watchdogs.into_iter().map(|h| h.join().expect("watchdog thread")).collect();
            assert_eq!(outcomes.iter().filter(|o| o.reaped).count(), 1, "{outcomes:?}");
            assert_eq!(outcomes.iter().map(|o| o.retried).sum::<usize>(), 10, "{outcomes:?}");
            assert_eq!(outcomes.iter().map(|o| o.failed).sum::<usize>(), 0, "{outcomes:?}");
            assert_eq!(totals(&db.store), counts(10, 0, 0, 0, 0));
        }
        assert_eq!(db.store.job(ids[0]).unwrap().unwrap().attempts, 8);
    }
);

backend_test!(
    fn release_orphans_returns_claims_of_vanished_processes(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
        let vanished = register(store, "vanished");
        let live = register(store, "live");
        let lost = claim(store, vanished, &["*"], 2);
        let kept = claim(store, live, &["*"], 1);
        assert_eq!(store.release_orphans(t(5)).unwrap(), 0);
        // A process row removed behind the store's back, as a crash during cleanup might leave it.
        db.execute_sql(&format!("DELETE FROM solidq_processes WHERE id = {vanished}"));
        assert_eq!(store.release_orphans(t(5)).unwrap(), 2);
        assert_eq!(store.release_orphans(t(6)).unwrap(), 0);
        assert_eq!(state(store, ids[0]), "ready");
        assert_eq!(state(store, ids[1]), "ready");
        assert_eq!(state(store, kept[0].token.job_id), "claimed");
        assert!(fenced(store.complete_claims(&[lost[0].token], t(7)).unwrap()));
        assert!(applied(store.complete_claims(&[kept[0].token], t(7)).unwrap()));
    }
);

/// What only PostgreSQL has: session locks, `SKIP LOCKED`, row locks between claims and reaps.
mod postgres_only {
    use super::*;

    #[test]
    fn reap_waits_for_an_in_flight_claim_and_hands_its_claims_back() {
        let Some(db) = TestDb::postgres() else { return };
        reap_waits_for_an_in_flight_claim_and_hands_its_claims_back_on(&db);
    }
}

/// What only MySQL/MariaDB has: InnoDB row locks between claims and reaps.
mod mysql_only {
    use super::*;

    #[test]
    fn reap_waits_for_an_in_flight_claim_and_hands_its_claims_back() {
        let Some(db) = TestDb::mysql() else { return };
        reap_waits_for_an_in_flight_claim_and_hands_its_claims_back_on(&db);
    }
}

fn reap_waits_for_an_in_flight_claim_and_hands_its_claims_back_on(db: &TestDb) {
    let id = enqueue_one(&db.store, job("k", "q", 0));
    let p = register(&db.store, "victim");
    // A claim in flight, done as the store does it: guard the process row, move the job.
    let (begin, guard, now) = match db.backend() {
        "mysql" => ("START TRANSACTION", "LOCK IN SHARE MODE", "NOW(6)"),
        _ => ("BEGIN", "FOR KEY SHARE", "now()"),
    };
    let mut claimer = db.raw_connection();
    claimer
        .batch_execute(&format!(
            "{begin};
             SELECT id FROM solidq_processes WHERE id = {p} {guard};
             DELETE FROM solidq_ready_executions WHERE job_id = {id};
             INSERT INTO solidq_claimed_executions (job_id, process_id, created_at)
                 VALUES ({id}, {p}, {now});
             UPDATE solidq_jobs SET attempts = attempts + 1 WHERE id = {id};"
        ))
        .unwrap();
    let store = db.store.clone();
    let reaper =
        thread::spawn(move || reap_process(&store, p, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)));
    thread::sleep(Duration::from_millis(300));
    assert!(!reaper.is_finished(), "the reap waits for the claim");
    // A heartbeat is not blocked by the claim's guard on PostgreSQL (FOR KEY SHARE). On MySQL
    // the guard is a shared lock, so a heartbeat waits for the (short) claim to commit.
    if db.backend() == "postgres" {
        assert_eq!(db.connect_again().beat(p, t(2)).unwrap(), Beat::Stamped);
    }
    claimer.batch_execute("COMMIT").unwrap();
    let outcome = reaper.join().unwrap().expect("reap_process");
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 0 });
    assert_eq!(state(&db.store, id), "ready");
}

backend_test!(
    fn reap_dead_reaps_every_dead_process_of_a_pass_in_one_call(db: &TestDb) {
        let store = &db.store;
        enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
        let first = register(store, "first");
        let second = register(store, "second");
        let alive = register(store, "alive");
        claim(store, first, &["*"], 1);
        claim(store, second, &["*"], 1);
        claim(store, alive, &["*"], 1);
        store.beat(alive, t(100)).unwrap();
        let verdicts = vec![
            (first, DeathCause::Proven("pid gone".into())),
            (second, DeathCause::HeartbeatOlderThan { cutoff: t(50), deadline: None }),
            (alive, DeathCause::HeartbeatOlderThan { cutoff: t(50), deadline: None }),
            (9_999, DeathCause::Proven("never existed".into())),
        ];
        let reaped = store.reap_dead(&verdicts, DeathPolicy::Retry, t(100)).unwrap();
        assert_eq!(
            reaped.iter().map(|r| (r.process, r.name.as_str(), r.retried)).collect::<Vec<_>>(),
            [(first, "first", 1), (second, "second", 1)]
        );
        assert_eq!(store.processes().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [alive]);
        assert_eq!(totals(store), counts(2, 0, 1, 0, 0));
        assert!(store.reap_dead(&verdicts, DeathPolicy::Retry, t(101)).unwrap().is_empty(), "reaped once");
    }
);

backend_test!(
    fn settle_lost_claims_releases_only_claims_the_book_does_not_know(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("known", "q", 0), job("lost", "q", 0)]);
        let p = register(store, "worker");
        let claims = claim(store, p, &["*"], 2);
        let known = claims[0].token;
        // A claim in flight was seen meanwhile: nothing changes.
        assert_eq!(store.settle_lost_claims(p, t(2), |_| None).unwrap(), None);
        assert_eq!(totals(store), counts(0, 0, 2, 0, 0));
        let settled = store
            .settle_lost_claims(p, t(2), |held| {
                assert_eq!(held.len(), 2);
                Some(held.into_iter().filter(|token| *token != known).collect())
            })
            .unwrap();
        assert_eq!(settled, Some(1));
        assert_eq!(state(store, ids[0]), "claimed");
        let lost = store.job(ids[1]).unwrap().unwrap();
        assert_eq!((lost.state, lost.attempts), (Some(JobState::Ready), 0), "never started: attempt given back");
        assert_eq!(
            store.settle_lost_claims(p, t(3), |held| Some(held.into_iter().filter(|t| *t != known).collect())).unwrap(),
            Some(0)
        );
    }
);

/// Counts the store operations of one store by name.
#[derive(Default)]
struct Operations(std::sync::Mutex<std::collections::HashMap<&'static str, usize>>);

impl solidq::store::Observer for Operations {
    fn finished(&self, event: &solidq::store::StoreEvent) {
        *self.0.lock().unwrap().entry(event.operation).or_default() += 1;
    }
}

impl Operations {
    fn count(&self, operation: &str) -> usize {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }
}

backend_test!(
    /// Where the store sees every commit (SQLite: its watcher of `PRAGMA data_version`), the
    /// dispatcher and the watchdog read nothing while nothing changed, and read again after any
    /// write (this process's or another's) or once the earliest scheduled job is due. Without a
    /// watcher (PostgreSQL) they read on every pass. Either way they find the same jobs and
    /// processes.
    fn maintenance_reads_again_only_after_a_change_where_the_store_sees_every_commit(db: &TestDb) {
        use solidq::maintenance::dispatcher::{Dispatcher, DispatcherConfig};
        use solidq::maintenance::watchdog::{Watchdog, WatchdogConfig};
        use solidq::maintenance::{Pass, Service};
        let operations = Arc::new(Operations::default());
        let store = Store::connect(&db.url, 2).unwrap().observed_by(operations.clone());
        let other = db.connect_again();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = store.ready_listener().map(|listen| {
            let stop = stop.clone();
            thread::spawn(move || listen(&|| {}, &stop))
        });
        let watches = store.backend() == "sqlite";
        if watches {
            wait_until("the watcher to look", || operations.count("watching for commits") >= 2);
        }
        // Long enough for the watcher to see a commit (it looks every 25 ms).
        let seen = || thread::sleep(Duration::from_millis(200));
        let pass = |second| Pass { own: None, now: t(second), clock: Instant::now(), lease: None };

        let mut dispatcher = Dispatcher::new(DispatcherConfig::default());
        let looks = || operations.count("looking for due jobs");
        let mut expected = 0;
        let mut dispatch = |second: i64, reads: bool| {
            let moved = dispatcher.run_once(&store, pass(second)).unwrap().moved;
            expected += usize::from(reads || !watches);
            assert_eq!(looks(), expected, "pass at {second} s");
            moved
        };
        enqueue(&other, &[scheduled("later", t(100))]);
        seen();
        assert_eq!(dispatch(5, true), 0);
        assert_eq!(dispatch(6, false), 0, "nothing changed, nothing due");
        enqueue(&other, &[scheduled("sooner", t(50))]);
        seen();
        assert_eq!(dispatch(7, true), 0, "another process scheduled a job");
        enqueue(&store, &[scheduled("soonest", t(20))]);
        assert_eq!(dispatch(8, true), 0, "this store scheduled a job");
        assert_eq!(dispatch(19, false), 0);
        assert_eq!(dispatch(20, true), 1, "the earliest is due");
        assert_eq!(dispatch(21, true), 0, "after a move");
        assert_eq!(dispatch(49, false), 0);
        assert_eq!(dispatch(50, true), 1);

        let mut reaper = Watchdog::new(WatchdogConfig { pid_probe: false, ..WatchdogConfig::default() });
        let own = register(&store, "judge");
        let lists = || operations.count("listing processes");
        let mut expected = 0;
        let mut judge = |reads: bool| {
            reaper.run_once(&store, Pass { own: Some(own), ..pass(60) }).unwrap();
            expected += usize::from(reads || !watches);
            assert_eq!(lists(), expected);
        };
        judge(true);
        judge(false);
        register(&other, "newcomer");
        seen();
        judge(true);
        judge(false);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(watcher) = watcher {
            watcher.join().unwrap();
        }
    }
);

backend_test!(
    fn dispatcher_service_moves_due_jobs_in_batches_until_one_comes_back_short(db: &TestDb) {
        use solidq::maintenance::dispatcher::{DispatchOutcome, Dispatcher, DispatcherConfig};
        use solidq::maintenance::{Pass, Service};
        let store = &db.store;
        let due: Vec<NewJob> = (0..7).map(|i| scheduled(&format!("due-{i}"), t(10 + i))).collect();
        enqueue(store, &due);
        enqueue(store, &[scheduled("later", t(100))]);
        let config = DispatcherConfig { batch_size: 3, max_batches_per_pass: 2, ..DispatcherConfig::default() };
        let mut dispatcher = Dispatcher::new(config);
        let pass = |second| Pass { own: None, now: t(second), clock: Instant::now(), lease: None };
        // Nothing due: one read, no transaction.
        assert_eq!(dispatcher.run_once(store, pass(5)).unwrap(), DispatchOutcome { moved: 0, batches: 0 });
        // Two full batches, then the pass stops; the next pass takes the rest.
        assert_eq!(dispatcher.run_once(store, pass(50)).unwrap(), DispatchOutcome { moved: 6, batches: 2 });
        assert_eq!(dispatcher.run_once(store, pass(50)).unwrap(), DispatchOutcome { moved: 1, batches: 1 });
        assert_eq!(totals(store), counts(7, 1, 0, 0, 0));
    }
);

backend_test!(
    fn reaper_service_reaps_a_silent_process_only_after_watching_for_a_threshold(db: &TestDb) {
        use solidq::maintenance::watchdog::{Watchdog, WatchdogConfig};
        use solidq::maintenance::{Pass, Service};
        let store = &db.store;
        let id = enqueue_one(store, job("k", "q", 0));
        let silent = register(store, "silent"); // last beat at t(0)
        claim(store, silent, &["*"], 1);
        let me = register(store, "me");
        let config = WatchdogConfig {
            alive_threshold: Duration::from_secs(10),
            pid_probe: false,
            observation_gap: Duration::from_secs(2),
            ..WatchdogConfig::default()
        };
        let mut reaper = Watchdog::new(config);
        let start = Instant::now();
        let pass = |second: i64| Pass {
            own: Some(me),
            now: t(second),
            clock: start + Duration::from_secs(second as u64),
            lease: None,
        };
        for second in 30..40 {
            let outcome = reaper.run_once(store, pass(second)).unwrap();
            assert!(outcome.reaped.is_empty(), "reaped at {second} s, before watching for a whole threshold");
        }
        let outcome = reaper.run_once(store, pass(40)).unwrap();
        assert_eq!(outcome.reaped.len(), 1);
        assert_eq!((outcome.reaped[0].process, outcome.reaped[0].retried), (silent, 1));
        assert!(outcome.reaped[0].cause.contains("no heartbeat"), "{}", outcome.reaped[0].cause);
        assert_eq!(state(store, id), "ready");
        assert_eq!(store.processes().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [me], "never itself");
    }
);
