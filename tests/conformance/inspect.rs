//! Inspection: counts, one job, the claims of a process, the process list.

use super::*;
use crate::common::{backend_test, TestDb};

backend_test!(
    fn counts_report_totals_and_per_queue_states_sorted_by_queue(db: &TestDb) {
        let store = &db.store;
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
        store.fail_claims(&[b[0].token], &error("x"), t(2)).unwrap();
        store.complete_claims(&[b[1].token], t(2)).unwrap();
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
);

backend_test!(
    fn job_reports_state_and_claiming_process(db: &TestDb) {
        let store = &db.store;
        assert_eq!(store.job(12_345).unwrap(), None);
        let id = enqueue_one(store, NewJob { priority: 4, ..job("k", "q", 0) });
        let row = store.job(id).unwrap().unwrap();
        assert_eq!(
            (row.id, row.kind.as_str(), row.queue.as_str(), row.priority, row.state.unwrap().as_str()),
            (id, "k", "q", 4, "ready")
        );
        assert_eq!((row.process_id, row.last_error, row.finished_at), (None, None, None));
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        let row = store.job(id).unwrap().unwrap();
        assert_eq!((row.state.unwrap().as_str(), row.process_id, row.attempts), ("claimed", Some(p), 1));
        store.retry_claims(&[token], &error("again"), t(90), t(3)).unwrap();
        assert_eq!(store.job(id).unwrap().unwrap().process_id, None);
        assert_eq!(state(store, id), "scheduled");
    }
);

backend_test!(
    fn claims_of_lists_the_claims_of_a_process_by_job_id(db: &TestDb) {
        let store = &db.store;
        enqueue(store, &[job("a", "q", 5), job("b", "q", 0), job("c", "q", 0)]);
        let p = register(store, "worker");
        let other = register(store, "other");
        let mine = claim(store, p, &["*"], 2);
        let theirs = claim(store, other, &["*"], 1);
        let mut expected: Vec<_> = mine.iter().map(|c| c.token).collect();
        expected.sort_by_key(|token| token.job_id);
        assert_eq!(store.claims_of(p).unwrap(), expected);
        assert_eq!(store.claims_of(other).unwrap(), [theirs[0].token]);
        store.complete_claims(&[mine[0].token], t(2)).unwrap();
        assert_eq!(store.claims_of(p).unwrap(), [mine[1].token]);
        assert!(store.claims_of(9_999).unwrap().is_empty());
    }
);

backend_test!(
    fn processes_lists_rows_in_registration_order_with_metadata(db: &TestDb) {
        let store = &db.store;
        let first = register(store, "first");
        let second = store
            .register_process(&NewProcess { pid: 7, hostname: "other".into(), ..new_process("second") }, t(3))
            .unwrap();
        let rows = store.processes().unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [first, second]);
        assert_eq!(rows[0].metadata, new_process("first").metadata);
        assert_eq!((rows[0].kind.as_str(), rows[0].name.as_str()), ("Runtime", "first"));
        assert_eq!((rows[1].pid, rows[1].hostname.as_str()), (7, "other"));
        assert_eq!((rows[1].created_at, rows[1].last_heartbeat_at), (t(3), t(3)));
    }
);

backend_test!(
    fn waiting_counts_ready_and_scheduled_jobs_per_kind_and_queue(db: &TestDb) {
        use solidq::store::Waiting;
        let store = &db.store;
        assert!(store.waiting().unwrap().is_empty());
        enqueue(
            store,
            &[
                job("mail", "mailers", 0),
                job("mail", "mailers", 0),
                job("report", "reports", 0),
                job("mail", "default", 0),
            ],
        );
        enqueue(store, &[NewJob { queue: "reports".into(), ..scheduled("report", t(600)) }]);
        let p = register(store, "worker");
        claim(store, p, &["default"], 1);
        let waiting = store.waiting().unwrap();
        let row = |kind: &str, queue: &str, ready, scheduled| Waiting {
            kind: kind.into(),
            queue: queue.into(),
            ready,
            scheduled,
        };
        assert_eq!(waiting, [row("mail", "mailers", 2, 0), row("report", "reports", 1, 1)]);
    }
);
