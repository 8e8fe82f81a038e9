//! The dashboard's reads (`store::views`) and bulk actions (`store::bulk`): exact answers on
//! small seeded data, keyset paging that returns every row once, selections that never reach
//! jobs enqueued after the page was drawn, and user data returned untouched.

use solidq::model::ConcurrencyLimit;
use solidq::recurring::RecurringTask;
use solidq::store::views::{FailureGroupKey, JobCursor, Liveness, StuckReason, COUNT_CAP, SCAN_BUDGET};
use solidq::store::{ActionOutcome, Count, JobPage, JobQuery, JobSelection};

use super::*;
use crate::common::{backend_test, TestDb};

/// Every id of `query`'s list, page by page, with the pages' sizes.
fn all_pages(store: &Store, mut query: JobQuery) -> (Vec<JobId>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page: JobPage = store.page_jobs(&query).unwrap();
        sizes.push(page.rows.len());
        ids.extend(page.rows.iter().map(|row| row.id));
        query.upper_id = Some(page.upper_id);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (ids, sizes),
        }
        assert!(sizes.len() < 10_000, "paging does not end");
    }
}

backend_test!(
    fn counts_print_exact_capped_and_estimated(_db: &TestDb) {
        assert_eq!(Count::Exact(1_234_567).to_string(), "1,234,567");
        assert_eq!(Count::Exact(0).to_string(), "0");
        assert_eq!(Count::AtLeast(10_000).to_string(), "≥ 10,000");
        assert_eq!(Count::Estimated(1_234_567).to_string(), "~1.2M");
        assert_eq!(Count::capped(10_001, 10_000), Count::AtLeast(10_000));
        assert_eq!(Count::capped(10_000, 10_000), Count::Exact(10_000));
    }
);

backend_test!(
    fn overview_counts_states_minutes_processes_and_oldest_ready(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q1", 0), job("b", "q1", 0), job("c", "q2", 0), job("d", "q2", 0)]);
        store.enqueue(&[job("late", "q2", 0)], t(30)).unwrap();
        enqueue(store, &[scheduled("s", t(9_000))]);
        let p = register(store, "worker");
        // Claims the two oldest of q1: a (finished at t(65)), b (failed at t(125)).
        let claims = store.claim(p, &[QueuePattern::parse("q1")], &all_kinds(store), 2, t(1)).unwrap();
        store.complete_claims(&[claims[0].token], t(65)).unwrap();
        store.fail_claims(&[claims[1].token], &error("boom"), t(125)).unwrap();
        let now = t(150);
        let overview = store.overview(now, Duration::from_secs(60)).unwrap();
        let c = &overview.counts;
        assert_eq!(
            (c.ready, c.scheduled, c.claimed, c.failed, c.finished, c.blocked, c.discarded, c.cancelled),
            (
                Count::Exact(3),
                Count::Exact(1),
                Count::Exact(0),
                Count::Exact(1),
                Count::Exact(1),
                Count::Exact(0),
                Count::Exact(0),
                Count::Exact(0)
            )
        );
        assert_eq!(overview.per_minute.len(), 60);
        assert_eq!(overview.per_minute.last().unwrap().minute, t(120));
        assert_eq!(overview.per_minute[0].minute, t(120) - chrono::Duration::minutes(59));
        let marks: Vec<(NaiveDateTime, u64, u64)> = overview
            .per_minute
            .iter()
            .filter(|m| m.finished + m.failed > 0)
            .map(|m| (m.minute, m.finished, m.failed))
            .collect();
        assert_eq!(marks, [(t(60), 1, 0), (t(120), 0, 1)]);
        // Registered at t(0): 150 s old against 60 s.
        assert_eq!((overview.processes.alive, overview.processes.late, overview.processes.dead), (0, 0, 1));
        let oldest: Vec<(&str, JobId)> = overview.oldest_ready.iter().map(|o| (o.queue.as_str(), o.job_id)).collect();
        assert_eq!(oldest, [("q2", ids[2])]);
        assert_eq!(overview.oldest_ready[0].age_secs, 150.0);
        assert_eq!(Liveness::of(chrono::Duration::seconds(20), Duration::from_secs(60)), Liveness::Alive);
        assert_eq!(Liveness::of(chrono::Duration::seconds(45), Duration::from_secs(60)), Liveness::Late);
        assert_eq!(Liveness::of(chrono::Duration::seconds(61), Duration::from_secs(60)), Liveness::Dead);
    }
);

