//! Jobs: enqueue, claim, and the transitions of claimed jobs, with fencing.

use super::*;
use crate::common::{backend_test, TestDb};

backend_test!(
    fn enqueue_puts_due_jobs_in_ready_and_future_jobs_in_scheduled(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(
            store,
            &[
                job("now", "default", 0),
                scheduled("past", t(-10)),
                scheduled("exactly-now", t(0)),
                scheduled("future", t(60)),
            ],
        );
        let states: Vec<String> = ids.iter().map(|&id| state(store, id)).collect();
        assert_eq!(states, ["ready", "ready", "ready", "scheduled"]);
        let future = store.job(ids[3]).unwrap().unwrap();
        assert_eq!(future.scheduled_at, Some(t(60)));
        assert_eq!((future.attempts, future.max_attempts), (0, 5));
        assert_eq!(totals(store), counts(3, 1, 0, 0, 0));
        assert_eq!(store.enqueue(&[], t(0)).expect("empty enqueue"), Vec::<JobId>::new());
    }
);

backend_test!(
    fn enqueue_returns_ids_in_input_order(db: &TestDb) {
        let store = &db.store;
        let jobs: Vec<NewJob> = (0..50)
            .map(|i| NewJob {
                arguments: json!({ "n": i }).to_string(),
                scheduled_at: (i % 2 == 1).then(|| t(100 + i)),
                ..job(&format!("kind-{i}"), "default", 50 - i as i32)
            })
            .collect();
        let ids = enqueue(store, &jobs);
        assert_eq!(ids.len(), 50);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
        for (i, id) in ids.iter().enumerate() {
            let row = store.job(*id).unwrap().unwrap();
            assert_eq!(row.kind, format!("kind-{i}"));
            assert_eq!(row.arguments, json!({ "n": i }).to_string());
        }
    }
);

backend_test!(
    fn enqueue_of_more_jobs_than_one_statement_binds_keeps_input_order(db: &TestDb) {
        let store = &db.store;
        // More rows than fit under either backend's bind-parameter limit in one INSERT.
        let jobs: Vec<NewJob> =
            (0..8_000).map(|i| NewJob { arguments: json!({ "n": i }).to_string(), ..job("bulk", "bulk", 0) }).collect();
        let ids = enqueue(store, &jobs);
        assert_eq!(ids.len(), 8_000);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 8_000);
        for i in (0..8_000).step_by(397).chain([7_999]) {
            let row = store.job(ids[i]).unwrap().unwrap();
            assert_eq!(row.arguments, json!({ "n": i }).to_string());
            assert_eq!(row.state, Some(JobState::Ready));
        }
        assert_eq!(totals(store), counts(8_000, 0, 0, 0, 0));
    }
);

backend_test!(
    fn enqueue_in_caller_transaction_commits_and_rolls_back_with_it(db: &TestDb) {
        match &db.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;").unwrap();
                check_transactional_enqueue(db, conn);
            }
            DatabaseUrl::Postgres(url) => {
                check_transactional_enqueue(db, PgConnection::establish(url).unwrap());
            }
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => check_transactional_enqueue(db, crate::common::mysql_connection(url)),
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => unreachable!("{}", crate::common::NO_MYSQL),
        }
    }
);

fn check_transactional_enqueue<C: Connection + EnqueueConnection>(db: &TestDb, mut conn: C) {
    let store = &db.store;
    let mut rolled_back = Vec::new();
    let result = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        rolled_back = conn.enqueue_jobs(&[job("tx", "default", 0)], t(0)).expect("enqueue_jobs");
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(result.is_err());
    assert_eq!(rolled_back.len(), 1);
    assert_eq!(store.job(rolled_back[0]).unwrap(), None);
    assert_eq!(totals(store), JobCounts::default());

    let committed = conn
        .transaction::<_, diesel::result::Error, _>(|conn| {
            let ids = conn
                .enqueue_jobs(&[job("tx", "default", 0), scheduled("tx-later", t(60))], t(0))
                .expect("enqueue_jobs");
            assert_eq!(store.job(ids[0]).unwrap(), None, "invisible before commit");
            Ok(ids)
        })
        .expect("commit");
    assert_eq!(state(store, committed[0]), "ready");
    assert_eq!(state(store, committed[1]), "scheduled");

    // Without an open transaction it commits on its own.
    let alone = conn.enqueue_jobs(&[job("alone", "default", 0)], t(0)).expect("enqueue_jobs");
    assert_eq!(state(store, alone[0]), "ready");
    assert_eq!(totals(store), counts(2, 1, 0, 0, 0));
}

