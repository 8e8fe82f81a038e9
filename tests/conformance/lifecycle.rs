//! The job lifecycle: handler outcomes (discard, snooze, cancel), failed jobs an operator acts
//! on, unique jobs, concurrency limits with blocked jobs, paused queues and clearing ended jobs.

use solidq::lifecycle::Transition;
use solidq::model::{ConcurrencyLimit, Enqueued};
use solidq::store::manage::{ActionError, Cancelled};
use solidq::store::JobFilter;

use super::*;
use crate::common::{backend_test, TestDb};

fn limited(kind: &str, key: &str, limit: i32) -> NewJob {
    NewJob { concurrency: Some(ConcurrencyLimit::new(key, limit)), ..job(kind, "default", 0) }
}

fn ids_in(store: &Store, state: JobState) -> Vec<JobId> {
    store.list_jobs(&JobFilter::new(state)).expect("list").into_iter().map(|row| row.id).collect()
}

backend_test!(
    fn discard_snooze_and_cancel_outcomes_end_or_delay_the_job(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 1), job("c", "q", 2)]);
        let c = claim(store, p, &["q"], 3);
        let why = FailureRecord::new(FailureKind::Discarded, "no such user");
        let batch = vec![
            (c[0].token, Transition::Discard(why.clone())),
            (c[1].token, Transition::Snooze(Duration::from_secs(30))),
            (c[2].token, Transition::Cancel),
        ];
        let settled = store.record(&batch, t(2)).unwrap();
        assert_eq!(settled.applied.len(), 3);
        let rows: Vec<_> = ids.iter().map(|&id| store.job(id).unwrap().unwrap()).collect();
        assert_eq!(rows[0].state, Some(JobState::Discarded));
        assert_eq!(rows[0].last_error.as_ref(), Some(&why));
        assert_eq!(rows[0].attempts, 1, "a discard ends an attempt");
        assert_eq!(rows[1].state, Some(JobState::Scheduled));
        assert_eq!(rows[1].scheduled_at, Some(t(32)));
        assert_eq!(rows[1].attempts, 0, "a snooze does not count the attempt");
        assert_eq!(rows[2].state, Some(JobState::Cancelled));
        assert_eq!(rows[2].attempts, 1, "a cancelled execution ran: its attempt counts");
        assert!(rows[0].finished_at.is_some() && rows[2].finished_at.is_some());
        let totals = totals(store);
        assert_eq!((totals.discarded, totals.cancelled, totals.scheduled, totals.finished), (1, 1, 1, 0));
    }
);

backend_test!(
    fn failed_jobs_keep_typed_errors_and_can_be_retried_or_discarded(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let id = enqueue_one(store, NewJob { max_attempts: 1, ..job("k", "q", 0) });
        let c = claim(store, p, &["q"], 1);
        let panic = FailureRecord {
            kind: FailureKind::Panic,
            message: "handler panicked: boom".into(),
            backtrace: Some("src/jobs.rs:12".into()),
            cause: None,
        };
        assert!(applied(store.fail_claims(&[c[0].token], &panic, t(2)).unwrap()));
        let failed = store.list_jobs(&JobFilter::new(JobState::Failed)).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_ref(), Some(&panic), "the typed columns give the record back");
        assert_eq!((failed[0].attempts, failed[0].max_attempts), (1, 1));

        store.retry_job(id, t(3)).unwrap();
        let row = store.job(id).unwrap().unwrap();
        assert_eq!(row.state, Some(JobState::Ready));
        assert_eq!(row.max_attempts, 2, "a retry by hand allows one more attempt");
        let c = claim(store, p, &["q"], 1);
        assert_eq!(c[0].attempts, 2);
        assert!(applied(store.fail_claims(&[c[0].token], &error("again"), t(4)).unwrap()));

        store.discard_job(id, t(5)).unwrap();
        assert_eq!(state(store, id), "discarded");
        assert_eq!(last_error(store, id).message, "again", "the discarded job keeps its last error");
        assert!(matches!(store.discard_job(id, t(6)), Err(ActionError::WrongState { state: JobState::Discarded, .. })));
        store.retry_job(id, t(7)).unwrap();
        assert_eq!(state(store, id), "ready", "a discarded job can be run again");
    }
);

