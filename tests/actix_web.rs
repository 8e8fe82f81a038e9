//! The actix-web example's routes (`examples/actix_web/app.rs`, included as is) on every backend:
//! a signup enqueues its welcome mail in the same transaction, the runtime embedded in the same
//! System runs it, a duplicate signup answers 409 and enqueues nothing, and the runtime drains.

#[allow(dead_code)]
#[path = "../examples/actix_web/app.rs"]
mod app;
mod common;

use std::time::Duration;

use actix_web::{test, web, App};
use common::fixtures::logger;
use common::{backend_test, wait_for, TestDb};
use solidq::config::Config;
use solidq::Runtime;

fn total_jobs(db: &TestDb) -> i64 {
    let (counts, _) = db.store.counts().unwrap();
    counts.ready + counts.scheduled + counts.claimed + counts.failed + counts.finished
}

backend_test!(
    async fn signup_enqueues_in_its_own_transaction_and_the_embedded_runtime_runs_the_job(db: TestDb) {
        let config = Config {
            database_url: db.url.clone(),
            polling_interval: Duration::from_millis(20),
            heartbeat_interval: Duration::from_millis(200),
            ..Config::default()
        };
        let runtime = Runtime::with_store(config, db.store.clone(), logger())
            .unwrap()
            .register::<app::WelcomeEmail, _, _>(|| app::Mailer);
        let state = web::Data::new(app::AppState { db: app::AppDb::open(&db.url).unwrap(), store: runtime.store() });
        let service = test::init_service(App::new().app_data(state).configure(app::routes)).await;
        let handle = runtime.start().unwrap();

        let signup = || test::TestRequest::post().uri("/signup?email=ada@example.com").to_request();
        let created = test::call_service(&service, signup()).await;
        assert_eq!(created.status(), 201);
        let body: serde_json::Value = test::read_body_json(created).await;
        let job_id = body["job_id"].as_i64().expect("a job id");
        wait_for("the welcome mail", Duration::from_secs(20), || db.state(job_id) == "finished").await;

        let status =
            test::call_service(&service, test::TestRequest::get().uri(&format!("/jobs/{job_id}")).to_request()).await;
        assert_eq!(status.status(), 200);
        let job: serde_json::Value = test::read_body_json(status).await;
        assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("app.welcome_email"), Some("finished")));

        let before = total_jobs(&db);
        let duplicate = test::call_service(&service, signup()).await;
        assert_eq!(duplicate.status(), 409);
        assert_eq!(total_jobs(&db), before, "the rolled-back signup enqueued nothing");
        let bad =
            test::call_service(&service, test::TestRequest::post().uri("/signup?email=nobody").to_request()).await;
        assert_eq!(bad.status(), 400);

        let report = handle.shutdown().await;
        assert!(report.deregistered, "{report:?}");
    }
);

backend_test!(
    /// The application's own writes share the database with the runtime's workers: 300 signups
    /// from 12 threads at once, each in its own transaction with its job, while the runtime claims
    /// and completes the welcome mails. On SQLite, connections without a busy timeout and
    /// immediate transactions failed about half of them with `database is locked`.
    async fn concurrent_signups_on_the_app_pool_never_fail_while_workers_write(db: TestDb) {
        let config =
            Config { database_url: db.url.clone(), polling_interval: Duration::from_millis(5), ..Config::default() };
        let runtime = Runtime::with_store(config, db.store.clone(), logger())
            .unwrap()
            .register::<app::WelcomeEmail, _, _>(|| app::Mailer);
        let state = web::Data::new(app::AppState { db: app::AppDb::open(&db.url).unwrap(), store: runtime.store() });
        let service = test::init_service(App::new().app_data(state).configure(app::routes)).await;
        let handle = runtime.start().unwrap();
        let requests = (0..300).map(|n| {
            let request = test::TestRequest::post().uri(&format!("/signup?email=user{n}@example.com")).to_request();
            test::call_service(&service, request)
        });
        let statuses: Vec<u16> =
            futures_util::future::join_all(requests).await.iter().map(|r| r.status().as_u16()).collect();
        let failed = statuses.iter().filter(|status| **status != 201).count();
        assert_eq!(
            failed,
            0,
            "{failed} of 300 signups failed: {:?}",
            statuses.iter().filter(|s| **s != 201).collect::<Vec<_>>()
        );
        wait_for("every welcome mail", Duration::from_secs(60), || db.store.counts().unwrap().0.finished == 300).await;
        handle.shutdown().await;
    }
);

/// The SQLite file deleted under a running application (with its -wal and -shm): the app's
/// transactional signups are refused with an error naming the path, before anything is
/// reported committed. Before, they answered 201 and the users and their jobs went into the
/// unlinked file, gone at exit. A connection checked out before the deletion refuses too,
/// whichever way it commits: `write_transaction`, diesel's `transaction`, or autocommit.
#[actix_rt::test]
async fn sqlite_file_deleted_under_the_app_refuses_its_writes_before_commit() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    use solidq::store::connection::{app_pool, write_transaction};
    use solidq::{EnqueueOptions, Queue, StoreError};

    let db = TestDb::sqlite();
    let solidq::DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    let path_text = path.display().to_string();
    let state = web::Data::new(app::AppState { db: app::AppDb::open(&db.url).unwrap(), store: db.store.clone() });
    let service = test::init_service(App::new().app_data(state).configure(app::routes)).await;
    let signup = |n: u32| test::TestRequest::post().uri(&format!("/signup?email=u{n}@example.com")).to_request();
    assert_eq!(test::call_service(&service, signup(1)).await.status(), 201);
    let pool = app_pool(&db.url, 1).unwrap();
    let mut held = pool.get().unwrap();
    held.batch_execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)").unwrap();

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path_text}{suffix}"));
    }

    let refused = test::call_service(&service, signup(2)).await;
    assert_eq!(refused.status(), 500);
    let body: serde_json::Value = test::read_body_json(refused).await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(&path_text) && error.contains("was deleted"), "{body}");

    let in_app_transaction = write_transaction(&mut held, |conn| {
        diesel::sql_query("INSERT INTO notes VALUES ('signup 3')").execute(conn)?;
        let welcome = app::WelcomeEmail { user_id: 3, email: "u3@example.com".into() };
        Queue::enqueue_in(conn, &welcome, EnqueueOptions::new())
    });
    let error = in_app_transaction.expect_err("the enqueue in the app's transaction is refused").to_string();
    assert!(error.contains(&path_text) && error.contains("was deleted"), "{error}");
    let plain = write_transaction(&mut held, |conn| diesel::sql_query("INSERT INTO notes VALUES ('x')").execute(conn));
    let error = plain.expect_err("write_transaction refuses before COMMIT").to_string();
    assert!(error.contains(&path_text), "{error}");
    let diesel_transaction = held.transaction(|conn| diesel::sql_query("INSERT INTO notes VALUES ('y')").execute(conn));
    assert!(diesel_transaction.is_err(), "diesel's own COMMIT is refused");
    assert!(diesel::sql_query("INSERT INTO notes VALUES ('z')").execute(&mut *held).is_err(), "autocommit refused");
    drop(held);

    let started = std::time::Instant::now();
    let refused = pool.get().err().expect("no connection is handed out on a deleted file");
    assert!(matches!(&refused, StoreError::DatabaseGone(reason) if reason.contains(&path_text)), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after the pool's timeout");
    assert!(!path.exists(), "nothing created an empty database in its place");
}
