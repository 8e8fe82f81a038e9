//! The store conformance suite: every behaviour of the `Store` contract, written once and run
//! against each backend (`sqlite::…` always, `postgres::…` when `SOLIDQ_TEST_POSTGRES_URL` is
//! set). Every test gets its own database file or schema.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use serde_json::json;
use solidq::config::DatabaseUrl;
use solidq::job::JobId;
use solidq::store::postgres::PgStore;
use solidq::store::{
    Beat, ClaimedJob, DeathCause, DeathPolicy, EnqueueConnection, FailureRecord, Fenced, JobCounts, NewProcess,
    ProcessId, QueueCounts, QueuePattern, ReapOutcome, SharedStore, Store,
};
use solidq::NewJob;

use common::TestDb;

macro_rules! conformance {
    ($backend:ident, $make:expr $(, only: [$($only:ident),* $(,)?])?) => {
        mod $backend {
            conformance!(@tests $make;
                migrate_is_idempotent,
                enqueue_puts_due_jobs_in_ready_and_future_jobs_in_scheduled,
                enqueue_returns_ids_in_input_order,
                enqueue_of_more_jobs_than_one_statement_binds_keeps_input_order,
                enqueue_in_caller_transaction_commits_and_rolls_back_with_it,
                claim_takes_queues_in_given_order_then_priority_then_id,
                claim_fills_the_limit_across_patterns_in_order,
                claim_matches_prefix_and_all_patterns_case_sensitively,
                claim_escapes_like_wildcards_in_prefixes,
                claim_never_takes_a_job_twice_across_overlapping_patterns,
                claim_increments_attempts,
                release_and_deregister_give_the_attempt_back,
                claim_for_a_missing_process_claims_nothing,
                concurrent_claims_never_hand_out_a_job_twice,
                finish_marks_the_job_finished_once,
                fail_moves_the_job_to_failed_with_its_error,
                retry_schedules_the_job_again_or_readies_it_when_due,
                release_returns_the_claim_to_ready,
                stale_token_after_reap_changes_nothing_and_a_reclaim_gets_a_new_claim_id,
                stale_token_after_release_changes_nothing,
                dispatch_due_moves_only_due_jobs_in_order_up_to_the_batch,
                heartbeat_stamps_a_live_process_and_reports_a_missing_one,
                keep_session_of_a_healthy_or_unknown_process_does_nothing,
                claimed_by_lists_the_claims_of_a_process_by_job_id,
                register_rejects_a_duplicate_name,
                processes_lists_rows_in_registration_order_with_metadata,
                deregister_releases_claims_to_ready_and_removes_the_process,
                reap_with_heartbeat_cutoff_skips_a_process_that_beat_after_it,
                reap_retry_returns_claims_to_ready_with_a_process_died_record,
                reap_fail_policy_moves_claims_to_failed,
                reap_retry_fails_jobs_that_reached_max_attempts,
                reap_of_a_missing_process_changes_nothing,
                concurrent_reaps_of_one_process_release_its_claims_once,
                release_orphans_returns_claims_of_vanished_processes,
                counts_report_totals_and_per_queue_states_sorted_by_queue,
                job_reports_state_and_claiming_process,
            );
            $(conformance!(@tests $make; $($only),*);)?
        }
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(db) = $make {
                    super::$name(&db);
                }
            }
        )*
    };
}

conformance!(sqlite, Some(crate::common::sqlite_db()));
conformance!(postgres, crate::common::postgres_db(), only: [
    migrations_create_the_tables_in_the_url_schema,
    sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one,
    keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again,
    claim_skips_rows_locked_by_a_concurrent_claim,
    claim_waits_for_an_in_flight_reap_and_then_claims_nothing,
    reap_waits_for_an_in_flight_claim_and_hands_its_claims_back,
]);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fixed clock: 2026-01-01 00:00:00 UTC plus `secs`.
fn t(secs: i64) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("valid date")
        + chrono::Duration::seconds(secs)
}

fn job(kind: &str, queue: &str, priority: i32) -> NewJob {
    NewJob {
        kind: kind.to_string(),
        arguments: json!({ "kind": kind }).to_string(),
        queue: queue.to_string(),
        priority,
        max_attempts: 5,
        scheduled_at: None,
    }
}

fn scheduled(kind: &str, at: NaiveDateTime) -> NewJob {
    NewJob { scheduled_at: Some(at), ..job(kind, "default", 0) }
}