backend_test!(
    fn claim_takes_queues_in_given_order_then_priority_then_id(db: &TestDb) {
        let store = &db.store;
        enqueue(
            store,
            &[
                job("b-urgent", "b", -10),
                job("a-low", "a", 5),
                job("a-high-1", "a", 1),
                job("b-normal", "b", 0),
                job("a-high-2", "a", 1),
            ],
        );
        let p = register(store, "worker");
        let got = claim(store, p, &["a", "b"], 10);
        assert_eq!(kinds(&got), ["a-high-1", "a-high-2", "a-low", "b-urgent", "b-normal"]);
        assert_eq!(got[0].queue, "a");
        assert_eq!(got[0].priority, 1);
        let claim_ids: HashSet<i64> = got.iter().map(|c| c.token.claim_id).collect();
        assert_eq!(claim_ids.len(), 5);
    }
);

backend_test!(
    fn claim_fills_the_limit_across_patterns_in_order(db: &TestDb) {
        let store = &db.store;
        enqueue(
            store,
            &[job("a1", "a", 0), job("b1", "b", 0), job("a2", "a", 0), job("b2", "b", 0), job("b3", "b", 0)],
        );
        let p = register(store, "worker");
        assert_eq!(kinds(&claim(store, p, &["a", "b"], 3)), ["a1", "a2", "b1"]);
        assert_eq!(kinds(&claim(store, p, &["a", "b"], 3)), ["b2", "b3"]);
        assert!(claim(store, p, &["a", "b"], 3).is_empty());
    }
);

backend_test!(
    fn claim_matches_prefix_and_all_patterns_case_sensitively(db: &TestDb) {
        let store = &db.store;
        enqueue(
            store,
            &[
                job("mail", "mail", 0),
                job("weekly", "reports_weekly", 0),
                job("daily", "reports_daily", 0),
                job("upper", "Reports_x", 0),
                job("bare", "reports", 0),
            ],
        );
        let p = register(store, "worker");
        let got = claim(store, p, &["reports*"], 10);
        assert_eq!(kinds(&got), ["weekly", "daily", "bare"]);
        let rest = claim(store, p, &["*"], 10);
        assert_eq!(kinds(&rest), ["mail", "upper"]);
    }
);

backend_test!(
    fn claim_escapes_like_wildcards_in_prefixes(db: &TestDb) {
        let store = &db.store;
        enqueue(
            store,
            &[
                job("axb", "axb", 0),
                job("a_b", "a_b", 0),
                job("azc", "azc", 0),
                job("a%c", "a%c", 0),
                job("back", "a\\z", 0),
            ],
        );
        let p = register(store, "worker");
        assert_eq!(kinds(&claim(store, p, &["a_*"], 10)), ["a_b"]);
        assert_eq!(kinds(&claim(store, p, &["a%*"], 10)), ["a%c"]);
        assert_eq!(kinds(&claim(store, p, &["a\\*"], 10)), ["back"]);
        assert_eq!(kinds(&claim(store, p, &["*"], 10)), ["axb", "azc"]);
    }
);

backend_test!(
    fn claim_never_takes_a_job_twice_across_overlapping_patterns(db: &TestDb) {
        let store = &db.store;
        enqueue(store, &[job("q1", "q1", 0), job("q2", "q2", 0), job("x", "x", 0)]);
        let p = register(store, "worker");
        let got = claim(store, p, &["q1", "q*", "*", "x"], 10);
        assert_eq!(kinds(&got), ["q1", "q2", "x"]);
        assert_eq!(totals(store), counts(0, 0, 3, 0, 0));
    }
);

backend_test!(
    fn a_claimed_job_runs_the_next_attempt(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "worker");
        let first = claim(store, p, &["*"], 1);
        assert_eq!((first[0].attempts, first[0].max_attempts), (1, 5));
        assert!(applied(store.retry_claims(&[first[0].token], &error("x"), t(2), t(2)).unwrap()));
        let second = claim(store, p, &["*"], 1);
        assert_eq!(second[0].attempts, 2);
        assert_eq!(store.job(id).unwrap().unwrap().attempts, 2);
    }
);