backend_test!(
    fn a_running_job_is_not_discarded_and_its_cancel_is_requested(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 1)]);
        let c = claim(store, p, &["q"], 2);
        let err = store.discard_job(ids[0], t(2)).unwrap_err();
        assert!(matches!(err, ActionError::WrongState { state: JobState::Claimed, .. }), "{err}");
        assert!(err.to_string().contains("cancel"), "{err}");
        assert_eq!(store.cancel_job(ids[0], t(2)).unwrap(), Cancelled::Requested);
        assert_eq!(store.cancel_job(ids[1], t(2)).unwrap(), Cancelled::Requested);
        assert_eq!(store.cancel_requests(p).unwrap().len(), 2);
        assert_eq!(state(store, ids[0]), "claimed", "a requested cancel waits for the handler");
        // Whatever the handler returned, a cancelled job does not run again; a finish stands.
        let batch =
            vec![(c[0].token, Transition::Retry(error("stopped"), Duration::ZERO)), (c[1].token, Transition::Complete)];
        assert_eq!(store.record(&batch, t(3)).unwrap().applied.len(), 2);
        assert_eq!(state(store, ids[0]), "cancelled");
        assert_eq!(store.job(ids[0]).unwrap().unwrap().attempts, 1);
        assert_eq!(state(store, ids[1]), "finished");
        assert!(store.cancel_requests(p).unwrap().is_empty());
    }
);

backend_test!(
    fn waiting_jobs_are_cancelled_at_once_and_unknown_ids_are_named(db: &TestDb) {
        let store = &db.store;
        let ids =
            enqueue(store, &[job("a", "q", 0), scheduled("b", t(60)), limited("c", "k", 1), limited("d", "k", 1)]);
        assert_eq!(state(store, ids[3]), "blocked");
        for &id in &ids[..2] {
            assert_eq!(store.cancel_job(id, t(1)).unwrap(), Cancelled::Now);
            assert_eq!(state(store, id), "cancelled");
        }
        // Cancelling the holder of a concurrency key lets the blocked job in.
        assert_eq!(store.cancel_job(ids[2], t(1)).unwrap(), Cancelled::Now);
        assert_eq!(state(store, ids[3]), "ready");
        assert!(matches!(
            store.cancel_job(ids[0], t(2)),
            Err(ActionError::WrongState { state: JobState::Cancelled, .. })
        ));
        let err = store.retry_job(999_999, t(2)).unwrap_err();
        assert!(matches!(err, ActionError::NotFound(999_999)));
        assert_eq!(err.to_string(), "job 999999 does not exist");
        assert!(matches!(store.retry_job(ids[3], t(2)), Err(ActionError::WrongState { state: JobState::Ready, .. })));
    }
);

backend_test!(
    fn bulk_retry_and_discard_take_failed_jobs_in_batches(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let n = 1_200;
        let jobs: Vec<NewJob> = (0..n).map(|i| job(if i % 3 == 0 { "x" } else { "y" }, "q", 0)).collect();
        enqueue(store, &jobs);
        let c = claim(store, p, &["q"], n);
        let tokens: Vec<_> = c.iter().map(|c| c.token).collect();
        assert_eq!(store.fail_claims(&tokens, &error("down"), t(2)).unwrap().applied.len(), n);
        assert_eq!(store.retry_failed(Some("x"), t(3)).unwrap(), n / 3);
        assert_eq!(totals(store).ready, (n / 3) as i64);
        assert_eq!(store.discard_failed(None, t(4)).unwrap(), n - n / 3);
        let totals = totals(store);
        assert_eq!((totals.failed, totals.discarded), (0, (n - n / 3) as i64));
    }
);

