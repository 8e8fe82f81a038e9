//! The web dashboard on every backend, through actix-web's test service: every route answers
//! with its content on seeded data, under the root and under a prefix; the token (bearer and
//! login cookie), read-only mode, CSRF and cross-site refusals; user data always escaped; a
//! bulk action never touches a job that arrived after the page was drawn; actions are audited.
//! And the CLI: a non-loopback bind without a token, and malformed variables, exit 2.

mod common;
mod dashboard_seed;

use actix_web::body::MessageBody;
use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::{test, App};
use common::log::LogRecorder;
use common::{backend_test, TestDb};
use dashboard_seed::{fail_jobs, seed, EVIL_KIND};
use solidq::dashboard::{self, DashboardOptions, ProbeAnswer};

type Response = ServiceResponse<actix_web::body::BoxBody>;

async fn body_of(res: Response) -> String {
    let bytes = res.into_body().try_into_bytes().unwrap_or_default();
    String::from_utf8(bytes.to_vec()).expect("utf-8 page")
}

/// GET `uri` from the test service: its status and body.
macro_rules! get {
    ($app:expr, $uri:expr) => {{
        let res = test::call_service($app, test::TestRequest::get().uri($uri).to_request()).await;
        let status = res.status();
        (status, body_of(res).await)
    }};
}

/// The CSRF cookie a first page view sets.
fn csrf_cookie(res: &Response) -> Cookie<'static> {
    res.response().cookies().find(|c| c.name() == "solidq_csrf").expect("the page sets a CSRF cookie").into_owned()
}

/// A same-origin form POST with the session's CSRF cookie and `fields` (already encoded).
fn post(uri: &str, csrf: &Cookie<'static>, fields: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header(("Host", "localhost:9292"))
        .insert_header(("Origin", "http://localhost:9292"))
        .insert_header(("Sec-Fetch-Site", "same-origin"))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .peer_addr("127.0.0.1:50000".parse().unwrap())
        .cookie(csrf.clone())
        .set_payload(fields.to_string())
}

fn options() -> DashboardOptions {
    DashboardOptions::new()
        .logger(common::fixtures::logger())
        .live(|| ProbeAnswer { ok: true, reason: "ticking".into() })
        .ready(|| ProbeAnswer { ok: false, reason: "database is away".into() })
        .metrics(|| "solidq_up 1\n".into())
}