backend_test!(
    /// The claim does not write the job row; the finish writes it once, with the attempt counted.
    fn finishing_writes_the_attempt_with_the_outcome(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
        let p = register(store, "worker");
        let claimed = claim(store, p, &["*"], 2);
        assert_eq!(claimed.iter().map(|j| j.attempts).collect::<Vec<_>>(), [1, 1]);
        assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 1, "shown with the running attempt");
        let tokens: Vec<_> = claimed.iter().map(|j| j.token).collect();
        let settled = store.complete_claims(&tokens, t(5)).unwrap();
        assert_eq!((settled.applied.len(), settled.fenced.len()), (2, 0));
        for id in &ids {
            let row = store.job(*id).unwrap().unwrap();
            assert_eq!((row.state, row.attempts, row.finished_at), (Some(JobState::Finished), 1, Some(t(5))));
        }
        // A finish whose claim is gone writes nothing, attempts included.
        assert!(fenced(store.complete_claims(&tokens[..1], t(6)).unwrap()));
        assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 1);
    }
);

backend_test!(
    /// A claim handed back unstarted (or a run a graceful drain cut short) costs no attempt: only
    /// executions that started and ended, and process deaths, count.
    fn release_and_deregister_give_the_attempt_back(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
        let p = register(store, "worker");
        let first = claim(store, p, &["*"], 2);
        assert_eq!(first.iter().map(|j| j.attempts).collect::<Vec<_>>(), [1, 1]);
        assert!(applied(store.release_claims(&[first[0].token], t(2)).unwrap()));
        assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 0);
        // A stale release gives nothing back twice.
        assert!(fenced(store.release_claims(&[first[0].token], t(2)).unwrap()));
        assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 0);
        assert_eq!(claim(store, p, &["*"], 1)[0].attempts, 1, "the next run is attempt 1 again");
        assert_eq!(store.deregister(p, t(3)).unwrap(), 2);
        assert_eq!(ids.iter().map(|id| store.job(*id).unwrap().unwrap().attempts).collect::<Vec<_>>(), [0, 0]);
        assert_eq!(totals(store), counts(2, 0, 0, 0, 0));
    }
);

backend_test!(
    fn claim_for_a_missing_process_claims_nothing(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        assert!(claim(store, 9_999, &["*"], 10).is_empty());
        let p = register(store, "worker");
        store.deregister(p, t(1)).unwrap();
        assert!(claim(store, p, &["*"], 10).is_empty());
        assert_eq!(state(store, id), "ready");
        assert_eq!(store.job(id).unwrap().unwrap().attempts, 0);
    }
);

backend_test!(
    fn concurrent_claims_never_hand_out_a_job_twice(db: &TestDb) {
        let jobs: Vec<NewJob> = (0..500)
            .map(|i| NewJob { arguments: json!({ "n": i }).to_string(), ..job("c", "default", i % 3) })
            .collect();
        let mut ids = enqueue(&db.store, &jobs);
        // Two threads share the test's store, two have stores of their own (like other processes).
        let stores: Vec<SharedStore> = vec![db.store.clone(), db.store.clone(), db.connect_again(), db.connect_again()];
        let barrier = Arc::new(Barrier::new(stores.len()));
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let p = register(&store, &format!("claimer-{i}"));
                    barrier.wait();
                    let mut got = Vec::new();
                    loop {
                        let batch = store.claim(p, &[QueuePattern::All], &["c".into()], 7, t(1)).expect("claim");
                        if batch.is_empty() {
                            break;
                        }
                        got.extend(batch.into_iter().map(|c| c.token.job_id));
                    }
                    got
                })
            })
            .collect();
        let mut claimed: Vec<JobId> = handles.into_iter().flat_map(|h| h.join().expect("claimer thread")).collect();
        claimed.sort_unstable();
        ids.sort_unstable();
        assert_eq!(claimed, ids, "every job claimed exactly once");
        assert_eq!(totals(&db.store), counts(0, 0, 500, 0, 0));
    }
);

backend_test!(
    fn finish_marks_the_job_finished_once(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        assert!(applied(store.complete_claims(&[token], t(5)).unwrap()));
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state.unwrap().as_str(), row.finished_at), ("finished", Some(t(5))));
        assert!(fenced(store.complete_claims(&[token], t(6)).unwrap()));
        assert_eq!(store.job(id).unwrap().unwrap().finished_at, Some(t(5)));
        assert_eq!(totals(store), counts(0, 0, 0, 0, 1));
    }
);

