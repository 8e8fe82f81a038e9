//! solidq embedded in an actix-web application: `cargo run --example actix_web`.
//!
//! The web server and the solidq runtime share one actix `System` and one database (SQLite
//! `solidq.sqlite3` unless `SOLIDQ_DATABASE_URL` says otherwise). `POST /signup?email=…`
//! inserts a user and enqueues its welcome mail in the same transaction (see `app.rs`); an
//! async actor sends it. Ctrl-C or TERM stops the HTTP server, then drains the runtime.
//!
//! ```text
//! cargo run --example actix_web
//! curl -i -X POST 'http://127.0.0.1:8080/signup?email=ada@example.com'   # 201
//! curl -i -X POST 'http://127.0.0.1:8080/signup?email=ada@example.com'   # 409, no new job
//! curl -i http://127.0.0.1:8080/jobs/1
//! ```
//!
//! With the `dashboard` feature the app also mounts the solidq dashboard, with this runtime's
//! metrics and health probes, under `/ops/jobs` (`cargo run --features dashboard --example
//! actix_web`, then open http://127.0.0.1:8080/ops/jobs/).
//!
//! `tests/actix_web.rs` runs the same routes against every backend.

mod app;

use actix_web::{web, App, HttpServer};
use solidq::Runtime;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("APP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    // SOLIDQ_* variables, logging, migrations.
    let runtime = Runtime::from_env()?.register::<app::WelcomeEmail, _, _>(|| app::Mailer);
    let db = app::AppDb::open(&runtime.config().database_url)?;
    let store = runtime.store();
    let state = web::Data::new(app::AppState { db, store: store.clone() });
    let handle = runtime.start()?;
    #[cfg(feature = "dashboard")]
    let ops = solidq::dashboard::DashboardOptions::from_lookup(|name| std::env::var(name).ok())?.runtime(&handle);
    let server = HttpServer::new(move || {
        let app = App::new().app_data(state.clone()).configure(app::routes);
        // The dashboard, its /metrics and /health/* under a prefix of the app's choosing.
        #[cfg(feature = "dashboard")]
        let app = app.service(solidq::dashboard::scope("/ops/jobs", store.clone(), ops.clone()));
        #[cfg(not(feature = "dashboard"))]
        let _ = &store;
        app
    })
    // On a signal actix-web would stop the whole System, solidq's actors with it, before
    // they could drain: stop the server ourselves, then shut the runtime down.
    .disable_signals()
    .bind(&addr)?
    .run();
    println!("listening on http://{addr}");

    let http = server.handle();
    actix_rt::spawn(async move {
        stop_signal().await;
        http.stop(true).await;
    });
    server.await?;
    println!("HTTP stopped; draining jobs: {:?}", handle.shutdown().await);
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    futures_util::future::select(Box::pin(int.recv()), Box::pin(term.recv())).await;
}
