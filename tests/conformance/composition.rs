//! Jobs that compose: batches (members counted as they end, callbacks enqueued once by the
//! transaction of the last member's outcome) and workflows (jobs waiting for other jobs). The
//! SIGKILL of the process running a batch's last job is in `tests/os_processes.rs`.

use super::*;
use crate::common::{backend_test, TestDb};
use solidq::model::{DeathPolicy, Dependency, OnDependencyFailure};
use solidq::store::composition::{BatchInfo, CallbackKind, NewBatch, WorkflowStep};

fn callbacks() -> NewBatch {
    NewBatch {
        description: Some("test batch".into()),
        on_success: Some(job("cb.success", "callbacks", 0)),
        on_finish: Some(job("cb.finish", "callbacks", 0)),
        on_failure: Some(job("cb.failure", "callbacks", 0)),
    }
}

fn callback(info: &BatchInfo, when: CallbackKind) -> Option<JobId> {
    info.callbacks.iter().find(|c| c.when == when).and_then(|c| c.job)
}

fn batch_of(store: &Store, jobs: &[NewJob]) -> (i64, Vec<JobId>) {
    let (id, enqueued) = store.enqueue_batch(&callbacks(), jobs, t(0)).expect("enqueue_batch");
    (id, enqueued.into_iter().map(|e| e.id()).collect())
}

fn info(store: &Store, id: i64) -> BatchInfo {
    store.batch(id).expect("batch").expect("batch exists")
}

/// Claims everything ready on the "default" queue for `process`.
fn claim_all(store: &Store, process: ProcessId) -> Vec<ClaimedJob> {
    claim(store, process, &["default"], 1_000)
}

fn after(job_: NewJob, on: &[JobId]) -> NewJob {
    NewJob {
        after: on.iter().map(|&job| Dependency { job, on_failure: OnDependencyFailure::Cancel }).collect(),
        ..job_
    }
}

fn after_any(job_: NewJob, on: &[JobId]) -> NewJob {
    NewJob { after: on.iter().map(|&job| Dependency { job, on_failure: OnDependencyFailure::Run }).collect(), ..job_ }
}

/// Two stores (two processes) complete one claim each at the same moment.
fn complete_at_once(stores: &[SharedStore; 2], tokens: [solidq::model::ClaimToken; 2], round: usize) {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = stores
        .iter()
        .zip(tokens)
        .map(|(store, token)| {
            let (store, barrier) = (store.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                store.complete_claims(&[token], t(2)).unwrap()
            })
        })
        .collect();
    for handle in handles {
        assert!(applied(handle.join().unwrap()), "round {round}");
    }
}

backend_test!(
    fn a_batch_enqueues_its_success_and_finish_callbacks_once_when_its_last_job_finishes(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let (batch, members) =
            batch_of(store, &[job("a", "default", 0), job("b", "default", 0), job("c", "default", 0)]);
        assert_eq!(members.len(), 3);
        let before = info(store, batch);
        assert_eq!((before.size, before.pending, before.succeeded, before.failed), (3, 3, 0, 0));
        assert_eq!(before.description.as_deref(), Some("test batch"));
        let claims = claim_all(store, p);
        assert_eq!(claims.len(), 3);
        store.complete_claims(&[claims[0].token, claims[1].token], t(2)).unwrap();
        let open = info(store, batch);
        assert_eq!((open.pending, open.succeeded, open.finished_at), (1, 2, None));
        assert!(open.callbacks.iter().all(|c| c.job.is_none()), "no callback while a job runs: {open:?}");
        assert!(applied(store.complete_claims(&[claims[2].token], t(3)).unwrap()), "the last one applied");
        let done = info(store, batch);
        assert_eq!((done.pending, done.succeeded, done.failed), (0, 3, 0));
        assert_eq!(done.finished_at, Some(t(3)));
        let success = callback(&done, CallbackKind::Success).expect("success callback enqueued");
        let finish = callback(&done, CallbackKind::Finish).expect("finish callback enqueued");
        assert_eq!(callback(&done, CallbackKind::Failure), None, "no failure callback when all finished");
        assert_eq!(state(store, success), "ready");
        assert_eq!(store.job(finish).unwrap().unwrap().kind, "cb.finish");
        // A callback reads its batch; the batch's jobs are its members only.
        assert_eq!(store.batch_of_job(success).unwrap().map(|b| b.id), Some(batch));
        assert_eq!(store.batch_job_ids(batch).unwrap(), members);
        // The callbacks ending changes nothing.
        let cbs = claim(store, p, &["callbacks"], 10);
        assert_eq!(cbs.len(), 2);
        store.complete_claims(&cbs.iter().map(|c| c.token).collect::<Vec<_>>(), t(4)).unwrap();
        assert_eq!(info(store, batch), done);
        assert_eq!(store.batches(10, false).unwrap()[0].id, batch);
        assert!(store.batches(10, true).unwrap().is_empty(), "no open batch left");
    }
);