fn new_process(name: &str) -> NewProcess {
    NewProcess {
        kind: "Runtime".to_string(),
        name: name.to_string(),
        pid: 4242,
        hostname: "testhost".to_string(),
        metadata: json!({ "workers": ["*:3"], "boot": name }),
    }
}

fn register(store: &dyn Store, name: &str) -> ProcessId {
    store.register_process(&new_process(name), t(0)).expect("register_process")
}

fn enqueue(store: &dyn Store, jobs: &[NewJob]) -> Vec<JobId> {
    store.enqueue(jobs, t(0)).expect("enqueue")
}

fn enqueue_one(store: &dyn Store, new_job: NewJob) -> JobId {
    enqueue(store, &[new_job])[0]
}

fn claim(store: &dyn Store, process: ProcessId, queues: &[&str], limit: usize) -> Vec<ClaimedJob> {
    let patterns: Vec<QueuePattern> = queues.iter().map(|q| QueuePattern::parse(q)).collect();
    store.claim(process, &patterns, limit, t(1)).expect("claim")
}

fn kinds(claims: &[ClaimedJob]) -> Vec<&str> {
    claims.iter().map(|c| c.kind.as_str()).collect()
}

fn state(store: &dyn Store, id: JobId) -> String {
    store.job(id).expect("job").expect("job exists").state
}

fn totals(store: &dyn Store) -> JobCounts {
    store.counts().expect("counts").0
}

fn counts(ready: i64, scheduled: i64, claimed: i64, failed: i64, finished: i64) -> JobCounts {
    JobCounts { ready, scheduled, claimed, failed, finished }
}

fn error(message: &str) -> FailureRecord {
    FailureRecord { class: "JobError".to_string(), message: message.to_string(), backtrace: None }
}

fn last_error(store: &dyn Store, id: JobId) -> FailureRecord {
    let text = store.job(id).expect("job").expect("job exists").last_error.expect("last_error set");
    serde_json::from_str(&text).expect("last_error is a FailureRecord")
}