backend_test!(
    fn counts_above_the_cap_say_at_least(db: &TestDb) {
        let store = &db.store;
        let many: Vec<NewJob> = (0..=COUNT_CAP).map(|i| job(&format!("k{}", i % 3), "big", 0)).collect();
        enqueue(store, &many);
        assert_eq!(store.state_counts().unwrap().ready, Count::AtLeast(COUNT_CAP));
        let page = store.page_jobs(&JobQuery::new(JobState::Ready)).unwrap();
        assert_eq!(page.total, Some(Count::AtLeast(COUNT_CAP)));
        // Exact per queue: the execution tables hold only unended jobs.
        let queues = store.queue_stats(t(0)).unwrap();
        assert_eq!(queues[0].ready, Count::Exact(COUNT_CAP + 1));
    }
);

backend_test!(
    fn queue_stats_report_depth_latency_and_pause(db: &TestDb) {
        let store = &db.store;
        enqueue(store, &[job("a", "mail", 0), job("b", "mail", 0), job("c", "web", 0)]);
        store.enqueue(&[NewJob { queue: "web".into(), ..scheduled("s", t(500)) }], t(0)).unwrap();
        store.pause_queue("idle", t(5)).unwrap();
        let p = register(store, "worker");
        let claimed = claim(store, p, &["web"], 1);
        store.fail_claims(&[claimed[0].token], &error("x"), t(2)).unwrap();
        let stats = store.queue_stats(t(40)).unwrap();
        type Shown<'a> = (&'a str, u64, u64, u64, u64, f64, Option<NaiveDateTime>);
        let rows: Vec<Shown> = stats
            .iter()
            .map(|q| {
                (
                    q.queue.as_str(),
                    q.ready.value(),
                    q.scheduled.value(),
                    q.claimed.value(),
                    q.failed.value(),
                    q.latency_secs,
                    q.paused_since,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [("idle", 0, 0, 0, 0, 0.0, Some(t(5))), ("mail", 2, 0, 0, 0, 40.0, None), ("web", 0, 1, 0, 1, 0.0, None)]
        );
    }
);

backend_test!(
    fn process_details_show_liveness_jobs_held_and_judgement(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0), job("c", "q", 0)]);
        let p = register(store, "worker-1");
        claim(store, p, &["*"], 2);
        let details = store.process_details(t(40), Duration::from_secs(60)).unwrap();
        assert_eq!(details.len(), 1);
        let d = &details[0];
        assert_eq!(
            (d.id, d.name.as_str(), d.hostname.as_str(), d.pid, d.liveness, d.jobs_held, d.some_jobs.clone()),
            (p, "worker-1", "testhost", 4242, Liveness::Late, 2, vec![ids[0], ids[1]])
        );
        assert_eq!((d.heartbeat_age_secs, d.judged_at, d.abandoned), (40.0, t(60), false));
        let alive = store.process_details(t(10), Duration::from_secs(60)).unwrap();
        assert_eq!(alive[0].liveness, Liveness::Alive);
    }
);

backend_test!(
    fn stuck_jobs_are_those_of_late_processes_or_running_long(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("b", "q", 0)]);
        let p = register(store, "worker");
        claim(store, p, &["*"], 1); // a, claimed at t(1)
                                    // Fresh heartbeat at t(100): alive at t(110) against 60 s.
        store.beat(p, t(100)).unwrap();
        let other = register(store, "other");
        store.beat(other, t(100)).unwrap();
        store.claim(other, &[QueuePattern::parse("*")], &all_kinds(store), 1, t(105)).unwrap(); // b
        let none = store.stuck_jobs(t(110), Duration::from_secs(60), Duration::from_secs(3600), 100).unwrap();
        assert_eq!(none, []);
        let long = store.stuck_jobs(t(110), Duration::from_secs(60), Duration::from_secs(100), 100).unwrap();
        assert_eq!(
            long.iter().map(|s| (s.job_id, s.reason, s.process_name.clone())).collect::<Vec<_>>(),
            [(ids[0], StuckReason::RunningLong, Some("worker".to_string()))]
        );
        assert_eq!(long[0].running_secs, 109.0);
        // At t(145) both heartbeats are 45 s old: late.
        let late = store.stuck_jobs(t(145), Duration::from_secs(60), Duration::from_secs(3600), 100).unwrap();
        assert_eq!(
            late.iter().map(|s| (s.job_id, s.reason)).collect::<Vec<_>>(),
            [(ids[0], StuckReason::ProcessLate), (ids[1], StuckReason::ProcessLate)]
        );
    }
);