backend_test!(
    fn a_unique_key_returns_the_job_holding_it_until_that_job_ends(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let unique = |kind: &str| NewJob { unique_key: Some("report:27".into()), ..job(kind, "q", 0) };
        let first = store.enqueue_reporting(&[unique("a"), unique("b"), job("plain", "q", 0)], t(0)).unwrap();
        let Enqueued::New(holder) = first[0] else { panic!("first is new: {first:?}") };
        assert_eq!(first[1], Enqueued::Existing(holder), "a duplicate in the same batch");
        assert!(first[2].is_new());
        assert_eq!(store.enqueue_reporting(&[unique("c")], t(1)).unwrap(), vec![Enqueued::Existing(holder)]);
        assert_eq!(store.job(holder).unwrap().unwrap().unique_key.as_deref(), Some("report:27"));
        // Still held while claimed; given up when it finishes.
        let c = claim(store, p, &["q"], 1);
        assert_eq!(c[0].token.job_id, holder);
        assert_eq!(store.enqueue_reporting(&[unique("d")], t(2)).unwrap(), vec![Enqueued::Existing(holder)]);
        assert!(applied(store.complete_claims(&[c[0].token], t(3)).unwrap()));
        let next = store.enqueue_reporting(&[unique("e")], t(4)).unwrap();
        assert!(next[0].is_new() && next[0].id() != holder, "{next:?}");
        // A failed job gives its key up too.
        let c = claim(store, p, &["q"], 5);
        let token = c.iter().find(|c| c.token.job_id == next[0].id()).unwrap().token;
        assert!(applied(store.fail_claims(&[token], &error("x"), t(5)).unwrap()));
        assert!(store.enqueue_reporting(&[unique("f")], t(6)).unwrap()[0].is_new());
        assert!(store.enqueue(&[NewJob { unique_key: Some(String::new()), ..job("g", "q", 0) }], t(6)).is_err());
    }
);

backend_test!(
    fn a_concurrency_limit_admits_up_to_the_limit_and_each_ending_lets_the_next_in(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let ids = enqueue(store, &(0..6).map(|i| limited(&format!("k{i}"), "acct:1", 2)).collect::<Vec<_>>());
        let other = enqueue_one(store, limited("other", "acct:2", 2));
        let states: Vec<String> = ids.iter().map(|&id| state(store, id)).collect();
        assert_eq!(states, ["ready", "ready", "blocked", "blocked", "blocked", "blocked"]);
        assert_eq!(state(store, other), "ready", "keys are independent");
        assert_eq!(totals(store).blocked, 4);
        let c = claim(store, p, &["*"], 10);
        assert_eq!(c.len(), 3);
        let token = |id: JobId| c.iter().find(|c| c.token.job_id == id).unwrap().token;
        // A finish lets one in.
        assert!(applied(store.complete_claims(&[token(ids[0])], t(2)).unwrap()));
        assert_eq!(state(store, ids[2]), "ready");
        assert_eq!(state(store, ids[3]), "blocked");
        // A failure too, and a retry for later (the job leaves ready and claimed).
        assert!(applied(store.fail_claims(&[token(ids[1])], &error("x"), t(3)).unwrap()));
        assert_eq!(state(store, ids[3]), "ready");
        let c2 = claim(store, p, &["*"], 10);
        assert_eq!(c2.len(), 2);
        let retry = Transition::Retry(error("later"), Duration::from_secs(600));
        assert_eq!(store.record(&[(c2[0].token, retry)], t(4)).unwrap().applied.len(), 1);
        assert_eq!(ids.iter().filter(|&&id| state(store, id) == "ready" || state(store, id) == "claimed").count(), 2);
        // Never more than the limit ready or running.
        assert_eq!(totals(store).blocked, 1);
    }
);

backend_test!(
    fn a_holder_whose_process_died_lets_the_next_in(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "dead");
        let ids = enqueue(store, &(0..3).map(|i| limited(&format!("k{i}"), "acct", 1)).collect::<Vec<_>>());
        let c = claim(store, p, &["*"], 10);
        assert_eq!(c.len(), 1);
        // Failed by policy: the holder leaves, the next is let in.
        let outcome = reap_process(store, p, &DeathCause::Proven("pid gone".into()), DeathPolicy::Fail, t(5)).unwrap();
        assert_eq!(outcome.failed, 1);
        assert_eq!(state(store, ids[1]), "ready");
        assert_eq!(state(store, ids[2]), "blocked");
    }
);

backend_test!(
    fn a_concurrency_limit_can_discard_instead_of_blocking(db: &TestDb) {
        let store = &db.store;
        let discarding = |kind: &str| NewJob {
            concurrency: Some(ConcurrencyLimit::new("once", 1).discard_on_conflict()),
            ..job(kind, "q", 0)
        };
        let ids = enqueue(store, &[discarding("a"), discarding("b")]);
        assert_eq!(state(store, ids[0]), "ready");
        assert_eq!(state(store, ids[1]), "discarded");
        assert!(last_error(store, ids[1]).message.contains("concurrency limit"));
    }
);