/// Runs `sql` on a fresh connection to the test database, outside the store.
fn execute_sql(db: &TestDb, sql: &str) {
    match &db.url {
        DatabaseUrl::Sqlite(path) => {
            let mut conn =
                SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("connecting to SQLite");
            conn.batch_execute("PRAGMA busy_timeout = 10000;").expect("pragma");
            conn.batch_execute(sql).expect("executing SQL");
        }
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(url).expect("connecting to PostgreSQL");
            conn.batch_execute(sql).expect("executing SQL");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations and enqueue

fn migrate_is_idempotent(db: &TestDb) {
    assert_eq!(db.store.migrate().expect("second migrate"), 0);
    let again = db.connect_again();
    assert_eq!(again.migrate().expect("migrate from another store"), 0);
}

fn enqueue_puts_due_jobs_in_ready_and_future_jobs_in_scheduled(db: &TestDb) {
    let store = &*db.store;
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

fn enqueue_returns_ids_in_input_order(db: &TestDb) {
    let store = &*db.store;
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

fn enqueue_of_more_jobs_than_one_statement_binds_keeps_input_order(db: &TestDb) {
    let store = &*db.store;
    // More rows than fit under either backend's bind-parameter limit in one INSERT.
    let jobs: Vec<NewJob> =
        (0..8_000).map(|i| NewJob { arguments: json!({ "n": i }).to_string(), ..job("bulk", "bulk", 0) }).collect();
    let ids = enqueue(store, &jobs);
    assert_eq!(ids.len(), 8_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 8_000);
    for i in (0..8_000).step_by(397).chain([7_999]) {
        let row = store.job(ids[i]).unwrap().unwrap();
        assert_eq!(row.arguments, json!({ "n": i }).to_string());
        assert_eq!(row.state, "ready");
    }
    assert_eq!(totals(store), counts(8_000, 0, 0, 0, 0));
}

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
    }
}

fn check_transactional_enqueue<C: Connection + EnqueueConnection>(db: &TestDb, mut conn: C) {
    let store = &*db.store;
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

// ---------------------------------------------------------------------------------------------
// Claims

fn claim_takes_queues_in_given_order_then_priority_then_id(db: &TestDb) {
    let store = &*db.store;
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

fn claim_fills_the_limit_across_patterns_in_order(db: &TestDb) {
    let store = &*db.store;
    enqueue(store, &[job("a1", "a", 0), job("b1", "b", 0), job("a2", "a", 0), job("b2", "b", 0), job("b3", "b", 0)]);
    let p = register(store, "worker");
    assert_eq!(kinds(&claim(store, p, &["a", "b"], 3)), ["a1", "a2", "b1"]);
    assert_eq!(kinds(&claim(store, p, &["a", "b"], 3)), ["b2", "b3"]);
    assert!(claim(store, p, &["a", "b"], 3).is_empty());
}

fn claim_matches_prefix_and_all_patterns_case_sensitively(db: &TestDb) {
    let store = &*db.store;
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

fn claim_escapes_like_wildcards_in_prefixes(db: &TestDb) {
    let store = &*db.store;
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

fn claim_never_takes_a_job_twice_across_overlapping_patterns(db: &TestDb) {
    let store = &*db.store;
    enqueue(store, &[job("q1", "q1", 0), job("q2", "q2", 0), job("x", "x", 0)]);
    let p = register(store, "worker");
    let got = claim(store, p, &["q1", "q*", "*", "x"], 10);
    assert_eq!(kinds(&got), ["q1", "q2", "x"]);
    assert_eq!(totals(store), counts(0, 0, 3, 0, 0));
}

fn claim_increments_attempts(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "worker");
    let first = claim(store, p, &["*"], 1);
    assert_eq!((first[0].attempts, first[0].max_attempts), (1, 5));
    assert_eq!(store.retry(first[0].token, &error("x"), t(2), t(2)).unwrap(), Fenced::Applied);
    let second = claim(store, p, &["*"], 1);
    assert_eq!(second[0].attempts, 2);
    assert_eq!(store.job(id).unwrap().unwrap().attempts, 2);
}

/// A claim handed back unstarted (or a run a graceful drain cut short) costs no attempt: only
/// executions that started and ended, and process deaths, count.
fn release_and_deregister_give_the_attempt_back(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
    let p = register(store, "worker");
    let first = claim(store, p, &["*"], 2);
    assert_eq!(first.iter().map(|j| j.attempts).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(store.release(first[0].token, t(2)).unwrap(), Fenced::Applied);
    assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 0);
    // A stale release gives nothing back twice.
    assert_eq!(store.release(first[0].token, t(2)).unwrap(), Fenced::Stale);
    assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 0);
    assert_eq!(claim(store, p, &["*"], 1)[0].attempts, 1, "the next run is attempt 1 again");
    assert_eq!(store.deregister(p, t(3)).unwrap(), 2);
    assert_eq!(ids.iter().map(|id| store.job(*id).unwrap().unwrap().attempts).collect::<Vec<_>>(), [0, 0]);
    assert_eq!(totals(store), counts(2, 0, 0, 0, 0));
}

fn claim_for_a_missing_process_claims_nothing(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    assert!(claim(store, 9_999, &["*"], 10).is_empty());
    let p = register(store, "worker");
    store.deregister(p, t(1)).unwrap();
    assert!(claim(store, p, &["*"], 10).is_empty());
    assert_eq!(state(store, id), "ready");
    assert_eq!(store.job(id).unwrap().unwrap().attempts, 0);
}

fn concurrent_claims_never_hand_out_a_job_twice(db: &TestDb) {
    let jobs: Vec<NewJob> =
        (0..500).map(|i| NewJob { arguments: json!({ "n": i }).to_string(), ..job("c", "default", i % 3) }).collect();
    let mut ids = enqueue(&*db.store, &jobs);
    // Two threads share the test's store, two have stores of their own (like other processes).
    let stores: Vec<SharedStore> = vec![db.store.clone(), db.store.clone(), db.connect_again(), db.connect_again()];
    let barrier = Arc::new(Barrier::new(stores.len()));
    let handles: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let p = register(&*store, &format!("claimer-{i}"));
                barrier.wait();
                let mut got = Vec::new();
                loop {
                    let batch = store.claim(p, &[QueuePattern::All], 7, t(1)).expect("claim");
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
    assert_eq!(totals(&*db.store), counts(0, 0, 500, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// Finishing a claim, and fencing

fn finish_marks_the_job_finished_once(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "worker");
    let token = claim(store, p, &["*"], 1)[0].token;
    assert_eq!(store.finish(token, t(5)).unwrap(), Fenced::Applied);
    let row = store.job(id).unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.finished_at), ("finished", Some(t(5))));
    assert_eq!(store.finish(token, t(6)).unwrap(), Fenced::Stale);
    assert_eq!(store.job(id).unwrap().unwrap().finished_at, Some(t(5)));
    assert_eq!(totals(store), counts(0, 0, 0, 0, 1));
}

fn fail_moves_the_job_to_failed_with_its_error(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "worker");
    let token = claim(store, p, &["*"], 1)[0].token;
    let record = FailureRecord { class: "Panic".into(), message: "boom".into(), backtrace: Some("src/x.rs:1".into()) };
    assert_eq!(store.fail(token, &record, t(5)).unwrap(), Fenced::Applied);
    assert_eq!(state(store, id), "failed");
    assert_eq!(last_error(store, id), record);
    assert_eq!(store.fail(token, &error("again"), t(6)).unwrap(), Fenced::Stale);
    assert_eq!(last_error(store, id), record);
    assert_eq!(totals(store), counts(0, 0, 0, 1, 0));
}

fn retry_schedules_the_job_again_or_readies_it_when_due(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "worker");
    let token = claim(store, p, &["*"], 1)[0].token;
    assert_eq!(store.retry(token, &error("later"), t(60), t(2)).unwrap(), Fenced::Applied);
    let row = store.job(id).unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.scheduled_at), ("scheduled", Some(t(60))));
    assert_eq!(last_error(store, id), error("later"));
    assert_eq!(store.retry(token, &error("stale"), t(2), t(2)).unwrap(), Fenced::Stale);
    assert_eq!(last_error(store, id), error("later"));

    assert_eq!(store.dispatch_due(t(60), 10).unwrap(), 1);
    let token = store.claim(p, &[QueuePattern::All], 1, t(61)).unwrap()[0].token;
    assert_eq!(store.retry(token, &error("now"), t(61), t(61)).unwrap(), Fenced::Applied);
    assert_eq!(state(store, id), "ready");
    assert_eq!(store.job(id).unwrap().unwrap().attempts, 2);
}

fn release_returns_the_claim_to_ready(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "q", 3));
    let p = register(store, "worker");
    let token = claim(store, p, &["*"], 1)[0].token;
    assert_eq!(store.release(token, t(2)).unwrap(), Fenced::Applied);
    assert_eq!(state(store, id), "ready");
    assert_eq!(store.release(token, t(3)).unwrap(), Fenced::Stale);
    let again = claim(store, p, &["q"], 1);
    assert_eq!((again[0].token.job_id, again[0].priority), (id, 3));
}

