//! The application: a signup that enqueues its welcome mail in the same transaction, the job's
//! handler, and the HTTP routes. `tests/actix_web.rs` runs these same routes.

use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse, ResponseError};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::{Deserialize, Serialize};
use solidq::store::connection::{app_pool, write_transaction, AppPool};
use solidq::{
    DatabaseUrl, DbConnection, EnqueueError, EnqueueOptions, Job, JobError, Perform, Queue, SharedStore, StoreError,
};

/// Sent after a signup has been committed.
#[derive(Debug, Serialize, Deserialize)]
pub struct WelcomeEmail {
    pub user_id: i64,
    pub email: String,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "app.welcome_email";
}

/// An async actor that "sends" welcome mails; an `Err` would be retried with backoff.
pub struct Mailer;

impl Actor for Mailer {
    type Context = Context<Self>;
}

impl Handler<Perform<WelcomeEmail>> for Mailer {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<WelcomeEmail>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            println!("mailer: welcome, {} (user {}, attempt {})", msg.job.email, msg.job.user_id, msg.meta.attempt);
            Ok(())
        })
    }
}

diesel::table! {
    /// The application's own table.
    app_users (id) {
        id -> BigInt,
        email -> Text,
    }
}

/// The application's own pool, to the database solidq uses, set up as solidq's own. Its code
/// is written once for SQLite and PostgreSQL against `DbConnection`.
pub struct AppDb(AppPool);

impl AppDb {
    /// Opens a small pool to `url` and creates `app_users` if missing.
    pub fn open(url: &DatabaseUrl) -> Result<AppDb, AppError> {
        let pool = app_pool(url, 4)?;
        let mut conn = pool.get()?;
        // The one statement that differs: how each backend spells an auto-incremented key (and
        // MySQL a unique text column, which needs a length).
        let (id, email) = match &*conn {
            DbConnection::Sqlite(_) => ("INTEGER PRIMARY KEY", "TEXT"),
            DbConnection::Postgres(_) => ("BIGSERIAL PRIMARY KEY", "TEXT"),
            #[cfg(feature = "mysql")]
            DbConnection::Mysql(_) => ("BIGINT AUTO_INCREMENT PRIMARY KEY", "VARCHAR(255)"),
        };
        conn.batch_execute(&format!("CREATE TABLE IF NOT EXISTS app_users (id {id}, email {email} NOT NULL UNIQUE)"))?;
        Ok(AppDb(pool))
    }

    /// Blocking: registers `email` and enqueues its welcome mail in one transaction, on any
    /// backend. A duplicate email fails the INSERT, the transaction rolls back and nothing is
    /// enqueued; the job becomes visible to the workers only when the user row commits.
    fn signup(&self, email: &str) -> Result<Signup, AppError> {
        let mut conn = self.0.get()?;
        write_transaction(&mut conn, |conn| {
            diesel::insert_into(app_users::table).values(app_users::email.eq(email)).execute(conn)?;
            let user_id = app_users::table.filter(app_users::email.eq(email)).select(app_users::id).first(conn)?;
            let welcome = WelcomeEmail { user_id, email: email.to_string() };
            let job_id = Queue::enqueue_in(conn, &welcome, EnqueueOptions::new())?;
            Ok(Signup { user_id, job_id })
        })
    }
}

/// A committed signup.
#[derive(Debug, Serialize)]
pub struct Signup {
    pub user_id: i64,
    pub job_id: i64,
}

/// Shared by the HTTP workers.
pub struct AppState {
    pub db: AppDb,
    pub store: SharedStore,
}

/// What a request can fail with, as a status code and `{"error": …}`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0:?} is not an email address")]
    NotAnEmail(String),
    #[error("this email is already registered")]
    EmailTaken,
    #[error("job {0} not found")]
    JobNotFound(i64),
    #[error("database error: {0}")]
    Database(DieselError),
    #[error("could not enqueue: {0}")]
    Enqueue(#[from] EnqueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the blocking thread pool failed")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl From<DieselError> for AppError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => AppError::EmailTaken,
            other => AppError::Database(other),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotAnEmail(_) => StatusCode::BAD_REQUEST,
            AppError::EmailTaken => StatusCode::CONFLICT,
            AppError::JobNotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({ "error": self.to_string() }))
    }
}

#[derive(Deserialize)]
struct SignupParams {
    email: String,
}

/// `POST /signup?email=…`: 201 with `{"user_id", "job_id"}`, 409 for a known email.
#[post("/signup")]
async fn signup(state: web::Data<AppState>, params: web::Query<SignupParams>) -> Result<HttpResponse, AppError> {
    let email = params.into_inner().email.trim().to_string();
    if !email.contains('@') {
        return Err(AppError::NotAnEmail(email));
    }
    // Diesel blocks: run the transaction on actix-web's blocking pool.
    let created = web::block(move || state.db.signup(&email)).await??;
    Ok(HttpResponse::Created().json(created))
}

/// `GET /jobs/{id}`: the job as solidq's store sees it.
#[get("/jobs/{id}")]
async fn job_status(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let (id, store) = (id.into_inner(), state.store.clone());
    match web::block(move || store.job(id)).await?? {
        Some(job) => Ok(HttpResponse::Ok().json(job)),
        None => Err(AppError::JobNotFound(id)),
    }
}

/// The application's routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(signup).service(job_status);
}