backend_test!(
    fn keyset_pages_return_every_row_once_newest_first(db: &TestDb) {
        let store = &db.store;
        let ready_ids = enqueue(store, &(0..23).map(|i| job("k", &format!("q{}", i % 2), 0)).collect::<Vec<_>>());
        let mut expected: Vec<JobId> = ready_ids.clone();
        expected.reverse();
        let mut query = JobQuery::new(JobState::Ready);
        query.limit = 5;
        let (ids, sizes) = all_pages(store, query.clone());
        assert_eq!(ids, expected);
        assert_eq!(sizes, [5, 5, 5, 5, 3]);
        query.queue = Some("q1".into());
        let (ids, _) = all_pages(store, query);
        assert_eq!(ids, expected.iter().copied().filter(|id| (id - ready_ids[0]) % 2 == 1).collect::<Vec<_>>());
        // Ended jobs, several per second, by (finished_at, id).
        let p = register(store, "worker");
        let mut finished = Vec::new();
        for second in 0..5 {
            let claims = store.claim(p, &[QueuePattern::parse("*")], &all_kinds(store), 3, t(10)).unwrap();
            let tokens: Vec<_> = claims.iter().map(|c| c.token).collect();
            store.complete_claims(&tokens, t(20 - second)).unwrap();
            finished.push(claims.iter().map(|c| c.token.job_id).collect::<Vec<_>>());
        }
        // Newest end time first (the first batch, at t(20)), ids descending within a time.
        let expected: Vec<JobId> = finished.iter().flat_map(|batch| batch.iter().rev().copied()).collect();
        let mut query = JobQuery::new(JobState::Finished);
        query.limit = 4;
        let (ids, sizes) = all_pages(store, query.clone());
        assert_eq!(ids, expected);
        assert_eq!(sizes, [4, 4, 4, 3]);
        let first = store.page_jobs(&query).unwrap();
        assert_eq!(first.total, Some(Count::Exact(15)));
        let cursor = first.next.unwrap();
        assert_eq!(cursor.to_string().parse::<JobCursor>().unwrap(), cursor);
        // A cursor of another list is refused, naming the problem.
        let mut wrong = JobQuery::new(JobState::Ready);
        wrong.after = Some(cursor);
        let err = store.page_jobs(&wrong).unwrap_err().to_string();
        assert!(err.contains("does not fit the ready list"), "{err}");
        assert!("12@x".parse::<JobCursor>().unwrap_err().contains("bad page cursor"));
        let mut zero = JobQuery::new(JobState::Ready);
        zero.limit = 0;
        assert!(store.page_jobs(&zero).unwrap_err().to_string().contains("page size 0"));
    }
);