fn stale_token_after_reap_changes_nothing_and_a_reclaim_gets_a_new_claim_id(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let dead = register(store, "dead");
    let old = claim(store, dead, &["*"], 1)[0].token;
    let outcome = store.reap_process(dead, &DeathCause::Proven("pid gone".into()), DeathPolicy::Retry, t(10)).unwrap();
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 0 });

    let live = register(store, "live");
    let new = claim(store, live, &["*"], 1)[0].token;
    assert_eq!(new.job_id, old.job_id);
    assert_ne!(new.claim_id, old.claim_id);

    assert_eq!(store.finish(old, t(11)).unwrap(), Fenced::Stale);
    assert_eq!(store.fail(old, &error("x"), t(11)).unwrap(), Fenced::Stale);
    assert_eq!(store.retry(old, &error("x"), t(11), t(11)).unwrap(), Fenced::Stale);
    assert_eq!(store.release(old, t(11)).unwrap(), Fenced::Stale);
    let row = store.job(id).unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.process_id), ("claimed", Some(live)));
    assert_eq!(row.finished_at, None);
    assert_eq!(row.attempts, 2);

    assert_eq!(store.finish(new, t(12)).unwrap(), Fenced::Applied);
    assert_eq!(state(store, id), "finished");
}

fn stale_token_after_release_changes_nothing(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "worker");
    let old = claim(store, p, &["*"], 1)[0].token;
    store.release(old, t(2)).unwrap();
    let new = claim(store, p, &["*"], 1)[0].token;
    assert!(new.claim_id > old.claim_id, "claim ids are never reused");
    assert_eq!(store.finish(old, t(3)).unwrap(), Fenced::Stale);
    assert_eq!(state(store, id), "claimed");
}