backend_test!(
    fn fail_moves_the_job_to_failed_with_its_error(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        let record = FailureRecord {
            kind: FailureKind::Panic,
            message: "boom".into(),
            backtrace: Some("src/x.rs:1".into()),
            cause: None,
        };
        assert!(applied(store.fail_claims(&[token], &record, t(5)).unwrap()));
        assert_eq!(state(store, id), "failed");
        assert_eq!(last_error(store, id), record);
        assert!(fenced(store.fail_claims(&[token], &error("again"), t(6)).unwrap()));
        assert_eq!(last_error(store, id), record);
        assert_eq!(totals(store), counts(0, 0, 0, 1, 0));
    }
);

backend_test!(
    fn retry_schedules_the_job_again_or_readies_it_when_due(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        assert!(applied(store.retry_claims(&[token], &error("later"), t(60), t(2)).unwrap()));
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state.unwrap().as_str(), row.scheduled_at), ("scheduled", Some(t(60))));
        assert_eq!(last_error(store, id), error("later"));
        assert!(fenced(store.retry_claims(&[token], &error("stale"), t(2), t(2)).unwrap()));
        assert_eq!(last_error(store, id), error("later"));

        assert_eq!(store.dispatch_due(t(60), 10).unwrap(), 1);
        let token = store.claim(p, &[QueuePattern::All], &["k".into()], 1, t(61)).unwrap()[0].token;
        assert!(applied(store.retry_claims(&[token], &error("now"), t(61), t(61)).unwrap()));
        assert_eq!(state(store, id), "ready");
        assert_eq!(store.job(id).unwrap().unwrap().attempts, 2);
    }
);

backend_test!(
    fn release_returns_the_claim_to_ready(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "q", 3));
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        assert!(applied(store.release_claims(&[token], t(2)).unwrap()));
        assert_eq!(state(store, id), "ready");
        assert!(fenced(store.release_claims(&[token], t(3)).unwrap()));
        let again = claim(store, p, &["q"], 1);
        assert_eq!((again[0].token.job_id, again[0].priority), (id, 3));
    }
);

backend_test!(
    fn stale_token_after_reap_changes_nothing_and_a_reclaim_gets_a_new_claim_id(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let dead = register(store, "dead");
        let old = claim(store, dead, &["*"], 1)[0].token;
        let outcome =
            reap_process(store, dead, &DeathCause::Proven("pid gone".into()), DeathPolicy::Retry, t(10)).unwrap();
        assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 0 });

        let live = register(store, "live");
        let new = claim(store, live, &["*"], 1)[0].token;
        assert_eq!(new.job_id, old.job_id);
        assert_ne!(new.claim_id, old.claim_id);

        assert!(fenced(store.complete_claims(&[old], t(11)).unwrap()));
        assert!(fenced(store.fail_claims(&[old], &error("x"), t(11)).unwrap()));
        assert!(fenced(store.retry_claims(&[old], &error("x"), t(11), t(11)).unwrap()));
        assert!(fenced(store.release_claims(&[old], t(11)).unwrap()));
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state.unwrap().as_str(), row.process_id), ("claimed", Some(live)));
        assert_eq!(row.finished_at, None);
        assert_eq!(row.attempts, 2);

        assert!(applied(store.complete_claims(&[new], t(12)).unwrap()));
        assert_eq!(state(store, id), "finished");
    }
);

backend_test!(
    fn stale_token_after_release_changes_nothing(db: &TestDb) {
        let store = &db.store;
        let id = enqueue_one(store, job("k", "default", 0));
        let p = register(store, "worker");
        let old = claim(store, p, &["*"], 1)[0].token;
        store.release_claims(&[old], t(2)).unwrap();
        let new = claim(store, p, &["*"], 1)[0].token;
        assert!(new.claim_id > old.claim_id, "claim ids are never reused");
        assert!(fenced(store.complete_claims(&[old], t(3)).unwrap()));
        assert_eq!(state(store, id), "claimed");
    }
);

/// What only PostgreSQL has: session locks, `SKIP LOCKED`, row locks between claims and reaps.
mod postgres_only {
    use super::*;

    #[test]
    fn claim_skips_rows_locked_by_a_concurrent_claim() {
        let Some(db) = TestDb::postgres() else { return };
        claim_skips_rows_locked_by_a_concurrent_claim_on(&db);
    }