backend_test!(
    fn text_filter_pages_stop_at_the_scan_budget_and_continue(db: &TestDb) {
        let store = &db.store;
        let n = SCAN_BUDGET + 300;
        let mut jobs: Vec<NewJob> =
            (0..n).map(|i| NewJob { arguments: json!({ "n": i }).to_string(), ..job("k", "q", 0) }).collect();
        // Two needles: the oldest job and one in the middle of the newest window.
        jobs[0].arguments = json!({ "who": "Needle-Alpha" }).to_string();
        jobs[n - 10].arguments = json!({ "who": "needle-beta 100%" }).to_string();
        let ids = enqueue(store, &jobs);
        let mut query = JobQuery::new(JobState::Ready);
        query.text = Some("NEEDLE".into());
        query.limit = 10;
        let first = store.page_jobs(&query).unwrap();
        assert_eq!(first.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[n - 10]]);
        assert!(first.budget_exhausted);
        assert_eq!((first.scanned, first.total), (SCAN_BUDGET, None));
        query.after = first.next;
        query.upper_id = Some(first.upper_id);
        let second = store.page_jobs(&query).unwrap();
        assert_eq!(second.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
        assert_eq!((second.next, second.budget_exhausted, second.scanned), (None, false, 300));
        // `%` and `_` match themselves.
        let mut literal = JobQuery::new(JobState::Ready);
        literal.text = Some("100%".into());
        let (found, _) = all_pages(store, literal.clone());
        assert_eq!(found, [ids[n - 10]]);
        literal.text = Some("needle_".into());
        assert_eq!(all_pages(store, literal).0, Vec::<JobId>::new());
    }
);

backend_test!(
    fn script_in_arguments_kind_and_error_round_trips_untouched(db: &TestDb) {
        let store = &db.store;
        let arguments = r#"{"html":"<script>alert('x')</script>","amp":"&lt;"}"#;
        let kind = "<script>kind</script>";
        let id = enqueue_one(store, NewJob { arguments: arguments.into(), ..job(kind, "q", 0) });
        let p = register(store, "worker");
        let token = claim(store, p, &["*"], 1)[0].token;
        store.fail_claims(&[token], &error("<script>boom</script>"), t(2)).unwrap();
        let mut query = JobQuery::new(JobState::Failed);
        query.text = Some("<script>".into());
        let page = store.page_jobs(&query).unwrap();
        assert_eq!((page.rows[0].arguments.as_str(), page.rows[0].kind.as_str()), (arguments, kind));
        let detail = store.job_detail(id).unwrap().unwrap();
        assert_eq!(detail.job.arguments, arguments);
        assert_eq!(detail.failures[0].message, "<script>boom</script>");
        let groups = store.failure_groups(10).unwrap();
        assert_eq!((groups[0].key.kind.as_str(), groups[0].key.message.as_str()), (kind, "<script>boom</script>"));
    }
);

backend_test!(
    fn job_detail_keeps_every_failure_and_the_timeline(db: &TestDb) {
        let store = &db.store;
        assert_eq!(store.job_detail(999).unwrap(), None);
        let id = enqueue_one(store, job("k", "q", 0));
        let p = register(store, "worker-1");
        let token = claim(store, p, &["*"], 1)[0].token;
        let mut panic = FailureRecord::new(FailureKind::Panic, "first");
        panic.backtrace = Some("src/job.rs:10".into());
        store.retry_claims(&[token], &panic, t(3), t(2)).unwrap();
        store.dispatch_due(t(3), 100).unwrap();
        let token = store.claim(p, &[QueuePattern::parse("*")], &all_kinds(store), 1, t(4)).unwrap()[0].token;
        let running = store.job_detail(id).unwrap().unwrap();
        assert_eq!(
            (running.timeline.claimed_by, running.timeline.claimed_by_name.as_deref(), running.timeline.claimed_at),
            (Some(p), Some("worker-1"), Some(t(4)))
        );
        assert_eq!(running.timeline.claimed_by_host.as_deref(), Some("testhost"));
        store.fail_claims(&[token], &error("second"), t(5)).unwrap();
        let detail = store.job_detail(id).unwrap().unwrap();
        let failures: Vec<(i32, NaiveDateTime, FailureKind, &str, Option<&str>)> = detail
            .failures
            .iter()
            .map(|f| (f.attempt, f.at, f.kind, f.message.as_str(), f.backtrace.as_deref()))
            .collect();
        assert_eq!(
            failures,
            [
                (1, t(2), FailureKind::Panic, "first", Some("src/job.rs:10")),
                (2, t(5), FailureKind::Error, "second", None)
            ]
        );
        assert_eq!(detail.job.attempts, 2);
        assert_eq!(
            (
                detail.timeline.created_at,
                detail.timeline.failed_at,
                detail.timeline.claimed_by,
                detail.timeline.ended_at
            ),
            (t(0), Some(t(5)), None, None)
        );
    }
);