fn dispatch_due_moves_only_due_jobs_in_order_up_to_the_batch(db: &TestDb) {
    let store = &*db.store;
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

// ---------------------------------------------------------------------------------------------
// Processes

fn heartbeat_stamps_a_live_process_and_reports_a_missing_one(db: &TestDb) {
    let store = &*db.store;
    let p = register(store, "worker");
    assert_eq!(store.heartbeat(p, t(30)).unwrap(), Beat::Stamped);
    let row = store.processes().unwrap().into_iter().find(|r| r.id == p).unwrap();
    assert_eq!((row.last_heartbeat_at, row.created_at), (t(30), t(0)));
    assert_eq!(store.heartbeat(9_999, t(30)).unwrap(), Beat::Missing);
    store.deregister(p, t(40)).unwrap();
    assert_eq!(store.heartbeat(p, t(50)).unwrap(), Beat::Missing);
}

fn keep_session_of_a_healthy_or_unknown_process_does_nothing(db: &TestDb) {
    let store = &*db.store;
    let p = register(store, "worker");
    assert!(!store.keep_session(p).unwrap());
    assert!(!store.keep_session(9_999).unwrap());
    store.deregister(p, t(1)).unwrap();
    assert!(!store.keep_session(p).unwrap());
}

fn claimed_by_lists_the_claims_of_a_process_by_job_id(db: &TestDb) {
    let store = &*db.store;
    enqueue(store, &[job("a", "q", 5), job("b", "q", 0), job("c", "q", 0)]);
    let p = register(store, "worker");
    let other = register(store, "other");
    let mine = claim(store, p, &["*"], 2);
    let theirs = claim(store, other, &["*"], 1);
    let mut expected: Vec<_> = mine.iter().map(|c| c.token).collect();
    expected.sort_by_key(|token| token.job_id);
    assert_eq!(store.claimed_by(p).unwrap(), expected);
    assert_eq!(store.claimed_by(other).unwrap(), [theirs[0].token]);
    store.finish(mine[0].token, t(2)).unwrap();
    assert_eq!(store.claimed_by(p).unwrap(), [mine[1].token]);
    assert!(store.claimed_by(9_999).unwrap().is_empty());
}

fn register_rejects_a_duplicate_name(db: &TestDb) {
    let store = &*db.store;
    register(store, "same");
    assert!(store.register_process(&new_process("same"), t(1)).is_err());
    assert_eq!(store.processes().unwrap().len(), 1);
}

fn processes_lists_rows_in_registration_order_with_metadata(db: &TestDb) {
    let store = &*db.store;
    let first = register(store, "first");
    let second = store
        .register_process(&NewProcess { pid: 7, hostname: "other".into(), ..new_process("second") }, t(3))
        .unwrap();
    let rows = store.processes().unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [first, second]);
    assert_eq!(rows[0].metadata, json!({ "workers": ["*:3"], "boot": "first" }));
    assert_eq!((rows[0].kind.as_str(), rows[0].name.as_str()), ("Runtime", "first"));
    assert_eq!((rows[1].pid, rows[1].hostname.as_str()), (7, "other"));
    assert_eq!((rows[1].created_at, rows[1].last_heartbeat_at), (t(3), t(3)));
}

fn deregister_releases_claims_to_ready_and_removes_the_process(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
    let p = register(store, "leaving");
    let other = register(store, "staying");
    let got = claim(store, p, &["*"], 3);
    assert_eq!(store.finish(got[0].token, t(2)).unwrap(), Fenced::Applied);
    assert_eq!(store.deregister(p, t(3)).unwrap(), 2);
    assert_eq!(store.processes().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
    assert_eq!(state(store, ids[0]), "finished");
    assert_eq!(state(store, ids[1]), "ready");
    assert_eq!(state(store, ids[2]), "ready");
    assert_eq!(store.finish(got[1].token, t(4)).unwrap(), Fenced::Stale);
    assert_eq!(store.deregister(p, t(5)).unwrap(), 0);
    assert_eq!(totals(store), counts(2, 0, 0, 0, 1));
}

fn reap_with_heartbeat_cutoff_skips_a_process_that_beat_after_it(db: &TestDb) {
    let store = &*db.store;
    let id = enqueue_one(store, job("k", "default", 0));
    let p = register(store, "slow");
    claim(store, p, &["*"], 1);
    assert_eq!(store.heartbeat(p, t(100)).unwrap(), Beat::Stamped);
    let skipped = store
        .reap_process(p, &DeathCause::HeartbeatOlderThan { cutoff: t(50), deadline: None }, DeathPolicy::Retry, t(120))
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
    assert!(!store.reap_process(p, &expired, DeathPolicy::Retry, t(120)).unwrap().reaped);
    assert_eq!((store.processes().unwrap().len(), state(store, id).as_str()), (1, "claimed"));
    // Equal to the cutoff is not older than it.
    let equal = store
        .reap_process(p, &DeathCause::HeartbeatOlderThan { cutoff: t(100), deadline: None }, DeathPolicy::Retry, t(120))
        .unwrap();
    assert!(!equal.reaped);
    let reaped = store
        .reap_process(p, &DeathCause::HeartbeatOlderThan { cutoff: t(101), deadline: None }, DeathPolicy::Retry, t(120))
        .unwrap();
    assert_eq!(reaped, ReapOutcome { reaped: true, retried: 1, failed: 0 });
    assert_eq!(state(store, id), "ready");
    assert!(store.processes().unwrap().is_empty());
}

fn reap_retry_returns_claims_to_ready_with_a_process_died_record(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
    let p = register(store, "victim-7");
    claim(store, p, &["*"], 2);
    let outcome =
        store.reap_process(p, &DeathCause::Proven("pid 4242 is gone".into()), DeathPolicy::Retry, t(9)).unwrap();
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 2, failed: 0 });
    for &id in &ids {
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts, row.process_id), ("ready", 1, None));
        let record = last_error(store, id);
        assert_eq!(record.class, "ProcessDied");
        for part in [p.to_string().as_str(), "victim-7", "testhost", "4242"] {
            assert!(record.message.contains(part), "{part:?} in {:?}", record.message);
        }
        assert_eq!(record.backtrace.as_deref(), Some("pid 4242 is gone"));
    }
    assert!(store.processes().unwrap().is_empty());
    assert_eq!(totals(store), counts(2, 0, 0, 0, 0));
}