    #[test]
    fn claim_waits_for_an_in_flight_reap_and_then_claims_nothing() {
        let Some(db) = TestDb::postgres() else { return };
        claim_waits_for_an_in_flight_reap_and_then_claims_nothing_on(&db);
    }
}

/// What only MySQL/MariaDB has: InnoDB row and gap locks, `SKIP LOCKED`.
mod mysql_only {
    use super::*;

    #[test]
    fn claim_skips_rows_locked_by_a_concurrent_claim() {
        let Some(db) = TestDb::mysql() else { return };
        claim_skips_rows_locked_by_a_concurrent_claim_on(&db);
    }

    #[test]
    fn claim_waits_for_an_in_flight_reap_and_then_claims_nothing() {
        let Some(db) = TestDb::mysql() else { return };
        claim_waits_for_an_in_flight_reap_and_then_claims_nothing_on(&db);
    }

    /// Issue 17, item 1: under REPEATABLE READ a claim that reaches the end of the ready index
    /// gap-locks it, and enqueues wait until the claim commits (Solid Queue's MySQL deadlocks).
    /// The store's connections run at READ COMMITTED: an open claim on an empty queue does not
    /// hold up an enqueue, and an open enqueue does not hold up a claim.
    #[test]
    fn claims_and_enqueues_do_not_wait_for_each_other_on_an_empty_queue() {
        let Some(db) = TestDb::mysql() else { return };
        let store = &db.store;
        let p = register(store, "worker");
        // A claim in flight, as the store runs it, on an empty queue.
        let mut claimer = db.raw_connection();
        claimer
            .batch_execute(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
                 START TRANSACTION;
                 SELECT id, job_id FROM solidq_ready_executions WHERE queue_name = 'q'
                     ORDER BY priority, job_id LIMIT 10 FOR UPDATE SKIP LOCKED;",
            )
            .unwrap();
        let started = Instant::now();
        let id = enqueue_one(store, job("k", "q", 0));
        assert!(started.elapsed() < Duration::from_secs(1), "the enqueue waited {:?}", started.elapsed());
        claimer.batch_execute("COMMIT").unwrap();
        // An enqueue in flight (its rows inserted, not committed) does not hold up a claim.
        let mut enqueuer = db.raw_connection();
        enqueuer
            .batch_execute(
                "START TRANSACTION;
                 INSERT INTO solidq_jobs (queue_name, class_name, arguments, priority, attempts, max_attempts,
                     created_at, updated_at) VALUES ('q', 'k', '{}', 0, 0, 5, NOW(6), NOW(6));
                 INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at, class_name)
                     VALUES (LAST_INSERT_ID(), 'q', 0, NOW(6), 'k');",
            )
            .unwrap();
        let started = Instant::now();
        let claimed = store.claim(p, &[QueuePattern::parse("q")], &["k".into()], 10, t(1)).expect("claim");
        assert!(started.elapsed() < Duration::from_secs(1), "the claim waited {:?}", started.elapsed());
        assert_eq!(claimed.iter().map(|c| c.token.job_id).collect::<Vec<_>>(), [id], "only the committed job");
        enqueuer.batch_execute("ROLLBACK").unwrap();
    }
}

fn claim_skips_rows_locked_by_a_concurrent_claim_on(db: &TestDb) {
    let store = &db.store;
    let ids = enqueue(store, &[job("first", "q", 0), job("second", "q", 0)]);
    let p = register(store, "worker");
    // Another session holds the first ready row locked, as an in-flight claim would.
    let mut blocker = db.raw_connection();
    blocker.batch_execute("BEGIN").unwrap();
    blocker
        .batch_execute(&format!("SELECT id FROM solidq_ready_executions WHERE job_id = {} FOR UPDATE", ids[0]))
        .unwrap();
    let started = Instant::now();
    assert_eq!(kinds(&claim(store, p, &["*"], 2)), ["second"]);
    assert!(started.elapsed() < Duration::from_secs(2), "the claim did not wait");
    blocker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(kinds(&claim(store, p, &["*"], 2)), ["first"]);
}

