//! solidq embedded in an actix-web application: `cargo run --example actix_web`.
//!
//! The web server and the solidq runtime share one actix `System`. The application keeps its
//! own r2d2 pool to the same database solidq uses (SQLite `solidq.sqlite3` unless
//! `SOLIDQ_DATABASE_URL` names another file or a PostgreSQL database) and its own table,
//! `app_users`. What it shows:
//!
//! - `POST /signup?email=ada@example.com` inserts a user and enqueues a `WelcomeEmail` job with
//!   [`solidq::Queue::enqueue_in`] in the *same* database transaction on the application's
//!   connection: the job exists if and only if the user row was committed. A second signup with
//!   the same email fails on the UNIQUE constraint, answers `409 Conflict` and, because the
//!   transaction rolls back, enqueues nothing. Success answers `201 Created` with
//!   `{"user_id": …, "job_id": …}`.
//! - `GET /jobs/{id}` shows the job's state as the runtime's store sees it.
//! - `GET /health` answers `200 OK`.
//! - An async actor (`Mailer`) performs the job; here it only prints the mail.
//! - Ctrl-C / TERM stops the HTTP server gracefully, then [`solidq::RuntimeHandle::shutdown`]
//!   drains the workers (running jobs get `SOLIDQ_SHUTDOWN_TIMEOUT`) and deregisters the
//!   process before it exits. A second signal exits at once. The example listens for the
//!   signals itself: actix-web's own handlers would stop the whole actix `System`, solidq's
//!   actors included, before the runtime could drain (see `wait_for_stop_signal`).
//!
//! Configuration: the usual `SOLIDQ_*` variables (see `solidq::Config`) and `APP_ADDR`, the
//! address to listen on (default `127.0.0.1:8080`).
//!
//! ```text
//! cargo run --example actix_web
//! curl -i -X POST 'http://127.0.0.1:8080/signup?email=ada@example.com'   # 201
//! curl -i -X POST 'http://127.0.0.1:8080/signup?email=ada@example.com'   # 409, no new job
//! curl -i http://127.0.0.1:8080/jobs/1
//! ```
//!
//! With `APP_SELF_TEST=1` the example checks itself and exits (0 on success, 1 on failure),
//! which is how CI runs it: it listens on a free port of 127.0.0.1, signs a user up over HTTP,
//! waits for the welcome job to finish, signs the same email up again expecting 409 and no new
//! job, then stops the server and drains the runtime.
//!
//! ```text
//! APP_SELF_TEST=1 SOLIDQ_DATABASE_URL=sqlite:///tmp/aw.sqlite3 cargo run --example actix_web
//! APP_SELF_TEST=1 SOLIDQ_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example actix_web
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, App, HttpResponse, HttpServer, ResponseError};
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PoolError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};
use serde::{Deserialize, Serialize};
use serde_json::json;
use solidq::config::DatabaseUrl;
use solidq::store::{EnqueueConnection, JobCounts, SharedStore, StoreError};
use solidq::{EnqueueError, EnqueueOptions, Job, JobError, Perform, Queue, Runtime};

/// Default listen address when `APP_ADDR` is not set.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// How long the self-test waits for the welcome job to finish.
const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The job and its handler
// ---------------------------------------------------------------------------------------------

/// Sent after a signup has been committed.
#[derive(Debug, Serialize, Deserialize)]
struct WelcomeEmail {
    user_id: i64,
    email: String,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "app.welcome_email";
}

/// An async actor (`Context`) that "sends" welcome mails.
struct Mailer;

impl Actor for Mailer {
    type Context = Context<Self>;
}

impl Handler<Perform<WelcomeEmail>> for Mailer {
    type Result = ResponseFuture<Result<(), JobError>>;