fn reap_fail_policy_moves_claims_to_failed(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
    let p = register(store, "victim");
    claim(store, p, &["*"], 2);
    let cutoff = DeathCause::HeartbeatOlderThan { cutoff: t(60), deadline: None };
    let outcome = store.reap_process(p, &cutoff, DeathPolicy::Fail, t(61)).unwrap();
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 0, failed: 2 });
    for &id in &ids {
        assert_eq!(state(store, id), "failed");
        let record = last_error(store, id);
        assert_eq!(record.class, "ProcessDied");
        assert!(record.message.contains("victim"));
        assert!(record.backtrace.is_some());
    }
    assert_eq!(totals(store), counts(0, 0, 0, 2, 0));
}

fn reap_retry_fails_jobs_that_reached_max_attempts(db: &TestDb) {
    let store = &*db.store;
    let last_try = enqueue_one(store, NewJob { max_attempts: 1, ..job("once", "q", 0) });
    let more = enqueue_one(store, NewJob { max_attempts: 3, ..job("thrice", "q", 0) });
    let p = register(store, "victim");
    claim(store, p, &["*"], 2);
    let outcome = store.reap_process(p, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)).unwrap();
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 1 });
    assert_eq!(state(store, last_try), "failed");
    assert_eq!(last_error(store, last_try).class, "ProcessDied");
    assert_eq!(state(store, more), "ready");
}

fn reap_of_a_missing_process_changes_nothing(db: &TestDb) {
    let store = &*db.store;
    let outcome = store.reap_process(9_999, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)).unwrap();
    assert_eq!(outcome, ReapOutcome::default());
}

fn concurrent_reaps_of_one_process_release_its_claims_once(db: &TestDb) {
    let ids =
        enqueue(&*db.store, &(0..10).map(|_| NewJob { max_attempts: 100, ..job("k", "q", 0) }).collect::<Vec<_>>());
    let other = db.connect_again();
    for round in 0..8 {
        let victim = register(&*db.store, &format!("victim-{round}"));
        assert_eq!(claim(&*db.store, victim, &["*"], 100).len(), 10);
        let barrier = Arc::new(Barrier::new(2));
        let reapers: Vec<_> = [db.store.clone(), other.clone()]
            .into_iter()
            .map(|store| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    store
                        .reap_process(
                            victim,
                            &DeathCause::HeartbeatOlderThan { cutoff: t(1_000), deadline: None },
                            DeathPolicy::Retry,
                            t(1_000),
                        )
                        .expect("reap_process")
                })
            })
            .collect();
        let outcomes: Vec<ReapOutcome> = reapers.into_iter().map(|h| h.join().expect("reaper thread")).collect();
        assert_eq!(outcomes.iter().filter(|o| o.reaped).count(), 1, "{outcomes:?}");
        assert_eq!(outcomes.iter().map(|o| o.retried).sum::<usize>(), 10, "{outcomes:?}");
        assert_eq!(outcomes.iter().map(|o| o.failed).sum::<usize>(), 0, "{outcomes:?}");
        assert_eq!(totals(&*db.store), counts(10, 0, 0, 0, 0));
    }
    assert_eq!(db.store.job(ids[0]).unwrap().unwrap().attempts, 8);
}