backend_test!(
    fn a_holder_past_its_duration_stops_counting(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let short = |kind: &str| NewJob {
            concurrency: Some(ConcurrencyLimit::new("k", 1).duration(Duration::from_secs(60))),
            ..job(kind, "q", 0)
        };
        let ids = enqueue(store, &[short("a"), short("b")]);
        claim(store, p, &["q"], 1);
        assert_eq!(store.release_blocked(t(30)).unwrap(), 0);
        assert_eq!(state(store, ids[1]), "blocked");
        assert_eq!(store.release_blocked(t(62)).unwrap(), 1, "the claim is older than the duration");
        assert_eq!(state(store, ids[1]), "ready");
    }
);

backend_test!(
    fn a_scheduled_limited_job_goes_through_its_limit_when_due(db: &TestDb) {
        let store = &db.store;
        let ids =
            enqueue(store, &[limited("now", "k", 1), NewJob { scheduled_at: Some(t(10)), ..limited("later", "k", 1) }]);
        assert_eq!(state(store, ids[1]), "scheduled");
        assert_eq!(store.dispatch_due(t(11), 100).unwrap(), 0, "made ready, then held back by its limit");
        assert_eq!(state(store, ids[1]), "blocked");
    }
);

backend_test!(
    fn paused_queues_are_not_claimed_until_resumed(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let ids = enqueue(store, &[job("a", "mail", 0), job("b", "media", 0)]);
        assert!(store.pause_queue("mail", t(0)).unwrap());
        assert!(!store.pause_queue("mail", t(0)).unwrap(), "already paused");
        let c = claim(store, p, &["*"], 10);
        assert_eq!(kinds(&c), ["b"]);
        assert!(claim(store, p, &["mail"], 10).is_empty());
        let queues = store.queues(t(5)).unwrap();
        let mail = queues.iter().find(|q| q.name == "mail").unwrap();
        assert!(mail.paused);
        assert_eq!(mail.ready, 1);
        assert!((mail.latency_seconds - 5.0).abs() < 0.01, "{mail:?}");
        assert!(!queues.iter().find(|q| q.name == "media").unwrap().paused);
        assert!(store.resume_queue("mail").unwrap());
        assert!(!store.resume_queue("mail").unwrap());
        assert_eq!(claim(store, p, &["*"], 10)[0].token.job_id, ids[0]);
    }
);

backend_test!(
    fn ended_jobs_older_than_the_cutoff_are_cleared_in_batches(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let ids = enqueue(store, &(0..5).map(|i| job(&format!("k{i}"), "q", i)).collect::<Vec<_>>());
        let c = claim(store, p, &["q"], 3);
        assert!(store.complete_claims(&[c[0].token, c[1].token], t(10)).unwrap().fenced.is_empty());
        store.cancel_job(ids[4], t(10)).unwrap();
        assert!(store.complete_claims(&[c[2].token], t(100)).unwrap().fenced.is_empty());
        assert_eq!(store.clear_finished(t(50), 2).unwrap(), 2);
        assert_eq!(store.clear_finished(t(50), 2).unwrap(), 1);
        assert_eq!(store.clear_finished(t(50), 2).unwrap(), 0);
        assert!(store.job(ids[0]).unwrap().is_none());
        assert_eq!(state(store, ids[2]), "finished", "ended after the cutoff");
        assert_eq!(state(store, ids[3]), "ready");
    }
);

backend_test!(
    fn jobs_are_listed_by_state_queue_and_kind_in_pages(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(
            store,
            &[job("a", "q1", 0), job("b", "q1", 0), job("a", "q2", 0), scheduled("a", t(60)), job("a", "q1", 0)],
        );
        assert_eq!(ids_in(store, JobState::Ready), vec![ids[0], ids[1], ids[2], ids[4]]);
        assert_eq!(ids_in(store, JobState::Scheduled), vec![ids[3]]);
        let mut filter = JobFilter::new(JobState::Ready);
        filter.queue = Some("q1".into());
        filter.kind = Some("a".into());
        filter.limit = 1;
        let page = store.list_jobs(&filter).unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[0]]);
        filter.after = Some(ids[0]);
        assert_eq!(store.list_jobs(&filter).unwrap()[0].id, ids[4]);
        assert_eq!(JobState::parse("blocked"), Some(JobState::Blocked));
        assert_eq!(JobState::parse("bogus"), None);
    }
);