backend_test!(
    fn failure_groups_and_group_actions_leave_later_failures_alone(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("mail", "q", 0), job("mail", "q", 0), job("mail", "q", 0), job("sms", "q", 0)]);
        let p = register(store, "worker");
        let claims = claim(store, p, &["*"], 4);
        let token_of = |id: JobId| claims.iter().find(|c| c.token.job_id == id).unwrap().token;
        store.fail_claims(&[token_of(ids[0])], &error("smtp down"), t(2)).unwrap();
        store.fail_claims(&[token_of(ids[1])], &error("smtp down"), t(3)).unwrap();
        store.fail_claims(&[token_of(ids[3])], &error("smtp down"), t(4)).unwrap();
        let groups = store.failure_groups(10).unwrap();
        let shown: Vec<(&str, &str, u64, NaiveDateTime, NaiveDateTime, JobId)> = groups
            .iter()
            .map(|g| (g.key.kind.as_str(), g.key.error_kind.as_str(), g.count, g.first_seen, g.last_seen, g.max_job_id))
            .collect();
        assert_eq!(shown, [("sms", "Error", 1, t(4), t(4), ids[3]), ("mail", "Error", 2, t(2), t(3), ids[1])]);
        let mail = groups[1].clone();
        // A failure of the group arriving after the page was drawn.
        store.fail_claims(&[token_of(ids[2])], &error("smtp down"), t(5)).unwrap();
        let outcome = store.retry_failure_group(&mail.key, mail.max_job_id, t(6)).unwrap();
        assert_eq!(outcome, ActionOutcome { changed: vec![ids[0], ids[1]], skipped: 0 });
        assert_eq!(
            (state(store, ids[0]), state(store, ids[1]), state(store, ids[2])),
            ("ready".into(), "ready".into(), "failed".into())
        );
        let key = FailureGroupKey { kind: "sms".into(), error_kind: "Error".into(), message: "smtp down".into() };
        let outcome = store.discard_failure_group(&key, ids[3], t(7)).unwrap();
        assert_eq!(outcome.changed, [ids[3]]);
        assert_eq!(state(store, ids[3]), "discarded");
    }
);

backend_test!(
    fn selection_actions_never_touch_jobs_enqueued_after_the_page(db: &TestDb) {
        let store = &db.store;
        let ids = enqueue(store, &[job("a", "q", 0), job("a", "q", 0), job("b", "q", 0)]);
        let mut query = JobQuery::new(JobState::Ready);
        query.kind = Some("a".into());
        let page = store.page_jobs(&query).unwrap();
        assert_eq!(page.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[1], ids[0]]);
        let late = enqueue_one(store, job("a", "q", 0));
        let selection = JobSelection::Query { query: query.clone(), upper_id: page.upper_id };
        assert_eq!(store.count_selection(&selection).unwrap(), 2);
        let outcome = store.discard_selection(&selection, t(5)).unwrap();
        assert_eq!(outcome, ActionOutcome { changed: vec![ids[0], ids[1]], skipped: 0 });
        assert_eq!((state(store, late), state(store, ids[2])), ("ready".into(), "ready".into()));
        // Retrying the discarded ones, by query over the ended list, then by ids.
        let mut discarded = JobQuery::new(JobState::Discarded);
        discarded.kind = Some("a".into());
        let page = store.page_jobs(&discarded).unwrap();
        let selection = JobSelection::Query { query: discarded, upper_id: page.upper_id };
        assert_eq!(store.count_selection(&selection).unwrap(), 2);
        assert_eq!(store.retry_selection(&selection, t(6)).unwrap().changed, [ids[0], ids[1]]);
        assert_eq!(state(store, ids[0]), "ready");
        // Ids: cancels the waiting ones; a finished job is skipped.
        let p = register(store, "worker");
        let finished = enqueue_one(store, job("z", "other", 0));
        let token = claim(store, p, &["other"], 1)[0].token;
        store.complete_claims(&[token], t(7)).unwrap();
        let picked = JobSelection::Ids(vec![ids[2], finished, late]);
        assert_eq!(store.count_selection(&picked).unwrap(), 3);
        let outcome = store.cancel_selection(&picked, t(8)).unwrap();
        assert_eq!(outcome, ActionOutcome { changed: vec![ids[2], late], skipped: 1 });
        assert_eq!(state(store, late), "cancelled");
        // An action that does not apply to the query's state is refused.
        let finished_query = JobSelection::Query { query: JobQuery::new(JobState::Finished), upper_id: late };
        let err = store.cancel_selection(&finished_query, t(9)).unwrap_err().to_string();
        assert_eq!(err, "finished jobs cannot be cancelled");
        // Running jobs are asked to stop.
        let running = enqueue_one(store, job("r", "run", 0));
        claim(store, p, &["run"], 1);
        let outcome = store.cancel_selection(&JobSelection::Ids(vec![running]), t(10)).unwrap();
        assert_eq!(outcome.changed, [running]);
        assert_eq!(store.cancel_requests(p).unwrap(), [running]);
    }
);