    fn handle(&mut self, msg: Perform<WelcomeEmail>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            // A real mailer would talk to an SMTP server or an API here; an `Err` would be
            // retried with backoff.
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            println!(
                "mailer: To: {} | Subject: Welcome, user #{}! (job {}, attempt {})",
                msg.job.email, msg.job.user_id, msg.meta.id, msg.meta.attempt
            );
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The application's own database access
// ---------------------------------------------------------------------------------------------

/// The application's pool, to the same database as solidq, on either backend.
enum AppDb {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Lets the application's SQLite connections wait for locks (solidq's workers write to the same
/// file) instead of failing at once with `database is locked`.
#[derive(Debug)]
struct SqliteBusyTimeout;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqliteBusyTimeout {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 10000").map_err(diesel::r2d2::Error::QueryError)
    }
}

impl AppDb {
    /// Opens a pool of `size` connections to `url` and creates `app_users` if missing.
    fn open(url: &DatabaseUrl, size: u32) -> Result<AppDb, AppError> {
        let db = match url {
            DatabaseUrl::Sqlite(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| AppError::Setup(format!("SQLite path {} is not UTF-8", path.display())))?;
                let pool = Pool::builder()
                    .max_size(size.max(1))
                    .connection_timeout(Duration::from_secs(10))
                    .connection_customizer(Box::new(SqliteBusyTimeout))
                    .build(ConnectionManager::<SqliteConnection>::new(path))?;
                AppDb::Sqlite(pool)
            }
            DatabaseUrl::Postgres(url) => {
                // Same libpq connect_timeout as solidq's own pool, so an outage fails fast.
                let url = solidq::store::pool::with_connect_timeout(url);
                let pool = Pool::builder()
                    .max_size(size.max(1))
                    .connection_timeout(Duration::from_secs(5))
                    .build(ConnectionManager::<PgConnection>::new(url))?;
                AppDb::Postgres(pool)
            }
        };
        match &db {
            AppDb::Sqlite(pool) => pool.get()?.batch_execute(SqliteConnection::CREATE_USERS)?,
            AppDb::Postgres(pool) => pool.get()?.batch_execute(PgConnection::CREATE_USERS)?,
        }
        Ok(db)
    }

    /// Blocking: registers `email` and enqueues its welcome mail, atomically.
    fn signup(&self, email: &str) -> Result<Signup, AppError> {
        match self {
            AppDb::Sqlite(pool) => signup_on(&mut *pool.get()?, email),
            AppDb::Postgres(pool) => signup_on(&mut *pool.get()?, email),
        }
    }
}

/// The few things that differ between the backends for the application's own SQL.
trait AppConnection: Connection + EnqueueConnection {
    /// DDL of the application's table.
    const CREATE_USERS: &'static str;

    /// Inserts a user and returns its id.
    fn insert_user(&mut self, email: &str) -> QueryResult<i64>;

    /// A transaction meant to write.
    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<DieselError>;
}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

impl AppConnection for SqliteConnection {
    const CREATE_USERS: &'static str =
        "CREATE TABLE IF NOT EXISTS app_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)";

    fn insert_user(&mut self, email: &str) -> QueryResult<i64> {
        let row: InsertedId = diesel::sql_query("INSERT INTO app_users (email) VALUES (?) RETURNING id")
            .bind::<Text, _>(email)
            .get_result(self)?;
        Ok(row.id)
    }

    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<DieselError>,
    {
        // BEGIN IMMEDIATE takes SQLite's write lock up front (waiting up to busy_timeout), so
        // the transaction can never fail half-way with SQLITE_BUSY when it starts writing.
        self.immediate_transaction(f)
    }
}

impl AppConnection for PgConnection {
    const CREATE_USERS: &'static str =
        "CREATE TABLE IF NOT EXISTS app_users (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE)";

    fn insert_user(&mut self, email: &str) -> QueryResult<i64> {
        let row: InsertedId = diesel::sql_query("INSERT INTO app_users (email) VALUES ($1) RETURNING id")
            .bind::<Text, _>(email)
            .get_result(self)?;
        Ok(row.id)
    }

    fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<DieselError>,
    {
        self.transaction(f)
    }
}

/// A committed signup.
#[derive(Debug, Serialize)]
struct Signup {
    user_id: i64,
    job_id: i64,
}

/// The heart of the example: the user row and its job are committed together or not at all.
fn signup_on<C: AppConnection>(conn: &mut C, email: &str) -> Result<Signup, AppError> {
    conn.write_transaction(|conn| {
        // A duplicate email fails here with a UNIQUE violation (mapped to 409 below). The
        // closure returns that error, diesel rolls the transaction back and the enqueue on the
        // next line never runs: no job for a user that does not exist.
        let user_id = conn.insert_user(email)?;
        // Same connection, same transaction: the job becomes visible to solidq's workers only
        // when this transaction commits. Had the commit failed (or any later statement in the
        // closure), the job would vanish with the user row; no mail for a phantom user.
        let job_id =
            Queue::enqueue_in(conn, &WelcomeEmail { user_id, email: email.to_string() }, EnqueueOptions::new())?;
        Ok(Signup { user_id, job_id })
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Shared by all HTTP workers.
struct AppState {
    db: AppDb,
    store: SharedStore,
}

/// Everything a request can fail with, mapped to a status code and a JSON `{"error": …}`.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("this email is already registered")]
    EmailTaken,
    #[error("job {0} not found")]
    JobNotFound(i64),
    #[error("database error: {0}")]
    Database(DieselError),
    #[error("no database connection: {0}")]
    Pool(#[from] PoolError),
    #[error("could not enqueue the job: {0}")]
    Enqueue(#[from] EnqueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the blocking thread pool failed")]
    Blocking,
    #[error("{0}")]
    Setup(String),
}

impl From<DieselError> for AppError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => AppError::EmailTaken,
            other => AppError::Database(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        AppError::Blocking
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::EmailTaken => StatusCode::CONFLICT,
            AppError::JobNotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("request failed: {self}");
        }
        HttpResponse::build(status).json(json!({ "error": self.to_string() }))
    }
}

#[derive(Deserialize)]
struct SignupParams {
    email: String,
}

#[post("/signup")]
async fn signup(state: web::Data<AppState>, params: web::Query<SignupParams>) -> Result<HttpResponse, AppError> {
    let email = params.into_inner().email.trim().to_string();
    if email.is_empty() || !email.contains('@') {
        return Err(AppError::BadRequest(format!("{email:?} is not an email address")));
    }
    // Diesel is blocking: run the transaction on actix-web's blocking pool, not the event loop.
    let created = web::block(move || state.db.signup(&email)).await??;
    Ok(HttpResponse::Created().json(created))
}

#[get("/jobs/{id}")]
async fn job_status(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let store = state.store.clone();
    match web::block(move || store.job(id)).await?? {
        Some(job) => Ok(HttpResponse::Ok().json(job)),
        None => Err(AppError::JobNotFound(id)),
    }
}

#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

#[actix_web::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("actix_web example failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::var("APP_SELF_TEST").is_ok_and(|value| value == "1");
    let addr = if self_test {
        "127.0.0.1:0".to_string()
    } else {
        std::env::var("APP_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_string())
    };

    // Reads SOLIDQ_*, sets up logging, opens and migrates the job tables.
    let runtime = Runtime::from_env()?.register::<WelcomeEmail, _, _>(|| Mailer);
    let store = runtime.store();
    let db = AppDb::open(&runtime.config().database_url, runtime.config().pool_size)?;
    println!("jobs and app_users in {} ({})", runtime.config().database_url, store.backend());

    let state = web::Data::new(AppState { db, store: store.clone() });
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).service(signup).service(job_status).service(health))
            // Signals are handled below, not by actix-web: its handlers stop the whole System.
            .disable_signals()
            .shutdown_timeout(10)
            .bind(&addr)?;
    let bound = server.addrs().first().copied().ok_or("the server is bound to no address")?;

    // Workers, dispatcher, heartbeat and watchdog join this System next to the HTTP server.
    let handle = runtime.start()?;
    let server = server.run();
    println!("listening on http://{bound}  (POST /signup?email=…, GET /jobs/{{id}}, GET /health)");

    let stopper = server.handle();
    actix_rt::spawn(async move {
        let signal = wait_for_stop_signal().await;
        println!("{signal} received: stopping the HTTP server, then draining the job workers");
        stopper.stop(true).await;
        let again = wait_for_stop_signal().await;
        eprintln!("second {again}: exiting at once; the watchdog of another process will release any claims");
        std::process::exit(1);
    });
    let check = self_test.then(|| {
        let stopper = server.handle();
        actix_rt::spawn(async move {
            let outcome = run_self_test(bound, store).await;
            stopper.stop(true).await;
            outcome
        })
    });

    // Returns once the server has stopped (after a signal, or when the self-test stops it).
    let served = server.await;
    let report = handle.shutdown().await;
    println!("solidq runtime drained: {report:?}");
    served?;

    if let Some(check) = check {
        check.await.map_err(|err| format!("self-test task: {err}"))??;
        println!("self-test passed");
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM with the signal's name.
///
/// `HttpServer` would handle these itself, but on a signal actix-server stops the whole actix
/// `System` shortly after the HTTP workers: solidq's worker and heartbeat arbiters would be
/// gone before `RuntimeHandle::shutdown` could drain running jobs and deregister the process.
/// `ServerHandle::stop` stops only the HTTP server, so the runtime can then drain properly.
async fn wait_for_stop_signal() -> &'static str {
    use actix_rt::signal::unix::{signal, SignalKind};
    use futures_util::future::{select, Either};

    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => match select(Box::pin(int.recv()), Box::pin(term.recv())).await {
            Either::Left(_) => "SIGINT",
            Either::Right(_) => "SIGTERM",
        },
        _ => {
            log::error!("could not install the SIGINT/SIGTERM handlers; stop the server with SIGKILL");
            std::future::pending().await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// APP_SELF_TEST=1
// ---------------------------------------------------------------------------------------------

async fn run_self_test(addr: SocketAddr, store: SharedStore) -> Result<(), String> {
    let (status, _) = request(addr, "GET", "/health").await?;
    expect_status("GET /health", status, 200)?;

    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default();
    let email = format!("selftest-{}-{nonce}@example.com", std::process::id());
    let target = format!("/signup?email={email}");

    let (status, body) = request(addr, "POST", &target).await?;
    println!("self-test: POST {target} -> {status} {body}");
    expect_status("first signup", status, 201)?;
    let created: serde_json::Value = serde_json::from_str(&body).map_err(|err| format!("signup body: {err}"))?;
    let job_id = created["job_id"].as_i64().ok_or_else(|| format!("no job_id in {body}"))?;

    let started = Instant::now();
    loop {
        let view = store.clone();
        let job = web::block(move || view.job(job_id))
            .await
            .map_err(|err| err.to_string())?
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("job {job_id} does not exist"))?;
        match job.state.as_str() {
            "finished" => break,
            "failed" => return Err(format!("job {job_id} failed: {:?}", job.last_error)),
            _ if started.elapsed() > SELF_TEST_TIMEOUT => {
                return Err(format!("job {job_id} still {} after {SELF_TEST_TIMEOUT:?}", job.state));
            }
            _ => actix_rt::time::sleep(Duration::from_millis(100)).await,
        }
    }
    println!("self-test: job {job_id} finished after {:.2}s", started.elapsed().as_secs_f64());

    let (status, body) = request(addr, "GET", &format!("/jobs/{job_id}")).await?;
    println!("self-test: GET /jobs/{job_id} -> {status} {body}");
    expect_status("job status", status, 200)?;

    let before = total_jobs(&store).await?;
    let (status, body) = request(addr, "POST", &target).await?;
    println!("self-test: POST {target} again -> {status} {body}");
    expect_status("duplicate signup", status, 409)?;
    let after = total_jobs(&store).await?;
    println!("self-test: jobs in the store before the duplicate: {before}, after: {after}");
    if before != after {
        return Err(format!("the rejected signup changed the job count from {before} to {after}"));
    }
    Ok(())
}

fn expect_status(what: &str, got: u16, want: u16) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected HTTP {want}, got {got}"))
    }
}

async fn total_jobs(store: &SharedStore) -> Result<i64, String> {
    let store = store.clone();
    let (counts, _) =
        web::block(move || store.counts()).await.map_err(|err| err.to_string())?.map_err(|err| err.to_string())?;
    let JobCounts { ready, scheduled, claimed, failed, finished } = counts;
    Ok(ready + scheduled + claimed + failed + finished)
}

/// One HTTP/1.1 request without a body over a plain `TcpStream` (no client crate needed),
/// run on the blocking pool. Returns the status code and the body.
async fn request(addr: SocketAddr, method: &str, target: &str) -> Result<(u16, String), String> {
    let head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let exchange = move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(head.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = web::block(exchange)
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| format!("{method} {target}: {err}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("malformed response: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed status line in {head:?}"))?;
    Ok((status, body.to_string()))
}