fn claim_waits_for_an_in_flight_reap_and_then_claims_nothing_on(db: &TestDb) {
    let id = enqueue_one(&db.store, job("k", "q", 0));
    let p = register(&db.store, "victim");
    // A reap that has deleted the process row but not committed yet.
    let mut reaper = db.raw_connection();
    reaper.batch_execute(&format!("BEGIN; DELETE FROM solidq_processes WHERE id = {p};")).unwrap();
    let store = db.store.clone();
    let claimer = thread::spawn(move || store.claim(p, &[QueuePattern::All], &["k".into()], 10, t(1)));
    thread::sleep(Duration::from_millis(300));
    assert!(!claimer.is_finished(), "the claim waits for the reap");
    reaper.batch_execute("COMMIT").unwrap();
    let claimed = claimer.join().unwrap().expect("claim");
    assert!(claimed.is_empty(), "nothing claimed for a reaped process");
    assert_eq!(state(&db.store, id), "ready");
}

backend_test!(
    fn record_writes_a_mixed_batch_in_one_transaction_and_reports_fenced_tokens(db: &TestDb) {
        use solidq::lifecycle::Transition;
        let store = &db.store;
        let ids = enqueue(
            store,
            &[
                job("done", "q", 0),
                job("again", "q", 0),
                job("broken", "q", 0),
                job("back", "q", 0),
                job("later", "q", 0),
            ],
        );
        let p = register(store, "worker");
        let claims = claim(store, p, &["*"], 5);
        let [done, again, broken, back, later] =
            [claims[0].token, claims[1].token, claims[2].token, claims[3].token, claims[4].token];
        // A token of a claim that is gone: released by someone else first.
        assert!(applied(store.release_claims(&[back], t(2)).unwrap()));
        let batch = vec![
            (done, Transition::Complete),
            (again, Transition::Retry(error("flaky"), Duration::from_secs(30))),
            (broken, Transition::Fail(error("bad input"))),
            (back, Transition::Complete),
            (later, Transition::Snooze(Duration::from_secs(60))),
        ];
        let settled = store.record(&batch, t(3)).unwrap();
        assert_eq!(settled.applied, [done, again, broken, later]);
        assert_eq!(settled.fenced, [back]);
        assert_eq!(state(store, ids[0]), "finished");
        assert_eq!(store.job(ids[1]).unwrap().unwrap().scheduled_at, Some(t(33)));
        assert_eq!((state(store, ids[1]), last_error(store, ids[1])), ("scheduled".into(), error("flaky")));
        assert_eq!((state(store, ids[2]), last_error(store, ids[2])), ("failed".into(), error("bad input")));
        assert_eq!(state(store, ids[3]), "ready", "the fenced token changed nothing");
        let snoozed = store.job(ids[4]).unwrap().unwrap();
        assert_eq!((snoozed.scheduled_at, snoozed.attempts, snoozed.last_error), (Some(t(63)), 0, None), "no attempt");
        assert_eq!(state(store, ids[4]), "scheduled");
        // Written once: the same batch again is fenced as a whole.
        assert_eq!(store.record(&batch, t(4)).unwrap().applied, []);
        assert_eq!(store.record(&[], t(4)).unwrap(), Settled::default());
    }
);

backend_test!(
    fn claim_takes_only_the_kinds_it_is_given(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("old", "q", 0), job("new", "q", -5), job("old", "q", 1)]);
        let p = register(store, "old-release");
        let got = store.claim(p, &[QueuePattern::All], &["old".into()], 10, t(1)).unwrap();
        assert_eq!(got.iter().map(|c| c.token.job_id).collect::<Vec<_>>(), [ids[0], ids[2]]);
        assert!(store.claim(p, &[QueuePattern::All], &[], 10, t(1)).unwrap().is_empty(), "no handlers, no claims");
        let row = store.job(ids[1]).unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (Some(JobState::Ready), 0), "the unknown kind waits, unattempted");
        let got = store.claim(p, &[QueuePattern::parse("q")], &["new".into(), "old".into()], 10, t(1)).unwrap();
        assert_eq!(got.iter().map(|c| c.token.job_id).collect::<Vec<_>>(), [ids[1]]);
    }
);