backend_test!(
    fn a_batch_with_a_job_failed_for_good_or_discarded_enqueues_its_failure_and_finish_callbacks(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let (batch, _) = batch_of(store, &[job("a", "default", 0), job("b", "default", 0), job("c", "default", 0)]);
        let claims = claim_all(store, p);
        store.fail_claims(&[claims[0].token], &error("broken"), t(2)).unwrap();
        // A retry is not an end.
        store.retry_claims(&[claims[1].token], &error("again"), t(2), t(2)).unwrap();
        assert_eq!(info(store, batch).pending, 2);
        store.complete_claims(&[claims[2].token], t(3)).unwrap();
        let retried = claim_all(store, p);
        assert_eq!(retried.len(), 1);
        store.record(&[(retried[0].token, solidq::lifecycle::Transition::Discard(error("no point")))], t(4)).unwrap();
        let done = info(store, batch);
        assert_eq!((done.pending, done.succeeded, done.failed), (0, 1, 2));
        assert!(callback(&done, CallbackKind::Failure).is_some() && callback(&done, CallbackKind::Finish).is_some());
        assert_eq!(callback(&done, CallbackKind::Success), None);
    }
);

backend_test!(
    fn two_workers_finishing_a_batch_s_last_two_jobs_at_once_enqueue_its_callback_once(db: &TestDb) {
        const ROUNDS: usize = 15;
        let stores = [db.connect_again(), db.connect_again()];
        let processes = [register(&stores[0], "a"), register(&stores[1], "b")];
        for round in 0..ROUNDS {
            let (batch, _) = batch_of(&db.store, &[job("a", "default", 0), job("b", "default", 0)]);
            let first = claim(&stores[0], processes[0], &["default"], 1);
            let second = claim(&stores[1], processes[1], &["default"], 1);
            assert_eq!((first.len(), second.len()), (1, 1), "round {round}");
            complete_at_once(&stores, [first[0].token, second[0].token], round);
            let done = info(&db.store, batch);
            assert_eq!((done.pending, done.succeeded), (0, 2), "round {round}: {done:?}");
            assert!(callback(&done, CallbackKind::Finish).is_some(), "round {round}: {done:?}");
        }
        let callbacks = db.store.counts().unwrap().1.into_iter().find(|q| q.queue == "callbacks").unwrap();
        // Success and finish per batch, exactly.
        assert_eq!(callbacks.counts.ready, 2 * ROUNDS as i64, "{callbacks:?}");
    }
);

backend_test!(
    fn a_batch_s_job_of_a_dead_process_comes_back_and_the_callback_runs_after_the_retry(db: &TestDb) {
        let store = &db.store;
        let dead = register(store, "dead");
        let alive = register(store, "alive");
        let (batch, _) = batch_of(store, &[job("a", "default", 0)]);
        assert_eq!(claim_all(store, dead).len(), 1);
        let outcome =
            reap_process(store, dead, &DeathCause::Proven("killed".into()), DeathPolicy::Retry, t(2)).unwrap();
        assert_eq!((outcome.reaped, outcome.retried), (true, 1));
        assert_eq!(info(store, batch).pending, 1, "a death is not an end while attempts remain");
        let again = claim_all(store, alive);
        store.complete_claims(&[again[0].token], t(3)).unwrap();
        let done = info(store, batch);
        assert_eq!((done.pending, done.succeeded), (0, 1));
        assert!(callback(&done, CallbackKind::Success).is_some());
    }
);