backend_test!(
    fn concurrency_and_unique_keys_show_holders_and_waiting(db: &TestDb) {
        let store = &db.store;
        let limited = |kind: &str| NewJob {
            concurrency: Some(ConcurrencyLimit {
                key: "account:7".into(),
                limit: 1,
                duration: Duration::from_secs(600),
                on_conflict: solidq::model::OnConflict::Block,
            }),
            ..job(kind, "q", 0)
        };
        let ids = enqueue(store, &[limited("a"), limited("b"), limited("c")]);
        let unique = enqueue_one(store, NewJob { unique_key: Some("report:2026".into()), ..job("u", "q", 0) });
        let keys = store.concurrency_keys(t(0)).unwrap();
        assert_eq!(
            keys.iter().map(|k| (k.key.as_str(), k.limit, k.holders, k.expired_holders, k.blocked)).collect::<Vec<_>>(),
            [("account:7", 1, 1, 0, 2)]
        );
        let p = register(store, "worker");
        claim(store, p, &["*"], 10);
        // Claimed at t(1); the hold lasts 600 s.
        let keys = store.concurrency_keys(t(700)).unwrap();
        assert_eq!((keys[0].holders, keys[0].expired_holders, keys[0].blocked), (0, 1, 2));
        let uniques = store.unique_keys(10).unwrap();
        assert_eq!(
            uniques.iter().map(|u| (u.key.as_str(), u.job_id, u.kind.as_str(), u.state)).collect::<Vec<_>>(),
            [("report:2026", unique, "u", Some(JobState::Claimed))]
        );
        assert_eq!(state(store, ids[1]), "blocked");
    }
);

backend_test!(
    fn recurring_overview_shows_runs_next_run_and_missed_runs(db: &TestDb) {
        let store = &db.store;
        let task = RecurringTask::new("cleanup", "every 60s", "cleanup.run").unwrap();
        store.add_recurring_task(&task, t(0)).unwrap();
        let run = |at: NaiveDateTime| solidq::store::DueRun {
            task_key: "cleanup".into(),
            run_at: at,
            job: NewJob { arguments: "{}".into(), ..job("cleanup.run", "default", 0) },
        };
        let ids = store.enqueue_recurring_runs(&[run(t(60)), run(t(180))], t(60)).unwrap();
        let rows = store.recurring_overview(t(251), 5).unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!((row.task.key.as_str(), row.next_run_at, row.problem.clone()), ("cleanup", Some(t(300)), None));
        assert_eq!(
            row.last_runs.iter().map(|r| (r.run_at, r.job_id, r.state)).collect::<Vec<_>>(),
            [(t(180), ids[1], Some(JobState::Ready)), (t(60), ids[0], Some(JobState::Ready))]
        );
        // Expected after the task was written, older than the on-time window: 60, 120, 180, 240.
        assert_eq!(row.missed, [t(240), t(120)]);
        let now_id = store.run_recurring_now("cleanup", t(251)).unwrap();
        assert_eq!(state(store, now_id), "ready");
        assert_eq!(store.job(now_id).unwrap().unwrap().kind, "cleanup.run");
        let err = store.run_recurring_now("nope", t(252)).unwrap_err().to_string();
        assert_eq!(err, "no recurring task has the key \"nope\"");
    }
);