backend_test!(
    /// A kind, queue, unique key or concurrency key with a control character, surrounding
    /// whitespace or over 255 bytes is refused alike by the store's enqueue, a bulk enqueue, the
    /// application's transaction and a pause, naming the field, and nothing is written.
    fn names_breaking_the_rules_are_refused_by_every_enqueue_path(db: &TestDb) {
        use solidq::model::ConcurrencyLimit;
        use solidq::StoreError;
        let store = &db.store;
        let app = solidq::store::connection::app_pool(&db.url, 1).unwrap();
        let bad = [
            (job("k\u{1}", "q", 0), "the kind \"k\\u{1}\" contains the control character U+0001"),
            (job("k", " ", 0), "the queue name \" \" has leading or trailing whitespace"),
            (job(&"k".repeat(256), "q", 0), "is 256 bytes long"),
            (NewJob { unique_key: Some("key\n".into()), ..job("k", "q", 0) }, "the unique key \"key\\n\""),
            (
                NewJob { concurrency: Some(ConcurrencyLimit::new(" acct", 1)), ..job("k", "q", 0) },
                "the concurrency key",
            ),
        ];
        for (new_job, expected) in bad {
            for refused in [
                store.enqueue(std::slice::from_ref(&new_job), t(0)).map(|_| ()),
                store.enqueue(&[job("fine", "q", 0), new_job.clone()], t(0)).map(|_| ()),
                app.get().unwrap().enqueue_jobs(std::slice::from_ref(&new_job), t(0)).map(|_| ()),
            ] {
                match refused {
                    Err(StoreError::InvalidJob { problem, .. }) => assert!(problem.contains(expected), "{problem}"),
                    other => panic!("{expected}: expected InvalidJob, got {other:?}"),
                }
            }
        }
        match store.pause_queue("mail\t", t(0)) {
            Err(StoreError::InvalidName(problem)) => assert!(problem.contains("control character U+0009"), "{problem}"),
            other => panic!("expected InvalidName, got {other:?}"),
        }
        assert_eq!(totals(store), counts(0, 0, 0, 0, 0));
        enqueue_one(store, job(&"k".repeat(255), "a queue", 0));
    }
);

backend_test!(
    /// SQLite keeps times as text: a five-digit year would sort before every four-digit one and
    /// the job would run at once. Every backend refuses such times the same way, keeps the latest
    /// allowed one scheduled, and clamps retry delays to it.
    fn times_past_the_latest_schedule_are_refused_and_the_latest_sorts_last(db: &TestDb) {
        use solidq::model::latest_schedule;
        use solidq::StoreError;
        let store = &db.store;
        let too_late = latest_schedule() + chrono::Duration::seconds(1);
        let refused = store.enqueue(&[NewJob { scheduled_at: Some(too_late), ..job("far", "q", 0) }], t(0));
        match refused {
            Err(StoreError::InvalidJob { kind, problem }) => {
                assert_eq!(kind, "far");
                assert!(problem.contains("the latest time solidq stores"), "{problem}");
            }
            other => panic!("expected InvalidJob, got {other:?}"),
        }
        assert_eq!(totals(store), counts(0, 0, 0, 0, 0));
        let latest = enqueue_one(store, NewJob { scheduled_at: Some(latest_schedule()), ..job("latest", "q", 0) });
        let soon = enqueue_one(store, job("soon", "q", 0));
        assert_eq!(store.dispatch_due(t(1_000_000), 10).unwrap(), 0, "the latest time is not due");
        assert_eq!(state(store, latest), "scheduled");
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        assert_eq!(token.job_id, soon);
        assert!(applied(store.retry_claims(&[token], &error("later"), latest_schedule(), t(2)).unwrap()));
        let retried = store.job(soon).unwrap().unwrap();
        assert_eq!((retried.state, retried.scheduled_at), (Some(JobState::Scheduled), Some(latest_schedule())));
        assert_eq!(store.dispatch_due(t(1_000_000), 10).unwrap(), 0);
    }
);