backend_test!(
    async fn every_route_answers_with_its_content(db: TestDb) {
        let seeded = seed(&db.store);
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        let failed = seeded.failed[0];
        let pages: Vec<(String, Vec<&str>)> = vec![
            ("/".into(), vec!["Overview", "ready", "1 alive", "mail", "<svg", "2</span>", "Leader: <b>process "]),
            ("/queues".into(), vec!["mail", "reports", "Pause", "Latency"]),
            ("/processes".into(), vec!["runtime-test-1", "testhost", "alive", "4242", ">leader</span>"]),
            ("/jobs?state=failed".into(), vec!["mail.send", "smtp refused", "Retry selected", "Retry all"]),
            ("/jobs?state=ready&queue=mail".into(), vec!["mail.&lt;script&gt;kind&lt;/script&gt;"]),
            ("/jobs?state=scheduled".into(), vec!["report.daily"]),
            (
                format!("/jobs/{failed}"),
                vec!["Retry", "Discard", "smtp refused", "src/mail.rs:10:5", "Timeline", "attempt 1", "failed"],
            ),
            ("/failed".into(), vec!["mail.send", "Retry group", ">2<"]),
            ("/stuck".into(), vec!["No stuck jobs"]),
            ("/concurrency".into(), vec!["Concurrency keys", "Rate limits", "Unique keys held"]),
            ("/recurring".into(), vec!["No recurring tasks"]),
        ];
        for (uri, expected) in pages {
            let (status, body) = get!(&app, &uri);
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            for text in expected {
                assert!(body.contains(text), "{uri} lacks {text:?}:\n{body}");
            }
        }
        assert_eq!(get!(&app, "/metrics"), (StatusCode::OK, "solidq_up 1\n".into()));
        assert_eq!(get!(&app, "/health/live"), (StatusCode::OK, "ticking\n".into()));
        assert_eq!(get!(&app, "/health/ready"), (StatusCode::SERVICE_UNAVAILABLE, "database is away\n".into()));
        let (status, css) = get!(&app, "/assets/dashboard.css");
        assert_eq!(status, StatusCode::OK);
        assert!(css.contains("--alive"));
        // The fragment a page polls: the live part without the layout.
        let (_, fragment) = get!(&app, "/queues?fragment=1");
        assert!(fragment.contains("reports") && !fragment.contains("<html"), "{fragment}");
        // Mistakes answer with pages that say what is wrong.
        let (status, body) = get!(&app, "/jobs/999999");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("job 999999 does not exist"), "{body}");
        let (status, body) = get!(&app, "/jobs?state=lost");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("state &quot;lost&quot; does not exist"), "{body}");
    }

    async fn the_batches_pages_show_counts_callbacks_and_members(db: TestDb) {
        use solidq::model::QueuePattern;
        use solidq::store::composition::NewBatch;
        let seeded = seed(&db.store);
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        let (status, body) = get!(&app, "/batches");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("No batches"), "{body}");
        let batch = NewBatch {
            description: Some("album <script>alert('batch')</script>".into()),
            on_finish: Some(dashboard_seed::job("album.ready", "media", serde_json::json!({ "album": 3 }))),
            ..NewBatch::default()
        };
        let members: Vec<_> =
            (0..2).map(|n| dashboard_seed::job("photo.resize", "photos", serde_json::json!({ "photo": n }))).collect();
        let (id, jobs) = db.store.enqueue_batch(&batch, &members, dashboard_seed::now()).expect("enqueue a batch");
        let finish = |n: usize| {
            let claimed = db
                .store
                .claim(
                    seeded.process,
                    &[QueuePattern::parse("photos")],
                    &["photo.resize".into()],
                    n,
                    dashboard_seed::now(),
                )
                .expect("claim");
            assert_eq!(claimed.len(), n);
            let tokens: Vec<_> = claimed.iter().map(|c| c.token).collect();
            db.store.complete_claims(&tokens, dashboard_seed::now()).expect("complete");
        };
        finish(1);
        let (status, body) = get!(&app, "/batches");
        assert_eq!(status, StatusCode::OK, "{body}");
        for text in [&format!("/batches/{id}\""), "open", "on finish: album.ready", "(not yet)", "&lt;script&gt;"] {
            assert!(body.contains(text), "/batches lacks {text:?}:\n{body}");
        }
        assert!(!body.contains("<script>alert"), "{body}");
        let (_, open) = get!(&app, "/batches?open=1");
        assert!(open.contains(&format!("/batches/{id}\"")), "{open}");
        let (status, page) = get!(&app, &format!("/batches/{id}"));
        assert_eq!(status, StatusCode::OK, "{page}");
        let (done, pending) = (jobs[0].id().min(jobs[1].id()), jobs[0].id().max(jobs[1].id()));
        for text in
            [&format!("/jobs/{done}\""), &format!("/jobs/{pending}\""), "photo.resize", "state-finished", "state-ready"]
        {
            assert!(page.contains(text), "the batch page lacks {text:?}:\n{page}");
        }
        let (_, job_page) = get!(&app, &format!("/jobs/{done}"));
        assert!(job_page.contains(&format!("/batches/{id}\"")), "a member's page links its batch:\n{job_page}");

        finish(1);
        let (_, open) = get!(&app, "/batches?open=1");
        assert!(open.contains("No batch is open"), "{open}");
        let info = db.store.batch(id).expect("read").expect("the batch");
        let callback = info.callbacks[0].job.expect("the finish callback was enqueued");
        let (_, page) = get!(&app, &format!("/batches/{id}"));
        for text in ["succeeded", &format!("/jobs/{callback}\"")] {
            assert!(page.contains(text), "the ended batch's page lacks {text:?}:\n{page}");
        }
        let (status, body) = get!(&app, "/batches/999999");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("batch 999999 does not exist"), "{body}");
        let (status, _) = get!(&app, "/batches/seven");
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    async fn the_limits_page_shows_each_rate_limit_key_with_its_window_and_jobs(db: TestDb) {
        use solidq::model::{QueuePattern, RateLimit};
        let seeded = seed(&db.store);
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        let (_, body) = get!(&app, "/concurrency");
        assert!(body.contains("No job has a rate limit"), "{body}");
        let limited: Vec<_> = (0..4)
            .map(|n| solidq::model::NewJob {
                rate_limit: Some(RateLimit::parse("api:<b>x</b>:2/1h").unwrap()),
                ..dashboard_seed::job("api.call", "api", serde_json::json!({ "n": n }))
            })
            .collect();
        db.store.enqueue(&limited, dashboard_seed::now()).expect("enqueue");
        let claimed = db
            .store
            .claim(seeded.process, &[QueuePattern::parse("api")], &["api.call".into()], 4, dashboard_seed::now())
            .expect("claim");
        assert_eq!(claimed.len(), 2, "two starts an hour");
        let (status, body) = get!(&app, "/concurrency");
        assert_eq!(status, StatusCode::OK, "{body}");
        let row = body.split("<h2>Rate limits</h2>").nth(1).and_then(|rest| rest.split("</tr>").nth(1)).expect("a row");
        for text in ["api:&lt;b&gt;x&lt;/b&gt;", "2 per 1h", r#"<tr class="late">"#, ">2</a>", "UTC"] {
            assert!(row.contains(text), "the rate-limit row lacks {text:?}:\n{row}");
        }
        assert!(!body.contains("<b>x</b>"), "{body}");
    }

    async fn unconfigured_probes_and_metrics_answer_501(db: TestDb) {
        let app =
            test::init_service(App::new().service(dashboard::scope("", db.store.clone(), DashboardOptions::new())))
                .await;
        for uri in ["/metrics", "/health/live", "/health/ready"] {
            let (status, body) = get!(&app, uri);
            assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{uri}");
            assert!(body.contains("not configured"), "{body}");
        }
    }

    async fn links_stay_under_the_mount_prefix(db: TestDb) {
        seed(&db.store);
        let app =
            test::init_service(App::new().service(dashboard::scope("/admin/jobs/", db.store.clone(), options()))).await;
        let (status, body) = get!(&app, "/admin/jobs");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(r#"href="/admin/jobs/queues""#), "{body}");
        assert!(body.contains(r#"href="/admin/jobs/assets/dashboard.css""#), "{body}");
        assert!(!body.contains(r#"href="/queues""#), "{body}");
        let (status, _) = get!(&app, "/admin/jobs/failed");
        assert_eq!(status, StatusCode::OK);
        let (status, _) = get!(&app, "/failed");
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    async fn user_data_is_escaped_everywhere(db: TestDb) {
        let seeded = seed(&db.store);
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        for uri in [
            format!("/jobs/{}", seeded.ready),
            format!("/jobs/{}", seeded.failed[0]),
            "/jobs?state=ready".into(),
            "/jobs?state=failed".into(),
            "/failed".into(),
            format!("/jobs?state=ready&kind={}", "%3Cscript%3E"),
        ] {
            let (_, body) = get!(&app, &uri);
            assert!(!body.contains("<script>"), "{uri} shows raw markup:\n{body}");
        }
        let (_, job) = get!(&app, &format!("/jobs/{}", seeded.ready));
        assert!(job.contains("mail.&lt;script&gt;kind&lt;/script&gt;"), "{job}");
        assert!(job.contains("&lt;script&gt;alert(&#39;args&#39;)&lt;/script&gt;"), "{job}");
        let (_, failed) = get!(&app, &format!("/jobs/{}", seeded.failed[0]));
        assert!(failed.contains("&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt; smtp refused"), "{failed}");
        assert_eq!(db.store.job(seeded.ready).unwrap().unwrap().kind, EVIL_KIND);
    }

    async fn security_headers_on_every_answer(db: TestDb) {
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        for uri in ["/", "/jobs/1", "/assets/dashboard.js"] {
            let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            let csp = res.headers().get("content-security-policy").expect("CSP").to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(res.headers().get("x-frame-options").unwrap(), "DENY");
            assert_eq!(res.headers().get("x-content-type-options").unwrap(), "nosniff");
        }
        let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
        let cookie = csrf_cookie(&res);
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(actix_web::cookie::SameSite::Strict));
        let body = body_of(res).await;
        assert!(!body.contains("<script>"), "no inline script: {body}");
    }

    async fn a_token_is_needed_by_bearer_or_login_cookie(db: TestDb) {
        let app = test::init_service(App::new().service(dashboard::scope(
            "",
            db.store.clone(),
            options().token("s3cret-token-for-tests"),
        )))
        .await;
        // No token: a browser is sent to the login form, anything else gets 401.
        let res = test::call_service(
            &app,
            test::TestRequest::get().uri("/queues").insert_header(("Accept", "text/html")).to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers().get("location").unwrap(), "/login");
        for uri in ["/queues", "/metrics", "/health/ready", "/jobs/1"] {
            let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri}");
        }
        let wrong =
            test::TestRequest::get().uri("/queues").insert_header(("Authorization", "Bearer s3cret-token-for-test"));
        assert_eq!(test::call_service(&app, wrong.to_request()).await.status(), StatusCode::UNAUTHORIZED);
        let right =
            test::TestRequest::get().uri("/queues").insert_header(("Authorization", "Bearer s3cret-token-for-tests"));
        assert_eq!(test::call_service(&app, right.to_request()).await.status(), StatusCode::OK);

        // The login form: a wrong token is refused, the right one sets an HttpOnly SameSite cookie.
        let form = test::call_service(&app, test::TestRequest::get().uri("/login").to_request()).await;
        assert_eq!(form.status(), StatusCode::OK);
        let csrf = csrf_cookie(&form);
        let fields = |token: &str| format!("csrf={}&token={token}", csrf.value());
        let refused = test::call_service(&app, post("/login", &csrf, &fields("guess")).to_request()).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.response().cookies().all(|c| c.name() != "solidq_session"));
        let logged_in =
            test::call_service(&app, post("/login", &csrf, &fields("s3cret-token-for-tests")).to_request()).await;
        assert_eq!(logged_in.status(), StatusCode::SEE_OTHER);
        let session =
            logged_in.response().cookies().find(|c| c.name() == "solidq_session").expect("session cookie").into_owned();
        assert_eq!(session.http_only(), Some(true));
        assert_eq!(session.same_site(), Some(actix_web::cookie::SameSite::Strict));
        let with_cookie = test::TestRequest::get().uri("/queues").cookie(session.clone());
        assert_eq!(test::call_service(&app, with_cookie.to_request()).await.status(), StatusCode::OK);
        let forged = test::TestRequest::get().uri("/queues").cookie(Cookie::new("solidq_session", "s3cret"));
        assert_eq!(test::call_service(&app, forged.to_request()).await.status(), StatusCode::UNAUTHORIZED);
        // A POST with the cookie still needs the CSRF token.
        let pause = post("/queues/pause", &csrf, "queue=mail").cookie(session);
        assert_eq!(test::call_service(&app, pause.to_request()).await.status(), StatusCode::FORBIDDEN);
        assert!(!db.store.queues(dashboard_seed::now()).unwrap().iter().any(|q| q.paused));
    }

    async fn read_only_shows_no_buttons_and_refuses_every_post(db: TestDb) {
        let seeded = seed(&db.store);
        let app =
            test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options().read_only(true))))
                .await;
        let first = test::call_service(&app, test::TestRequest::get().uri("/queues").to_request()).await;
        let csrf = csrf_cookie(&first);
        let body = body_of(first).await;
        assert!(body.contains("read-only"), "{body}");
        for uri in [
            "/queues".to_string(),
            "/failed".into(),
            "/jobs?state=failed".into(),
            format!("/jobs/{}", seeded.failed[0]),
        ] {
            let (_, body) = get!(&app, &uri);
            assert!(!body.contains(r#"method="post""#), "{uri} shows an action:\n{body}");
        }
        let token = format!("csrf={}", csrf.value());
        for (uri, fields) in [
            ("/queues/pause", format!("{token}&queue=mail")),
            (&format!("/jobs/{}/retry", seeded.failed[0]) as &str, token.clone()),
            ("/jobs/bulk", format!("{token}&action=retry-all&state=failed&upper_id=999&confirm=yes")),
        ] {
            let res = test::call_service(&app, post(uri, &csrf, &fields).to_request()).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri}");
        }
        assert_eq!(db.state(seeded.failed[0]), "failed");
        assert!(!db.store.queues(dashboard_seed::now()).unwrap().iter().any(|q| q.paused));
    }

    async fn posts_without_the_csrf_token_or_from_another_site_are_refused(db: TestDb) {
        let seeded = seed(&db.store);
        let recorder = LogRecorder::new();
        let app = test::init_service(App::new().service(dashboard::scope(
            "",
            db.store.clone(),
            options().logger(recorder.logger()),
        )))
        .await;
        let first = test::call_service(&app, test::TestRequest::get().uri("/queues").to_request()).await;
        let csrf = csrf_cookie(&first);
        let good = format!("csrf={}&queue=mail", csrf.value());
        let refusals = [
            post("/queues/pause", &csrf, "queue=mail"),
            post("/queues/pause", &csrf, "csrf=0123456789abcdef0123456789abcdef&queue=mail"),
            post("/queues/pause", &csrf, &good).insert_header(("Origin", "https://evil.example")),
            post("/queues/pause", &csrf, &good).insert_header(("Sec-Fetch-Site", "cross-site")),
            // The field without its cookie.
            test::TestRequest::post()
                .uri("/queues/pause")
                .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
                .set_payload(good.clone()),
        ];
        for request in refusals {
            let res = test::call_service(&app, request.to_request()).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
        }
        assert!(!db.store.queues(dashboard_seed::now()).unwrap().iter().any(|q| q.paused), "nothing paused");
        let paused = test::call_service(&app, post("/queues/pause", &csrf, &good).to_request()).await;
        assert_eq!(paused.status(), StatusCode::SEE_OTHER);
        assert!(db.store.queues(dashboard_seed::now()).unwrap().iter().any(|q| q.name == "mail" && q.paused));
        // One job, by its page's button.
        let retry = post(&format!("/jobs/{}/retry", seeded.failed[0]), &csrf, &format!("csrf={}", csrf.value()));
        assert_eq!(test::call_service(&app, retry.to_request()).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(db.state(seeded.failed[0]), "ready");
        // Audit lines: what, which, from where.
        assert_eq!(recorder.count("action=pause queue"), 1);
        assert_eq!(recorder.count("changed=queue \"mail\""), 1);
        assert_eq!(recorder.count("action=retry"), 1);
        assert_eq!(recorder.count(&format!("changed=job {}", seeded.failed[0])), 1);
        assert_eq!(recorder.count("remote=127.0.0.1:50000"), 2);
    }

    async fn a_bulk_action_never_touches_a_job_that_arrived_after_the_page(db: TestDb) {
        let seeded = seed(&db.store);
        let recorder = LogRecorder::new();
        let app = test::init_service(App::new().service(dashboard::scope(
            "",
            db.store.clone(),
            options().logger(recorder.logger()),
        )))
        .await;
        let page = test::call_service(&app, test::TestRequest::get().uri("/jobs?state=failed").to_request()).await;
        let csrf = csrf_cookie(&page);
        let body = body_of(page).await;
        let upper = *seeded.failed.last().unwrap();
        assert!(body.contains(&format!(r#"name="upper_id" value="{upper}""#)), "{body}");
        // A job fails after the page was drawn.
        let late = fail_jobs(&db.store, seeded.process, "mail.send", "mail", "later", 1)[0];
        let fields = format!("csrf={}&state=failed&upper_id={upper}&action=retry-all", csrf.value());
        let confirm = test::call_service(&app, post("/jobs/bulk", &csrf, &fields).to_request()).await;
        assert_eq!(confirm.status(), StatusCode::OK);
        let confirm = body_of(confirm).await;
        assert!(confirm.contains("This will <b>retry</b> <b>2</b> jobs"), "{confirm}");
        assert!(confirm.contains(r#"name="confirm" value="yes""#), "{confirm}");
        assert_eq!(db.state(seeded.failed[0]), "failed", "the confirmation changes nothing");
        let done =
            test::call_service(&app, post("/jobs/bulk", &csrf, &format!("{fields}&confirm=yes")).to_request()).await;
        let done = body_of(done).await;
        assert!(done.contains("2 jobs retried"), "{done}");
        for id in &seeded.failed {
            assert_eq!(db.state(*id), "ready");
        }
        assert_eq!(db.state(late), "failed", "the job that arrived later is untouched");
        assert_eq!(recorder.count("action=bulk retry"), 1);
        // Ticked ids: only those, and never above the page's upper id.
        let fields =
            format!("csrf={}&state=failed&upper_id={upper}&action=discard&id={late}&confirm=yes", csrf.value());
        let res = test::call_service(&app, post("/jobs/bulk", &csrf, &fields).to_request()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(db.state(late), "failed");
    }

    async fn a_failure_group_is_discarded_up_to_its_upper_id(db: TestDb) {
        let seeded = seed(&db.store);
        let other = fail_jobs(&db.store, seeded.process, "billing.charge", "billing", "card declined", 1)[0];
        let app = test::init_service(App::new().service(dashboard::scope("", db.store.clone(), options()))).await;
        let page = test::call_service(&app, test::TestRequest::get().uri("/failed").to_request()).await;
        let csrf = csrf_cookie(&page);
        let body = body_of(page).await;
        assert!(body.contains("card declined") && body.contains("billing.charge"), "{body}");
        assert!(body.contains(r#"name="count" value="2""#), "{body}");
        // A job of the group fails after the page was drawn.
        let late = fail_jobs(&db.store, seeded.process, "mail.send", "mail", dashboard_seed::EVIL_MESSAGE, 1)[0];
        let message = "%3Cscript%3Ealert%28%27error%27%29%3C%2Fscript%3E+smtp+refused";
        let fields = format!(
            "csrf={}&action=discard&kind=mail.send&error_kind=Error&message={message}&upper_id={}&count=2",
            csrf.value(),
            seeded.failed[1]
        );
        let confirm = body_of(test::call_service(&app, post("/failed/group", &csrf, &fields).to_request()).await).await;
        assert!(confirm.contains("This will <b>discard</b> <b>2</b> jobs"), "{confirm}");
        assert_eq!(db.state(seeded.failed[0]), "failed", "the confirmation changes nothing");
        let done =
            test::call_service(&app, post("/failed/group", &csrf, &format!("{fields}&confirm=yes")).to_request()).await;
        let done = body_of(done).await;
        assert!(done.contains("2 jobs discarded"), "{done}");
        assert_eq!(db.state(late), "failed", "a later failure of the group is untouched");
        assert_eq!(db.state(seeded.failed[0]), "discarded");
        assert_eq!(db.state(other), "failed");
    }

    async fn mounted_with_a_runtime_it_serves_that_process_metrics_and_probes(db: TestDb) {
        let config = common::fixtures::fast_config(&db, 2);
        let runtime = solidq::Runtime::with_store(config, db.connect_again(), common::fixtures::logger())
            .expect("runtime")
            .register_async::<Ping, _, _>(|_, _| async { Ok(()) });
        let queue = runtime.queue();
        let handle = runtime.start().expect("start");
        let options = DashboardOptions::new().logger(common::fixtures::logger()).runtime(&handle);
        let app = test::init_service(App::new().service(dashboard::scope("/ops", db.store.clone(), options))).await;
        common::wait_for("registered", std::time::Duration::from_secs(10), || handle.metrics().process().is_some())
            .await;
        queue.enqueue(Ping).await.expect("enqueue");
        common::wait_for("the job ran", std::time::Duration::from_secs(10), || {
            handle
                .metrics_text()
                .contains(r#"solidq_jobs_executed_total{queue="default",kind="test.ping",outcome="finished"} 1"#)
        })
        .await;
        let (status, metrics) = get!(&app, "/ops/metrics");
        assert_eq!(status, StatusCode::OK);
        // The process's own series, not only the database gauges.
        assert!(metrics.contains(r#"solidq_jobs_enqueued_total{queue="default",kind="test.ping"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"outcome="finished"} 1"#), "{metrics}");
        assert!(metrics.contains("solidq_processes{state=\"alive\"} 1"), "{metrics}");
        assert_eq!(get!(&app, "/ops/health/live").0, StatusCode::OK);
        let (status, ready) = get!(&app, "/ops/health/ready");
        assert_eq!(status, StatusCode::OK, "{ready}");
        let (_, processes) = get!(&app, "/ops/processes");
        assert!(processes.contains("alive"), "{processes}");
        handle.shutdown().await;
        let (status, ready) = get!(&app, "/ops/health/ready");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "after shutdown: {ready}");
    }
);

#[derive(serde::Serialize, serde::Deserialize)]
struct Ping;

impl solidq::Job for Ping {
    const KIND: &'static str = "test.ping";
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut argv = vec!["solidq"];
    argv.extend_from_slice(args);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = solidq::cli::run_with(
        argv,
        |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        &mut out,
        &mut err,
    );
    (code, String::from_utf8(err).unwrap())
}

#[core::prelude::v1::test]
fn a_non_loopback_bind_without_a_token_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("none.sqlite3").display());
    for bind in ["0.0.0.0:0", "192.0.2.1:9292", "[::]:0"] {
        let (code, err) = run_cli(&["dashboard", "--bind", bind], &[("SOLIDQ_DATABASE_URL", &url)]);
        assert_eq!(code, 2, "{bind}: {err}");
        assert!(err.contains("SOLIDQ_DASHBOARD_TOKEN"), "{err}");
    }
    // Refused before the database is touched: no file was created.
    assert!(!dir.path().join("none.sqlite3").exists());
}

#[core::prelude::v1::test]
fn malformed_dashboard_variables_exit_2_naming_them() {
    let (code, err) = run_cli(&["dashboard"], &[("SOLIDQ_DASHBOARD_READ_ONLY", "maybe")]);
    assert_eq!(code, 2);
    assert!(err.contains(r#"SOLIDQ_DASHBOARD_READ_ONLY="maybe" is not a boolean"#), "{err}");
    let (code, err) = run_cli(&["dashboard"], &[("SOLIDQ_DASHBOARD_TOKEN", " ")]);
    assert_eq!(code, 2);
    assert!(err.contains("SOLIDQ_DASHBOARD_TOKEN"), "{err}");
    let (code, err) = run_cli(&["dashboard", "--bind", "not an address"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--bind"), "{err}");
}

#[core::prelude::v1::test]
fn a_missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("absent.sqlite3").display());
    let (code, err) = run_cli(&["dashboard", "--bind", "127.0.0.1:0"], &[("SOLIDQ_DATABASE_URL", &url)]);
    assert_eq!(code, 1);
    assert!(err.contains("there is no database"), "{err}");
}

/// `solidq dashboard` as an operator starts it: over the database in SOLIDQ_DATABASE_URL, on the
/// address it prints, with the pages, metrics and probes.
#[core::prelude::v1::test]
fn the_command_serves_the_database_it_is_given() {
    use std::io::{BufRead, BufReader, Read, Write};
    let db = TestDb::sqlite();
    seed(&db.store);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_solidq"))
        .args(["dashboard", "--bind", "127.0.0.1:0"])
        .env("SOLIDQ_DATABASE_URL", db.url_text())
        .env("SOLIDQ_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting solidq dashboard");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let fetch = |path: &str| {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let overview = fetch("/");
    let metrics = fetch("/metrics");
    let ready = fetch("/health/ready");
    let _ = child.kill();
    let _ = child.wait();
    assert!(overview.starts_with("HTTP/1.0 200") && overview.contains("1 alive"), "{overview}");
    assert!(metrics.contains("solidq_queue_jobs{queue=\"mail\",state=\"ready\"} 1"), "{metrics}");
    assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");
}
