//! Leadership: the leader lock (one holder at a time, freed when its holder goes), the term
//! that grows at each election, and the fence that makes a deposed leader's writes change
//! nothing. Takeover after a real SIGKILL is in `tests/os_processes.rs`.

use super::*;
use crate::common::{backend_test, TestDb};
use solidq::store::{Lease, StoreError};

backend_test!(
    fn one_process_holds_the_leader_lock_until_it_leaves(db: &TestDb) {
        let store = &db.store;
        let other_store = db.connect_again();
        let a = register(store, "a");
        let b = register(store, "b");
        let c = register(&other_store, "c");
        assert!(store.try_lead(a).unwrap().leads, "a free lock is taken");
        assert!(store.try_lead(a).unwrap().leads, "and kept by its holder");
        assert!(!store.try_lead(b).unwrap().leads, "not by another process of the same store");
        assert!(!other_store.try_lead(c).unwrap().leads, "nor of another store");
        assert!(!store.try_lead(9_999).unwrap().leads, "an unregistered process never leads");
        store.deregister(a, t(1)).unwrap();
        let next: Vec<ProcessId> = [(b, store), (c, &other_store)]
            .into_iter()
            .filter(|(p, s)| s.try_lead(*p).unwrap().leads)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(next.len(), 1, "one successor once the holder left: {next:?}");
        // Resigning frees it too.
        let holder = next[0];
        let holder_store: &Store = if holder == b { store } else { &other_store };
        holder_store.resign(holder);
        let other = if holder == b { (c, &*other_store) } else { (b, &**store) };
        assert!(other.1.try_lead(other.0).unwrap().leads, "taken after a resignation");
    }
);

backend_test!(
    fn candidates_trying_at_once_elect_exactly_one(db: &TestDb) {
        const CANDIDATES: usize = 6;
        let stores: Vec<SharedStore> = (0..CANDIDATES).map(|_| db.connect_again()).collect();
        let processes: Vec<ProcessId> =
            stores.iter().enumerate().map(|(i, store)| register(store, &format!("candidate-{i}"))).collect();
        let barrier = Arc::new(Barrier::new(CANDIDATES));
        let handles: Vec<_> = stores
            .iter()
            .zip(&processes)
            .map(|(store, &process)| {
                let (store, barrier) = (store.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.try_lead(process).unwrap().leads
                })
            })
            .collect();
        let winners = handles.into_iter().map(|h| h.join().unwrap()).filter(|&won| won).count();
        assert_eq!(winners, 1);
    }
);

backend_test!(
    fn each_election_takes_the_next_term_and_names_the_leader(db: &TestDb) {
        let store = &db.store;
        assert_eq!(store.leader().unwrap(), None, "nobody was ever elected");
        let a = register(store, "a");
        let b = register(store, "b");
        let first = store.take_leadership(a, t(10)).unwrap();
        assert_eq!(first, Lease { process: a, term: 1 });
        let named = store.leader().unwrap().unwrap();
        assert_eq!((named.process, named.term, named.elected_at), (a, 1, t(10)));
        let second = store.take_leadership(b, t(20)).unwrap();
        assert_eq!(second, Lease { process: b, term: 2 });
        let named = store.leader().unwrap().unwrap();
        assert_eq!((named.process, named.term, named.elected_at), (b, 2, t(20)));
    }
);

backend_test!(
    fn a_deposed_leaders_sweeps_change_nothing(db: &TestDb) {
        let store = &db.store;
        let old = register(store, "old-leader");
        let new = register(store, "new-leader");
        let victim = register(store, "judged-dead");
        let due = enqueue_one(store, scheduled("due", t(5)));
        let held = enqueue_one(store, job("held", "q", 0));
        assert_eq!(claim(store, victim, &["*"], 1).len(), 1);
        let deposed = store.take_leadership(old, t(1)).unwrap();
        let current = store.take_leadership(new, t(2)).unwrap();

        // The old leader's sweeps, after the election it has not noticed yet.
        let dispatched = store.as_leader(deposed, || store.dispatch_due(t(10), 100));
        assert!(matches!(dispatched, Err(StoreError::Deposed { term: 1 })), "{dispatched:?}");
        let cause = DeathCause::Proven("test".into());
        let reaped =
            store.as_leader(deposed, || store.reap_dead(&[(victim, cause.clone())], DeathPolicy::Retry, t(10)));
        assert!(matches!(reaped, Err(StoreError::Deposed { term: 1 })), "{reaped:?}");
        assert_eq!(state(store, due), "scheduled", "not dispatched");
        assert_eq!(state(store, held), "claimed", "not handed back");
        assert!(store.processes().unwrap().iter().any(|p| p.id == victim), "not reaped");

        // Reads are not fenced, and writes outside `as_leader` are not either.
        assert!(store.as_leader(deposed, || store.processes()).is_ok());
        assert!(store.beat(old, t(11)).is_ok());

        // The current leader's sweeps go through.
        assert_eq!(store.as_leader(current, || store.dispatch_due(t(10), 100)).unwrap(), 1);
        let reaped =
            store.as_leader(current, || store.reap_dead(&[(victim, cause)], DeathPolicy::Retry, t(10))).unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(state(store, due), "ready");
        assert_eq!(state(store, held), "ready");
    }
);

backend_test!(
    fn the_leader_services_run_only_while_elected(db: &TestDb) {
        use solidq::maintenance::election::{Election, ElectionConfig, ElectionOutcome};
        use solidq::maintenance::{Pass, Service};
        use solidq::store::Leadership;
        let store = &db.store;
        let a = register(store, "a");
        let b = register(store, "b");
        let (lead_a, lead_b) = (Leadership::default(), Leadership::default());
        let mut elect_a = Election::new(ElectionConfig::default(), lead_a.clone());
        let mut elect_b = Election::new(ElectionConfig::default(), lead_b.clone());
        let pass = |own| Pass { own: Some(own), now: t(1), clock: Instant::now(), lease: None };
        let won = elect_a.run_once(store, pass(a)).unwrap();
        assert!(matches!(won, ElectionOutcome::Elected(Lease { process, term: 1 }) if process == a), "{won:?}");
        assert!(matches!(elect_b.run_once(store, pass(b)).unwrap(), ElectionOutcome::Candidate));
        assert!(matches!(elect_a.run_once(store, pass(a)).unwrap(), ElectionOutcome::Leading(_)));
        assert!(lead_a.leads() && !lead_b.leads());
        store.deregister(a, t(2)).unwrap();
        let won = elect_b.run_once(store, pass(b)).unwrap();
        assert!(matches!(won, ElectionOutcome::Elected(Lease { process, term: 2 }) if process == b), "{won:?}");
        assert!(lead_b.leads());
        assert_eq!(store.leader().unwrap().unwrap().process, b);
    }
);
