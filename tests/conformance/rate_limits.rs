//! Global rate limits (`RateLimit`): a sliding-window log checked at claim time. Claims over
//! the limit are deferred to scheduled at planned times, across stores (processes); the limit
//! composes with concurrency limits, jobs without one are untouched, and the starts of a
//! process found dead keep counting.

use solidq::model::{ConcurrencyLimit, RateLimit};
use solidq::store::DeathCause;

use super::*;
use crate::common::{backend_test, TestDb};

/// A job of `kind` under the rate limit `limit` (e.g. `k:3/10s`).
fn rated(kind: &str, limit: &str) -> NewJob {
    NewJob { rate_limit: Some(RateLimit::parse(limit).unwrap()), ..job(kind, "default", 0) }
}

fn claim_at(store: &Store, process: ProcessId, limit: usize, now: NaiveDateTime) -> Vec<ClaimedJob> {
    store.claim(process, &[QueuePattern::All], &all_kinds(store), limit, now).expect("claim")
}

/// `t(secs)` plus `ms` milliseconds.
fn tm(secs: i64, ms: i64) -> NaiveDateTime {
    t(secs) + chrono::Duration::milliseconds(ms)
}

fn scheduled_at(store: &Store, ids: &[JobId]) -> Vec<NaiveDateTime> {
    let mut times: Vec<NaiveDateTime> = ids
        .iter()
        .filter_map(|&id| {
            let row = store.job(id).unwrap().unwrap();
            (row.state == Some(JobState::Scheduled)).then(|| row.scheduled_at.unwrap())
        })
        .collect();
    times.sort();
    times
}

backend_test!(
    /// 3 starts per 10 s shared by two stores: the second claim admits only what is left and
    /// defers the rest to the times the window frees (10 s + the 50 ms guard after the starts),
    /// three at a time; the deferred jobs come back then and start.
    fn a_limit_holds_across_stores_and_defers_to_planned_times(db: &TestDb) {
        let store = &db.store;
        let other = db.connect_again();
        let ids = enqueue(store, &(0..10).map(|i| rated(&format!("k{i}"), "k:3/10s")).collect::<Vec<_>>());
        let a = register(store, "a");
        let b = register(&other, "b");
        let first = claim_at(store, a, 2, t(1));
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.rate_limit_key.as_deref() == Some("k")));
        let second = claim_at(&other, b, 5, t(1));
        assert_eq!(second.len(), 1, "only one start is left in the window");
        assert_eq!(totals(store).claimed, 3);
        assert_eq!(totals(store).scheduled, 4, "the other four wait as scheduled");
        assert_eq!(totals(store).ready, 3, "unclaimed jobs stay ready");
        let planned = scheduled_at(store, &ids);
        // Due 100 ms (the hold horizon) before their places free at 11.05 s and 21.1 s.
        assert_eq!(planned, vec![tm(10, 950), tm(10, 950), tm(10, 950), tm(21, 0)]);
        assert_eq!(other.rate_limit_wake(), Some(tm(10, 950)), "the deferring store wakes at the first");
        assert_eq!(store.rate_limit_wake(), None);
        // Nothing more starts inside the window; a claim then defers again, after the planned.
        let third = claim_at(store, a, 1, t(5));
        assert!(third.is_empty());
        assert_eq!(scheduled_at(store, &ids).last(), Some(&tm(21, 0)));
        assert_eq!(totals(store).scheduled, 5);
        // Due, they are claimed before their places free and held for them.
        assert_eq!(other.dispatch_rate_limited(tm(10, 950)).unwrap(), 3);
        assert_eq!(other.rate_limit_wake(), Some(tm(21, 0)), "its wakes up to then are done");
        let later = claim_at(&other, b, 10, tm(10, 960));
        assert_eq!(later.len(), 3, "three are admitted for the places the first starts free");
        assert!(later.iter().all(|c| c.rate_limit_start == Some(tm(11, 50))), "{later:?}");
        assert!(later.iter().all(|c| c.rate_limit_deadline == Some(tm(11, 75))), "{later:?}");
        // Their places are taken: another claim then waits for the next ones.
        assert!(claim_at(store, a, 10, tm(10, 970)).is_empty());
    }
);