backend_test!(
    fn jobs_join_an_open_batch_and_are_refused_once_it_ended(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let (batch, _) = batch_of(store, &[job("a", "default", 0)]);
        let running = claim_all(store, p);
        // The running member adds a job to its own batch.
        let added = store.add_to_batch(batch, &[job("b", "default", 0)], t(1)).unwrap();
        assert_eq!(added.len(), 1);
        store.complete_claims(&[running[0].token], t(2)).unwrap();
        let open = info(store, batch);
        assert_eq!((open.size, open.pending, open.finished_at), (2, 1, None), "the added job keeps it open");
        let next = claim_all(store, p);
        store.complete_claims(&[next[0].token], t(3)).unwrap();
        assert!(info(store, batch).is_finished());
        let err = store.add_to_batch(batch, &[job("c", "default", 0)], t(4)).unwrap_err().to_string();
        assert!(err.contains(&format!("batch {batch} has ended")), "{err}");
        let err = store.add_to_batch(9_999_999, &[job("c", "default", 0)], t(4)).unwrap_err().to_string();
        assert!(err.contains("batch 9999999 does not exist"), "{err}");
        // An empty batch ends at once, as a success.
        let (empty, _) = batch_of(store, &[]);
        let done = info(store, empty);
        assert!(done.is_finished() && callback(&done, CallbackKind::Success).is_some(), "{done:?}");
    }
);