fn release_orphans_returns_claims_of_vanished_processes(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
    let vanished = register(store, "vanished");
    let live = register(store, "live");
    let lost = claim(store, vanished, &["*"], 2);
    let kept = claim(store, live, &["*"], 1);
    assert_eq!(store.release_orphans(t(5)).unwrap(), 0);
    // A process row removed behind the store's back, as a crash during cleanup might leave it.
    execute_sql(db, &format!("DELETE FROM solidq_processes WHERE id = {vanished}"));
    assert_eq!(store.release_orphans(t(5)).unwrap(), 2);
    assert_eq!(store.release_orphans(t(6)).unwrap(), 0);
    assert_eq!(state(store, ids[0]), "ready");
    assert_eq!(state(store, ids[1]), "ready");
    assert_eq!(state(store, kept[0].token.job_id), "claimed");
    assert_eq!(store.finish(lost[0].token, t(7)).unwrap(), Fenced::Stale);
    assert_eq!(store.finish(kept[0].token, t(7)).unwrap(), Fenced::Applied);
}

// ---------------------------------------------------------------------------------------------
// Status views

fn counts_report_totals_and_per_queue_states_sorted_by_queue(db: &TestDb) {
    let store = &*db.store;
    assert_eq!(store.counts().unwrap(), (JobCounts::default(), Vec::new()));
    enqueue(
        store,
        &[
            job("b1", "b", 0),
            job("b2", "b", 0),
            job("b3", "b", 0),
            job("a1", "a", 0),
            NewJob { queue: "a".into(), ..scheduled("a2", t(60)) },
            job("a3", "a", 0),
        ],
    );
    let p = register(store, "worker");
    let b = claim(store, p, &["b"], 2);
    store.fail(b[0].token, &error("x"), t(2)).unwrap();
    store.finish(b[1].token, t(2)).unwrap();
    claim(store, p, &["a"], 1);
    let (total, queues) = store.counts().unwrap();
    assert_eq!(total, counts(2, 1, 1, 1, 1));
    assert_eq!(
        queues,
        [
            QueueCounts { queue: "a".into(), counts: counts(1, 1, 1, 0, 0) },
            QueueCounts { queue: "b".into(), counts: counts(1, 0, 0, 1, 1) },
        ]
    );
}

fn job_reports_state_and_claiming_process(db: &TestDb) {
    let store = &*db.store;
    assert_eq!(store.job(12_345).unwrap(), None);
    let id = enqueue_one(store, NewJob { priority: 4, ..job("k", "q", 0) });
    let row = store.job(id).unwrap().unwrap();
    assert_eq!(
        (row.id, row.kind.as_str(), row.queue.as_str(), row.priority, row.state.as_str()),
        (id, "k", "q", 4, "ready")
    );
    assert_eq!((row.process_id, row.last_error, row.finished_at), (None, None, None));
    let p = register(store, "worker");
    let token = claim(store, p, &["*"], 1)[0].token;
    let row = store.job(id).unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.process_id, row.attempts), ("claimed", Some(p), 1));
    store.retry(token, &error("again"), t(90), t(3)).unwrap();
    assert_eq!(store.job(id).unwrap().unwrap().process_id, None);
    assert_eq!(state(store, id), "scheduled");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