backend_test!(
    /// A job held back by its concurrency key takes no start; a job deferred by its rate
    /// limit gives its concurrency key up, so the next blocked job is let in.
    fn rate_and_concurrency_limits_compose(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        let both = |kind: &str| NewJob { concurrency: Some(ConcurrencyLimit::new("c", 1)), ..rated(kind, "r:1/10s") };
        let ids = enqueue(store, &[both("x"), both("y"), both("z")]);
        assert_eq!(totals(store).blocked, 2);
        let first = claim_at(store, p, 3, t(1));
        assert_eq!(first.len(), 1);
        store.complete_claims(&[first[0].token], t(1)).unwrap();
        assert_eq!(totals(store).ready, 1, "the finish let the next one in");
        // Only the one start counts: the blocked jobs took none.
        assert!(claim_at(store, p, 3, t(2)).is_empty());
        assert_eq!(scheduled_at(store, &ids), vec![tm(10, 950)], "due 100 ms before its place");
        assert_eq!(totals(store).ready, 1, "the deferred job gave its concurrency key up");
        assert!(claim_at(store, p, 3, t(2)).is_empty());
        assert_eq!(scheduled_at(store, &ids), vec![tm(10, 950), tm(21, 0)]);
        assert_eq!(totals(store).blocked, 0);
    }
);

backend_test!(
    /// Jobs without a rate limit are claimed as ever beside limited ones.
    fn jobs_without_a_limit_are_unaffected(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "p");
        enqueue(
            store,
            &[job("plain1", "default", 0), rated("l1", "k:1/1m"), rated("l2", "k:1/1m"), job("plain2", "default", 0)],
        );
        let claimed = claim_at(store, p, 4, t(1));
        let mut kinds: Vec<&str> = claimed.iter().map(|c| c.kind.as_str()).collect();
        kinds.sort();
        assert_eq!(kinds, vec!["l1", "plain1", "plain2"]);
        assert!(claimed.iter().filter(|c| c.kind.starts_with("plain")).all(|c| c.rate_limit_key.is_none()));
        assert_eq!(totals(store).scheduled, 1);
        // 1/1m: the guard is 50 ms; due 100 ms (the hold horizon) before the place frees.
        let row = store.list_jobs(&solidq::store::JobFilter::new(JobState::Scheduled)).unwrap().remove(0);
        assert_eq!(row.scheduled_at, Some(tm(60, 950)));
        assert_eq!(row.rate_limit, Some(RateLimit::per_minute("k", 1)));
    }
);

backend_test!(
    /// The start of a process found dead keeps counting; its job, handed back, counts again
    /// when it starts again.
    fn starts_of_a_dead_process_keep_counting(db: &TestDb) {
        let store = &db.store;
        let dead = register(store, "dead");
        let alive = register(store, "alive");
        let ids = enqueue(store, &[rated("a", "k:2/10s"), rated("b", "k:2/10s")]);
        assert_eq!(claim_at(store, dead, 1, t(1)).len(), 1);
        reap_process(store, dead, &DeathCause::Proven("killed".into()), DeathPolicy::Retry, t(2)).unwrap();
        assert_eq!(totals(store).ready, 2);
        let claimed = claim_at(store, alive, 2, t(2));
        assert_eq!(claimed.len(), 1, "the dead process's start still counts");
        assert_eq!(scheduled_at(store, &ids), vec![tm(10, 950)], "due 100 ms before its place");
    }
);

backend_test!(
    /// Invalid limits are refused with the problem named; a stored limit reads back.
    fn invalid_limits_are_refused_and_stored_ones_read_back(db: &TestDb) {
        let store = &db.store;
        for (limit, problem) in [
            (RateLimit::per_second("k", 0), "at least 1 start"),
            (RateLimit::new("k", 5, Duration::ZERO), "at least 1ms"),
            (RateLimit::per_second("", 5), "rate-limit key"),
        ] {
            let err = store.enqueue(&[NewJob { rate_limit: Some(limit), ..job("k", "q", 0) }], t(0)).unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
        }
        assert!(RateLimit::parse("k:5").unwrap_err().to_string().contains("KEY:N/PERIOD"));
        let id = enqueue_one(store, rated("k", "email:100/1m"));
        let row = store.job(id).unwrap().unwrap();
        assert_eq!(row.rate_limit.map(|l| l.to_string()).as_deref(), Some("email:100/1m"));
    }
);