backend_test!(
    fn a_batch_enqueued_in_the_application_s_transaction_exists_only_if_it_commits(db: &TestDb) {
        let pool = solidq::store::connection::app_pool(&db.url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        let rolled_back: Result<(), diesel::result::Error> = conn.transaction(|conn| {
            solidq::store::composition::enqueue_batch_in(conn, &callbacks(), &[job("a", "default", 0)], t(0))
                .expect("batch in the transaction");
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(rolled_back.is_err());
        assert!(db.store.batches(10, false).unwrap().is_empty(), "rolled back");
        let committed = conn
            .transaction(|conn| {
                solidq::store::composition::enqueue_batch_in(conn, &callbacks(), &[job("a", "default", 0)], t(0))
                    .map_err(|_| diesel::result::Error::RollbackTransaction)
            })
            .unwrap();
        assert_eq!(info(&db.store, committed.0).size, 1);
    }
);

backend_test!(
    fn a_job_waits_for_the_jobs_it_runs_after_and_is_ready_once_they_finished(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let a = enqueue_one(store, job("a", "default", 0));
        let b = enqueue_one(store, job("b", "default", 0));
        let c = enqueue_one(store, after(job("c", "default", 0), &[a, b]));
        assert_eq!(state(store, c), "waiting");
        assert_eq!(totals(store).waiting, 1);
        // Both per-queue views (`solidq queues list`, the dashboard's Queues page) count it.
        let queue = store.queues(t(1)).unwrap().into_iter().find(|q| q.name == "default").expect("default queue");
        assert_eq!((queue.ready, queue.waiting), (2, 1), "{queue:?}");
        let stats = store.queue_stats(t(1)).unwrap().into_iter().find(|q| q.queue == "default").expect("default");
        assert_eq!((stats.ready.value(), stats.waiting.value()), (2, 1), "{stats:?}");
        let deps = store.dependencies(c).unwrap();
        assert_eq!(deps.depends_on.iter().map(|d| d.job).collect::<Vec<_>>(), [a, b]);
        assert_eq!(store.dependencies(a).unwrap().dependants.iter().map(|d| d.job).collect::<Vec<_>>(), [c]);
        let claims = claim_all(store, p);
        assert_eq!(kinds(&claims), ["a", "b"], "the waiting job is not claimed");
        store.complete_claims(&[claims[0].token], t(2)).unwrap();
        assert_eq!(state(store, c), "waiting", "b still runs");
        store.complete_claims(&[claims[1].token], t(3)).unwrap();
        assert_eq!(state(store, c), "ready");
        // After a job that already finished: ready at once. After a job that does not exist:
        // refused, naming it.
        let d = enqueue_one(store, after(job("d", "default", 0), &[a]));
        assert_eq!(state(store, d), "ready");
        let err = store.enqueue(&[after(job("e", "default", 0), &[a, 987_654])], t(4)).unwrap_err().to_string();
        assert!(err.contains("depends on job 987654, which does not exist"), "{err}");
        // A scheduled dependant waits for its time once its prerequisite finished.
        let later = enqueue_one(store, after(NewJob { scheduled_at: Some(t(100)), ..job("f", "default", 0) }, &[b]));
        assert_eq!(state(store, later), "scheduled");
    }
);

backend_test!(
    fn a_failed_prerequisite_cancels_its_dependants_in_turn_unless_they_run_anyway(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let a = enqueue_one(store, job("a", "default", 0));
        let b = enqueue_one(store, after(job("b", "default", 0), &[a]));
        let c = enqueue_one(store, after(job("c", "default", 0), &[b]));
        let d = enqueue_one(store, after_any(job("d", "default", 0), &[a]));
        let e = enqueue_one(store, after_any(job("e", "default", 0), &[c]));
        let claims = claim_all(store, p);
        assert_eq!(kinds(&claims), ["a"]);
        store.fail_claims(&[claims[0].token], &error("broken"), t(2)).unwrap();
        assert_eq!(state(store, b), "cancelled");
        assert_eq!(state(store, c), "cancelled", "cancelled in turn");
        let why = last_error(store, c);
        assert_eq!(why.kind, FailureKind::DependencyFailed);
        assert!(why.message.contains(&format!("job {b}")), "{why:?}");
        assert_eq!(state(store, d), "ready", "runs anyway after a's failure");
        assert_eq!(state(store, e), "ready", "runs anyway after c was cancelled");
        // After a job that already failed: cancelled at once (or ready, when it runs anyway).
        let f = enqueue_one(store, after(job("f", "default", 0), &[a]));
        assert_eq!(state(store, f), "cancelled");
        let g = enqueue_one(store, after_any(job("g", "default", 0), &[a]));
        assert_eq!(state(store, g), "ready");
    }
);

backend_test!(
    fn jobs_with_prerequisites_enqueued_together_each_get_their_own_verdict(db: &TestDb) {
        // One enqueue of several jobs whose one option is `after` takes the batched path:
        // each job still waits, runs or is cancelled by its own prerequisites.
        let store = &db.store;
        let p = register(store, "w");
        let done = enqueue_one(store, job("done", "default", 0));
        let broken = enqueue_one(store, job("broken", "default", 0));
        let claims = claim_all(store, p);
        store.complete_claims(&[claims[0].token], t(1)).unwrap();
        store.fail_claims(&[claims[1].token], &error("broken"), t(1)).unwrap();
        let running = enqueue_one(store, job("running", "default", 0));
        let held = claim_all(store, p);
        assert_eq!(kinds(&held), ["running"]);
        let ids: Vec<JobId> = store
            .enqueue(
                &[
                    after(job("after-done", "default", 0), &[done]),
                    after(job("after-broken", "default", 0), &[broken]),
                    after_any(job("after-broken-anyway", "default", 0), &[broken]),
                    after(job("after-running", "default", 0), &[running, done]),
                    after(NewJob { scheduled_at: Some(t(100)), ..job("after-done-later", "default", 0) }, &[done]),
                ],
                t(2),
            )
            .unwrap();
        let states: Vec<String> = ids.iter().map(|&id| state(store, id)).collect();
        assert_eq!(states, ["ready", "cancelled", "ready", "waiting", "scheduled"]);
        assert_eq!(
            store.dependencies(ids[3]).unwrap().depends_on.iter().map(|d| d.job).collect::<Vec<_>>(),
            [done, running]
        );
        store.complete_claims(&[held[0].token], t(3)).unwrap();
        assert_eq!(state(store, ids[3]), "ready");
        // A missing prerequisite anywhere in the run refuses the whole enqueue, naming it.
        let before = totals(store);
        let err = store
            .enqueue(&[after(job("x", "default", 0), &[done]), after(job("y", "default", 0), &[555_555])], t(4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("depends on job 555555, which does not exist"), "{err}");
        assert_eq!(totals(store), before, "nothing of the refused enqueue stays");
    }
);

backend_test!(
    fn a_workflow_s_steps_wait_for_their_own_prerequisites_whatever_order_they_are_declared_in(db: &TestDb) {
        // Steps are enqueued layer by layer; ids come back in declaration order.
        let store = &db.store;
        let p = register(store, "w");
        let step = |kind: &str, after: Vec<usize>| WorkflowStep {
            job: job(kind, "default", 0),
            after: after.into_iter().map(|i| (i, OnDependencyFailure::Cancel)).collect(),
        };
        let steps =
            vec![step("a", vec![]), step("b", vec![0]), step("c", vec![]), step("d", vec![1, 2]), step("e", vec![0])];
        let ids = store.enqueue_workflow(&steps, t(0)).unwrap();
        let kinds_of: Vec<String> = ids.iter().map(|&id| store.job(id).unwrap().expect("job").kind).collect();
        assert_eq!(kinds_of, ["a", "b", "c", "d", "e"]);
        let states: Vec<String> = ids.iter().map(|&id| state(store, id)).collect();
        assert_eq!(states, ["ready", "waiting", "ready", "waiting", "waiting"]);
        let first = claim_all(store, p);
        assert_eq!(kinds(&first), ["a", "c"]);
        store.complete_claims(&first.iter().map(|c| c.token).collect::<Vec<_>>(), t(1)).unwrap();
        let second = claim_all(store, p);
        assert_eq!(kinds(&second), ["b", "e"]);
        store.complete_claims(&second.iter().map(|c| c.token).collect::<Vec<_>>(), t(2)).unwrap();
        assert_eq!(kinds(&claim_all(store, p)), ["d"]);
    }
);

backend_test!(
    fn cancelling_a_waiting_job_cancels_the_jobs_after_it(db: &TestDb) {
        let store = &db.store;
        let a = enqueue_one(store, job("a", "default", 0));
        let b = enqueue_one(store, after(job("b", "default", 0), &[a]));
        let c = enqueue_one(store, after(job("c", "default", 0), &[b]));
        store.cancel_job(b, t(1)).unwrap();
        assert_eq!(state(store, b), "cancelled");
        assert_eq!(state(store, c), "cancelled");
        assert_eq!(state(store, a), "ready", "its prerequisite is untouched");
    }
);

backend_test!(
    fn the_last_two_prerequisites_ending_at_once_release_their_dependant_once(db: &TestDb) {
        const ROUNDS: usize = 15;
        let stores = [db.connect_again(), db.connect_again()];
        let processes = [register(&stores[0], "a"), register(&stores[1], "b")];
        for round in 0..ROUNDS {
            let a = enqueue_one(&db.store, job("a", "default", 0));
            let b = enqueue_one(&db.store, job("b", "default", 0));
            let c = enqueue_one(&db.store, after(job("c", "other", 0), &[a, b]));
            let first = claim(&stores[0], processes[0], &["default"], 1);
            let second = claim(&stores[1], processes[1], &["default"], 1);
            complete_at_once(&stores, [first[0].token, second[0].token], round);
            assert_eq!(state(&db.store, c), "ready", "round {round}");
        }
        assert_eq!(totals(&db.store).ready, ROUNDS as i64);
    }
);

backend_test!(
    fn a_diamond_workflow_of_1000_steps_runs_each_step_once_in_order(db: &TestDb) {
        const MIDDLE: usize = 998;
        let mut steps = vec![WorkflowStep { job: job("root", "default", 0), after: Vec::new() }];
        for i in 0..MIDDLE {
            steps.push(WorkflowStep {
                job: job(&format!("mid{i}"), "default", 0),
                after: vec![(0, Default::default())],
            });
        }
        steps.push(WorkflowStep {
            job: job("sink", "default", 0),
            after: (1..=MIDDLE).map(|i| (i, OnDependencyFailure::Cancel)).collect(),
        });
        let ids = db.store.enqueue_workflow(&steps, t(0)).unwrap();
        assert_eq!(ids.len(), 1_000);
        assert_eq!(totals(&db.store).waiting, 999);
        // Three workers claim and finish in batches, recording the order of their claims.
        let order = Arc::new(std::sync::Mutex::new(Vec::<JobId>::new()));
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let store = db.connect_again();
                let order = order.clone();
                let sink = ids[MIDDLE + 1];
                thread::spawn(move || {
                    let process = register(&store, &format!("w{i}"));
                    let kinds: Vec<String> = std::iter::once("root".to_string())
                        .chain((0..MIDDLE).map(|i| format!("mid{i}")))
                        .chain(["sink".into()])
                        .collect();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    loop {
                        let claims =
                            store.claim(process, &[QueuePattern::parse("default")], &kinds, 50, t(1)).expect("claim");
                        {
                            let mut order = order.lock().unwrap();
                            order.extend(claims.iter().map(|c| c.token.job_id));
                            if order.contains(&sink) && claims.is_empty() {
                                return;
                            }
                        }
                        if claims.is_empty() {
                            assert!(Instant::now() < deadline, "the workflow stalled");
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        store.complete_claims(&claims.iter().map(|c| c.token).collect::<Vec<_>>(), t(2)).unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 1_000, "each step claimed once");
        assert_eq!(order.iter().collect::<HashSet<_>>().len(), 1_000);
        assert_eq!(order[0], ids[0], "the root first");
        assert_eq!(order[999], ids[999], "the sink last");
        wait_until("the sink to finish", || state(&db.store, ids[999]) == "finished");
        assert_eq!(totals(&db.store).finished, 1_000);
    }
);

backend_test!(
    fn the_sweep_resolves_a_waiting_job_whose_prerequisites_ended_behind_its_back(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let a = enqueue_one(store, job("a", "default", 0));
        let b = enqueue_one(store, after(job("b", "default", 0), &[a]));
        // As if `a` had finished on the one-statement path while `b` was being enqueued, and
        // its process died before resolving `b`.
        db.execute_sql("UPDATE solidq_jobs SET has_dependants = FALSE WHERE batch_id IS NULL");
        let claims = claim_all(store, p);
        store.complete_claims(&[claims[0].token], t(2)).unwrap();
        assert_eq!(state(store, b), "waiting");
        assert_eq!(store.resolve_waiting(t(3)).unwrap(), 1);
        assert_eq!(state(store, b), "ready");
        assert_eq!(store.resolve_waiting(t(4)).unwrap(), 0, "nothing left to resolve");
    }
);

backend_test!(
    fn a_retried_member_of_an_open_batch_counts_as_pending_again(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let (batch, members) = batch_of(store, &[job("a", "default", 0), job("b", "default", 0)]);
        let claims = claim_all(store, p);
        store.fail_claims(&[claims[0].token], &error("broken"), t(2)).unwrap();
        assert_eq!((info(store, batch).pending, info(store, batch).failed), (1, 1));
        store.retry_job(members[0], t(3)).unwrap();
        assert_eq!((info(store, batch).pending, info(store, batch).failed), (2, 0), "retried by hand");
        store.complete_claims(&[claims[1].token], t(4)).unwrap();
        assert!(!info(store, batch).is_finished());
        let again = claim_all(store, p);
        store.complete_claims(&[again[0].token], t(5)).unwrap();
        let done = info(store, batch);
        assert_eq!((done.pending, done.succeeded, done.failed), (0, 2, 0));
        assert!(callback(&done, CallbackKind::Success).is_some());
    }
);