backend_test!(
    /// A time past 2038 (where MySQL's TIMESTAMP ends, and where diesel's `Timestamp` bind
    /// would turn into NULL on a MySQL DATETIME column) keeps every microsecond, and the job is
    /// due exactly then.
    fn a_job_scheduled_in_2040_round_trips_to_the_microsecond(db: &TestDb) {
        let store = &db.store;
        let at = NaiveDate::from_ymd_opt(2040, 6, 1)
            .and_then(|d| d.and_hms_micro_opt(12, 0, 0, 123_456))
            .expect("valid time");
        let id = enqueue_one(store, scheduled("future", at));
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state, row.scheduled_at), (Some(JobState::Scheduled), Some(at)));
        assert_eq!(store.dispatch_due(at - chrono::Duration::microseconds(1), 10).unwrap(), 0, "not due yet");
        assert_eq!(store.dispatch_due(at, 10).unwrap(), 1, "due at its time");
        assert_eq!(state(store, id), "ready");
        // A retry delayed into 2040 is kept the same way.
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        assert!(applied(store.retry_claims(&[token], &error("later"), at, t(2)).unwrap()));
        assert_eq!(store.job(id).unwrap().unwrap().scheduled_at, Some(at));
    }

    /// Names are compared byte for byte on every backend (MySQL's default collations would
    /// merge them): queues `A` and `a` are two queues, unique keys `A` and `a` two keys.
    fn names_that_differ_only_in_case_are_different(db: &TestDb) {
        let store = &db.store;
        let keyed = |key: &str, queue: &str| NewJob { unique_key: Some(key.into()), ..job("k", queue, 0) };
        let ids = enqueue(store, &[keyed("A", "A"), keyed("a", "a")]);
        assert_ne!(ids[0], ids[1], "two unique keys, two jobs");
        assert_eq!(totals(store).ready, 2);
        let p = register(store, "worker");
        let from_lower: Vec<JobId> = claim(store, p, &["a"], 10).iter().map(|c| c.token.job_id).collect();
        assert_eq!(from_lower, [ids[1]], "queue `a` holds only its own job");
        let from_upper: Vec<JobId> = claim(store, p, &["A"], 10).iter().map(|c| c.token.job_id).collect();
        assert_eq!(from_upper, [ids[0]]);
    }
);

backend_test!(
    /// The natural code with an r2d2 pool compiles and works on every backend: the transaction's
    /// connection is a `PooledConnection`.
    fn enqueue_in_takes_a_pooled_connection_inside_its_transaction(db: &TestDb) {
        use diesel::r2d2::{ConnectionManager, Pool};
        use solidq::{EnqueueOptions, Queue};
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Ping;
        impl solidq::Job for Ping {
            const KIND: &'static str = "ping";
        }
        let id = match &db.url {
            DatabaseUrl::Sqlite(path) => {
                let pool = Pool::builder()
                    .max_size(1)
                    .build(ConnectionManager::<SqliteConnection>::new(path.to_string_lossy()))
                    .unwrap();
                let mut conn = pool.get().unwrap();
                conn.transaction(|conn| Queue::enqueue_in(conn, &Ping, EnqueueOptions::new())).unwrap()
            }
            DatabaseUrl::Postgres(url) => {
                let pool = Pool::builder().max_size(1).build(ConnectionManager::<PgConnection>::new(url)).unwrap();
                let mut conn = pool.get().unwrap();
                conn.transaction(|conn| Queue::enqueue_in(conn, &Ping, EnqueueOptions::new())).unwrap()
            }
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => {
                let pool =
                    Pool::builder().max_size(1).build(ConnectionManager::<diesel::MysqlConnection>::new(url)).unwrap();
                let mut conn = pool.get().unwrap();
                conn.transaction(|conn| Queue::enqueue_in(conn, &Ping, EnqueueOptions::new())).unwrap()
            }
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => unreachable!("{}", crate::common::NO_MYSQL),
        };
        assert_eq!(state(&db.store, id), "ready");
        let app = solidq::store::connection::app_pool(&db.url, 1).unwrap();
        let mut conn = app.get().unwrap();
        let id = solidq::store::connection::write_transaction(&mut conn, |conn| {
            Queue::enqueue_in(conn, &Ping, EnqueueOptions::new())
        })
        .unwrap();
        assert_eq!(state(&db.store, id), "ready");
    }
);

backend_test!(
    fn claim_tells_when_each_job_became_ready(db: &TestDb) {
        let store = &db.store;
        store.enqueue(&[job("now", "default", 0)], t(0)).expect("enqueue");
        store.enqueue(&[scheduled("later", t(30))], t(0)).expect("enqueue");
        assert_eq!(store.dispatch_due(t(40), 10).expect("dispatch"), 1);
        let p = register(store, "worker");
        let kinds = vec!["now".to_string(), "later".to_string()];
        let got = store.claim(p, &[QueuePattern::All], &kinds, 10, t(50)).expect("claim");
        let ready_at: Vec<_> = got.iter().map(|c| (c.kind.as_str(), c.ready_at)).collect();
        // An immediate job is ready from its enqueue, a scheduled one from its dispatch.
        assert_eq!(ready_at, [("now", t(0)), ("later", t(40))]);
    }
);