backend_test!(
    /// An admitted claim must start within half the guard of its counted start (a process that
    /// stalls past that hands it back); a start taken back frees its place in the window.
    fn an_admitted_claim_has_a_start_deadline_and_a_start_taken_back_frees_its_place(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        let plain = enqueue(store, &[job("plain", "default", 0)]);
        let ids = enqueue(store, &[rated("a", "k:1/1s"), rated("b", "k:1/1s")]);
        let claims = claim_at(store, p, 10, t(1));
        let by_kind = |kind: &str| claims.iter().find(|c| c.kind == kind).cloned();
        assert_eq!(by_kind("plain").expect("plain job claimed").rate_limit_deadline, None);
        let admitted = by_kind("a").expect("the first rated job is admitted");
        // 1 s period: a guard of 50 ms, half of it to start in.
        assert_eq!(admitted.rate_limit_deadline, Some(tm(1, 25)));
        assert!(by_kind("b").is_none(), "one start per second");
        assert_eq!(scheduled_at(store, &ids[1..]), vec![tm(1, 950)], "due 100 ms before its place");
        assert_eq!(plain.len(), 1);
        // Handed back unstarted: its start is taken back, and the job released.
        store.forget_rate_limit_starts(&[admitted.token.job_id]).unwrap();
        store.record(&[(admitted.token, solidq::lifecycle::Transition::Release)], t(1)).unwrap();
        store.dispatch_due(tm(2, 50), 100).unwrap();
        let again = claim_at(store, p, 10, tm(1, 100));
        assert_eq!(again.len(), 1, "the window has a place again: {again:?}");
    }
);

backend_test!(
    /// What an operator sees of a key: its limit, the starts in its window and its jobs by
    /// state; a key whose jobs all ended stays listed while its starts are logged.
    fn the_usage_of_each_key_shows_its_limit_window_and_jobs(db: &TestDb) {
        let store = &db.store;
        let p = register(store, "w");
        assert!(store.rate_limit_usage(t(0)).unwrap().is_empty());
        let mut jobs: Vec<NewJob> = (0..5).map(|i| rated(&format!("k{i}"), "k:3/10s")).collect();
        jobs.push(rated("o", "other:1/1s"));
        jobs.push(job("plain", "default", 0));
        enqueue(store, &jobs);
        let claimed = claim_at(store, p, 10, t(1));
        assert_eq!(claimed.len(), 5, "3 of k, the other one, the plain one: {claimed:?}");
        let usage = store.rate_limit_usage(t(2)).unwrap();
        assert_eq!(usage.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(), ["k", "other"]);
        let k = &usage[0];
        assert_eq!(k.limit, Some(RateLimit::parse("k:3/10s").unwrap()));
        assert_eq!((k.in_window, k.ready, k.scheduled, k.running), (3, 0, 2, 3), "{k:?}");
        assert_eq!(k.next_due, Some(tm(10, 950)), "{k:?}");
        assert!(k.last_start.is_some());
        let other = &usage[1];
        assert_eq!((other.in_window, other.ready, other.scheduled, other.running), (1, 0, 0, 1), "{other:?}");
        // The other key's job ends: still listed by its start, with the limit its job had.
        let other_claim = claimed.iter().find(|c| c.rate_limit_key.as_deref() == Some("other")).unwrap();
        store.complete_claims(&[other_claim.token], t(2)).unwrap();
        let usage = store.rate_limit_usage(t(2)).unwrap();
        assert_eq!(usage[1].limit, Some(RateLimit::parse("other:1/1s").unwrap()), "{:?}", usage[1]);
        assert_eq!((usage[1].in_window, usage[1].running), (1, 0));
        // Past the window (10 s and its 50 ms guard), k's starts count no more.
        let later = store.rate_limit_usage(tm(11, 100)).unwrap();
        assert_eq!(later[0].in_window, 0, "{:?}", later[0]);
        assert_eq!(later[1].in_window, 0, "{:?}", later[1]);
    }
);