fn migrations_create_the_tables_in_the_url_schema(db: &TestDb) {
    let mut conn = PgConnection::establish(db.postgres_url().unwrap()).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        schema: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tables: i64,
    }
    let row: Row = diesel::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT current_schema() AS schema, (SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name LIKE 'solidq\\_%') AS tables",
        ),
        &mut conn,
    )
    .unwrap();
    assert!(row.schema.starts_with("solidq_t_"), "{}", row.schema);
    assert_eq!(row.tables, 6);
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn sessions_gone_reports_a_process_whose_store_was_dropped_and_not_a_live_one(db: &TestDb) {
    let url = db.postgres_url().unwrap();
    let live = register(&*db.store, "live");
    let other_live_store = PgStore::connect(url, 2).unwrap();
    let other_live = register(&other_live_store, "other-live");
    let dying_store = PgStore::connect(url, 2).unwrap();
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

fn keep_session_reconnects_a_killed_lock_session_and_takes_the_lock_again(db: &TestDb) {
    let url = db.postgres_url().unwrap();
    let store = PgStore::connect(url, 2).unwrap();
    let p = register(&store, "worker");
    let pid = store.session_backend_pid(p).expect("lock session");
    execute_sql(db, &format!("SELECT pg_terminate_backend({pid})"));
    wait_until("the killed session is reported gone", || db.store.sessions_gone(&[p]).unwrap() == [p]);
    // The heartbeat does not depend on the lock session.
    assert_eq!(store.heartbeat(p, t(30)).unwrap(), Beat::Stamped);
    assert!(store.keep_session(p).unwrap(), "had to reconnect");
    let new_pid = store.session_backend_pid(p).expect("a new lock session");
    assert_ne!(new_pid, pid);
    assert_eq!(db.store.sessions_gone(&[p]).unwrap(), Vec::<ProcessId>::new());
    assert!(!store.keep_session(p).unwrap(), "healthy now");
}

fn claim_skips_rows_locked_by_a_concurrent_claim(db: &TestDb) {
    let store = &*db.store;
    let ids = enqueue(store, &[job("first", "q", 0), job("second", "q", 0)]);
    let p = register(store, "worker");
    // Another session holds the first ready row locked, as an in-flight claim would.
    let mut blocker = PgConnection::establish(db.postgres_url().unwrap()).unwrap();
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

fn claim_waits_for_an_in_flight_reap_and_then_claims_nothing(db: &TestDb) {
    let id = enqueue_one(&*db.store, job("k", "q", 0));
    let p = register(&*db.store, "victim");
    // A reap that has deleted the process row but not committed yet.
    let mut reaper = PgConnection::establish(db.postgres_url().unwrap()).unwrap();
    reaper.batch_execute(&format!("BEGIN; DELETE FROM solidq_processes WHERE id = {p};")).unwrap();
    let store = db.store.clone();
    let claimer = thread::spawn(move || store.claim(p, &[QueuePattern::All], 10, t(1)));
    thread::sleep(Duration::from_millis(300));
    assert!(!claimer.is_finished(), "the claim waits for the reap");
    reaper.batch_execute("COMMIT").unwrap();
    let claimed = claimer.join().unwrap().expect("claim");
    assert!(claimed.is_empty(), "nothing claimed for a reaped process");
    assert_eq!(state(&*db.store, id), "ready");
}

fn reap_waits_for_an_in_flight_claim_and_hands_its_claims_back(db: &TestDb) {
    let id = enqueue_one(&*db.store, job("k", "q", 0));
    let p = register(&*db.store, "victim");
    // A claim in flight, done as the store does it: guard the process row, move the job.
    let mut claimer = PgConnection::establish(db.postgres_url().unwrap()).unwrap();
    claimer
        .batch_execute(&format!(
            "BEGIN;
             SELECT id FROM solidq_processes WHERE id = {p} FOR KEY SHARE;
             DELETE FROM solidq_ready_executions WHERE job_id = {id};
             INSERT INTO solidq_claimed_executions (job_id, process_id, created_at)
                 VALUES ({id}, {p}, now());
             UPDATE solidq_jobs SET attempts = attempts + 1 WHERE id = {id};"
        ))
        .unwrap();
    let store = db.store.clone();
    let reaper =
        thread::spawn(move || store.reap_process(p, &DeathCause::Proven("gone".into()), DeathPolicy::Retry, t(9)));
    thread::sleep(Duration::from_millis(300));
    assert!(!reaper.is_finished(), "the reap waits for the claim");
    // A heartbeat is not blocked by the claim's guard.
    assert_eq!(db.connect_again().heartbeat(p, t(2)).unwrap(), Beat::Stamped);
    claimer.batch_execute("COMMIT").unwrap();
    let outcome = reaper.join().unwrap().expect("reap_process");
    assert_eq!(outcome, ReapOutcome { reaped: true, retried: 1, failed: 0 });
    assert_eq!(state(&*db.store, id), "ready");
}

// ---------------------------------------------------------------------------------------------
// Connection errors (no database needed)

#[test]
fn unreachable_postgres_server_gives_a_connection_error_within_the_timeout() {
    let started = Instant::now();
    let result = PgStore::connect("postgres://postgres@127.0.0.1:1/solidq", 1);
    assert!(matches!(result, Err(solidq::store::StoreError::Connection { .. })), "expected a connection error");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

#[test]
fn sqlite_open_reports_a_directory_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let result = solidq::store::sqlite::SqliteStore::open(&blocker.join("db.sqlite3"), 1);
    assert!(matches!(result, Err(solidq::store::StoreError::Connection { .. })));
}