backend_test!(
    fn the_cleaner_clears_ended_jobs_and_the_sweep_lets_blocked_jobs_in(db: &TestDb) {
        use solidq::maintenance::blocked_sweep::BlockedSweep;
        use solidq::maintenance::cleaner::Cleaner;
        use solidq::maintenance::{Pass, Service};
        let store = &db.store;
        let p = register(store, "p");
        let short = |kind: &str| NewJob {
            concurrency: Some(ConcurrencyLimit::new("k", 1).duration(Duration::from_secs(60))),
            ..job(kind, "q", 0)
        };
        let ids = enqueue(store, &[short("a"), short("b"), job("c", "q", 0)]);
        let c = claim(store, p, &["q"], 2);
        let plain = c.iter().find(|c| c.token.job_id == ids[2]).unwrap().token;
        assert!(applied(store.complete_claims(&[plain], t(5)).unwrap()));
        let pass = |second| Pass { own: None, now: t(second), clock: Instant::now(), lease: None };
        // Kept for an hour: the first pass deletes nothing, and the holder still counts.
        let cleared = Cleaner::new(Duration::from_secs(3600)).run_once(store, pass(10)).unwrap();
        let released = BlockedSweep.run_once(store, pass(10)).unwrap();
        assert_eq!((cleared, released), (0, 0));
        // Not preserved, and the holder is past its duration: both happen on the first pass.
        let cleared = Cleaner::new(Duration::ZERO).run_once(store, pass(70)).unwrap();
        let released = BlockedSweep.run_once(store, pass(70)).unwrap();
        assert_eq!((cleared, released), (1, 1));
        assert!(store.job(ids[2]).unwrap().is_none());
        assert_eq!(state(store, ids[1]), "ready");
    }
);

backend_test!(
    fn unique_and_limited_jobs_enqueue_in_the_applications_transaction(db: &TestDb) {
        use solidq::store::connection::{app_pool, write_transaction};
        use solidq::{EnqueueError, EnqueueOptions, Queue};
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Welcome {
            user: i64,
        }
        impl solidq::Job for Welcome {
            const KIND: &'static str = "welcome";
            fn unique_key(&self) -> Option<String> {
                Some(format!("welcome:{}", self.user))
            }
            fn concurrency(&self) -> Option<ConcurrencyLimit> {
                Some(ConcurrencyLimit::new("mailer", 1))
            }
        }
        let app = app_pool(&db.url, 1).unwrap();
        let mut conn = app.get().unwrap();
        let first =
            write_transaction(&mut conn, |conn| Queue::enqueue_in(conn, &Welcome { user: 7 }, EnqueueOptions::new()))
                .unwrap();
        let again =
            write_transaction(&mut conn, |conn| Queue::enqueue_in(conn, &Welcome { user: 7 }, EnqueueOptions::new()))
                .unwrap();
        assert_eq!(first, again, "the unique key holds inside the application's transaction too");
        let second =
            write_transaction(&mut conn, |conn| Queue::enqueue_in(conn, &Welcome { user: 8 }, EnqueueOptions::new()))
                .unwrap();
        assert_eq!((state(&db.store, first), state(&db.store, second)), ("ready".into(), "blocked".into()));
        // Rolled back with the application's transaction.
        let rolled_back: Result<JobId, EnqueueError> = write_transaction(&mut conn, |conn| {
            Queue::enqueue_in(conn, &Welcome { user: 9 }, EnqueueOptions::new())?;
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(rolled_back.is_err());
        assert_eq!(totals(&db.store).ready + totals(&db.store).blocked, 2);
        // A bare backend connection cannot take them, and says what to use.
        let refused = match &db.url {
            DatabaseUrl::Sqlite(path) => {
                let mut raw = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
                Queue::enqueue_in(&mut raw, &Welcome { user: 10 }, EnqueueOptions::new()).unwrap_err()
            }
            DatabaseUrl::Postgres(url) => {
                let mut raw = PgConnection::establish(url).unwrap();
                Queue::enqueue_in(&mut raw, &Welcome { user: 10 }, EnqueueOptions::new()).unwrap_err()
            }
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => {
                let mut raw = crate::common::mysql_connection(url);
                Queue::enqueue_in(&mut raw, &Welcome { user: 10 }, EnqueueOptions::new()).unwrap_err()
            }
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => unreachable!("{}", crate::common::NO_MYSQL),
        };
        assert!(refused.to_string().contains("app_pool"), "{refused}");
    }
);
