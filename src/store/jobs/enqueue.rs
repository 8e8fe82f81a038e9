//! Enqueueing: through the store, or on the application's own connection inside its
//! transaction ([`EnqueueConnection`]). Every path checks the jobs the same way.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::model::{BatchId, Dependency, Enqueued, JobId, NewJob};
use crate::store::composition;
use crate::store::concurrency;
use crate::store::connection::DbConnection;
#[cfg(feature = "mysql")]
use crate::store::dialect::mysql;
use crate::store::dialect::{postgres, sqlite, Dialect, HotPath};
use crate::store::schema::solidq_jobs as jobs;
use crate::store::{Store, StoreError, StoreResult};

/// Refuses the first job of `jobs` that has a problem, on every backend alike.
pub(crate) fn check_jobs(jobs: &[NewJob]) -> StoreResult<()> {
    match jobs.iter().find_map(|job| job.problem().map(|problem| (job, problem))) {
        Some((job, problem)) => Err(StoreError::InvalidJob { kind: job.kind.clone(), problem }),
        None => Ok(()),
    }
}

/// Refuses jobs with a unique key or a concurrency limit on the caller's own connection
/// ([`EnqueueConnection`]): those need the store's locks.
pub(crate) fn check_plain(jobs: &[NewJob]) -> StoreResult<()> {
    match jobs.iter().find(|job| job.has_options()) {
        Some(job) => Err(StoreError::InvalidJob {
            kind: job.kind.clone(),
            problem: "a job with a unique key, a concurrency limit, a rate limit or prerequisites (after) needs solidq's DbConnection to be enqueued \
                      in the application's transaction (store::connection::app_pool gives a pool of them), not a \
                      bare SqliteConnection, PgConnection or MysqlConnection; or enqueue it through Queue::enqueue"
                .into(),
        }),
        None => Ok(()),
    }
}

/// Inserts `new_jobs`, some with a unique key or a concurrency limit, in the caller's
/// transaction: the plain ones in one go, a run of jobs whose one option is prerequisites in
/// one go too, the others one at a time: a job whose unique key is held returns the holder's
/// id; a job with a concurrency limit goes through it.
pub(crate) fn enqueue_with_options(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Vec<Enqueued>> {
    enqueue_with_options_in(dialect, conn, new_jobs, None, now)
}

/// [`enqueue_with_options`], the new jobs members of `batch` (counted by the caller). A job
/// with prerequisites waits for them ([`composition::wait_for_all`]).
pub(crate) fn enqueue_with_options_in(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    new_jobs: &[NewJob],
    batch: Option<BatchId>,
    now: NaiveDateTime,
) -> QueryResult<Vec<Enqueued>> {
    let mut out: Vec<Enqueued> = Vec::with_capacity(new_jobs.len());
    // Runs of plain jobs in one insert each, the others one at a time: ids keep input order.
    let mut rest = new_jobs;
    while !rest.is_empty() {
        let plain = rest.iter().take_while(|job| !job.has_options()).count();
        // A run of jobs whose one option is prerequisites (a workflow's layer): inserted as
        // plain ones, then made to wait together.
        let only_after = |job: &&NewJob| {
            !job.after.is_empty() && job.unique_key.is_none() && job.concurrency.is_none() && job.rate_limit.is_none()
        };
        let waiting = if plain == 0 { rest.iter().take_while(only_after).count() } else { 0 };
        if waiting > 1 {
            let run = &rest[..waiting];
            let ids = dialect.enqueue(conn, run, now)?;
            join_batch(conn, &ids, batch)?;
            let waits: Vec<(JobId, &[Dependency])> =
                ids.iter().zip(run).map(|(id, job)| (*id, job.after.as_slice())).collect();
            composition::wait_for_all(dialect, conn, &waits, now)?;
            out.extend(ids.into_iter().map(Enqueued::New));
            rest = &rest[waiting..];
            continue;
        }
        if plain > 0 {
            let ids = dialect.enqueue(conn, &rest[..plain], now)?;
            join_batch(conn, &ids, batch)?;
            out.extend(ids.into_iter().map(Enqueued::New));
            rest = &rest[plain..];
            continue;
        }
        let job = &rest[0];
        rest = &rest[1..];
        if let Some(key) = &job.unique_key {
            let holder: Option<JobId> =
                jobs::table.filter(jobs::unique_key.eq(key)).select(jobs::id).first(conn).optional()?;
            if let Some(holder) = holder {
                out.push(Enqueued::Existing(holder));
                continue;
            }
        }
        let id = dialect
            .enqueue(conn, std::slice::from_ref(job), now)?
            .first()
            .copied()
            .ok_or(diesel::result::Error::NotFound)?;
        let limit = job.concurrency.as_ref();
        diesel::update(jobs::table.find(id))
            .set((
                jobs::unique_key.eq(&job.unique_key),
                jobs::concurrency_key.eq(limit.map(|l| l.key.as_str())),
                jobs::concurrency_limit.eq(limit.map(|l| l.limit)),
                jobs::concurrency_duration_ms
                    .eq(limit.map(|l| i64::try_from(l.duration.as_millis()).unwrap_or(i64::MAX))),
                jobs::concurrency_on_conflict.eq(limit.map(|l| l.on_conflict.as_str())),
                jobs::batch_id.eq(batch),
                jobs::rate_limit_key.eq(job.rate_limit.as_ref().map(|r| r.key())),
                jobs::rate_limit.eq(job.rate_limit.as_ref().map(|r| i32::try_from(r.limit()).unwrap_or(i32::MAX))),
                jobs::rate_period_ms.eq(job.rate_limit.as_ref().map(|r| r.period_ms())),
            ))
            .execute(conn)?;
        if !job.after.is_empty() {
            // Waits, runs at once (made ready through its limit) or is cancelled, as its
            // prerequisites say.
            composition::wait_for_all(dialect, conn, &[(id, job.after.as_slice())], now)?;
        } else if limit.is_some() && job.scheduled_at.is_none_or(|at| at <= now) {
            concurrency::admit(dialect, conn, &[id], now)?;
        }
        out.push(Enqueued::New(id));
    }
    Ok(out)
}

/// Makes `ids` members of `batch`, if there is one.
fn join_batch(conn: &mut DbConnection, ids: &[JobId], batch: Option<BatchId>) -> QueryResult<()> {
    let Some(batch) = batch else { return Ok(()) };
    for chunk in ids.chunks(crate::store::params::ID_CHUNK) {
        diesel::update(jobs::table.filter(jobs::id.eq_any(chunk))).set(jobs::batch_id.eq(batch)).execute(conn)?;
    }
    Ok(())
}

/// The dialect of `conn`'s backend, for its SQL only: none of its state (files, sessions) is
/// used, so that it can run on the application's own connection.
pub(crate) fn sql_dialect(conn: &DbConnection) -> Box<dyn Dialect> {
    match conn {
        DbConnection::Sqlite(_) => Box::new(sqlite::Sqlite::sql_only()),
        DbConnection::Postgres(_) => Box::new(postgres::Postgres::sql_only()),
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(_) => Box::new(mysql::Mysql::sql_only()),
    }
}

/// A connection on which jobs can be enqueued inside the caller's own transaction: the jobs
/// exist only if that transaction commits.
///
/// Implemented for diesel's `SqliteConnection`, `PgConnection` and (with the `mysql` feature)
/// `MysqlConnection`; used by
/// [`Queue::enqueue_in`](crate::Queue::enqueue_in).
pub trait EnqueueConnection {
    /// Inserts `jobs` and their executions on this connection (in a savepoint when a
    /// transaction is open); returns the new ids in the order given.
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>>;
}

/// Enqueues `jobs` on a bare backend connection with `insert` (the dialect's insert, in a
/// savepoint of the caller's transaction), after the checks every enqueue makes. Jobs with a
/// unique key or a concurrency limit are refused here: they need solidq's `DbConnection`.
pub(crate) fn enqueue_plain<C: Connection>(
    conn: &mut C,
    jobs: &[NewJob],
    insert: impl FnOnce(&mut C) -> QueryResult<Vec<JobId>>,
) -> StoreResult<Vec<JobId>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    check_jobs(jobs)?;
    check_plain(jobs)?;
    conn.transaction(insert).map_err(StoreError::query("enqueueing jobs"))
}

impl EnqueueConnection for DbConnection {
    /// Jobs with a unique key or a concurrency limit go through them here too, in a savepoint
    /// of the caller's transaction (the raw backend connections refuse them).
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.iter().any(NewJob::has_options) {
            check_jobs(jobs)?;
            if let DbConnection::Sqlite(conn) = self {
                crate::store::connection::refuse_writes_if_moved(conn)?;
            }
            let dialect = sql_dialect(self);
            let enqueued = self
                .transaction(|conn| enqueue_with_options(dialect.as_ref(), conn, jobs, now))
                .map_err(StoreError::query("enqueueing jobs"))?;
            return Ok(enqueued.into_iter().map(Enqueued::id).collect());
        }
        match self {
            DbConnection::Sqlite(conn) => conn.enqueue_jobs(jobs, now),
            DbConnection::Postgres(conn) => conn.enqueue_jobs(jobs, now),
            #[cfg(feature = "mysql")]
            DbConnection::Mysql(conn) => conn.enqueue_jobs(jobs, now),
        }
    }
}

/// A pooled connection enqueues as the connection it holds, so that code written with an r2d2
/// pool (`conn.transaction(|conn| Queue::enqueue_in(conn, …))`) compiles as is.
impl<M> EnqueueConnection for diesel::r2d2::PooledConnection<M>
where
    M: diesel::r2d2::ManageConnection,
    M::Connection: EnqueueConnection,
{
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        (**self).enqueue_jobs(jobs, now)
    }
}

impl EnqueueConnection for diesel::SqliteConnection {
    /// Refused with [`StoreError::DatabaseGone`] on a connection of solidq's whose file is no
    /// longer at its path.
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        crate::store::connection::refuse_writes_if_moved(self)?;
        enqueue_plain(self, jobs, |conn| sqlite::enqueue_on(conn, jobs, now))
    }
}

impl EnqueueConnection for diesel::PgConnection {
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        enqueue_plain(self, jobs, |conn| postgres::enqueue_on(conn, jobs, now))
    }
}

#[cfg(feature = "mysql")]
impl EnqueueConnection for diesel::MysqlConnection {
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        enqueue_plain(self, jobs, |conn| mysql::enqueue_on(conn, jobs, now))
    }
}

impl Store {
    /// Inserts `jobs` (one multi-row INSERT per chunk) and their ready or scheduled executions
    /// in one transaction; returns the new ids in the order given.
    pub fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        Ok(self.enqueue_reporting(jobs, now)?.into_iter().map(|enqueued| enqueued.id()).collect())
    }

    /// [`Store::enqueue`], telling for each job whether it was inserted or a job with its
    /// unique key already existed (whose id it returns instead). Jobs with a concurrency limit
    /// over their limit are inserted as blocked (or discarded, if their kind says so).
    pub fn enqueue_reporting(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        check_jobs(jobs)?;
        self.check_prerequisites(jobs)?;
        self.check_database()?;
        let enqueued = if jobs.iter().any(NewJob::has_options) {
            self.write("enqueueing jobs", |conn| enqueue_with_options(self.dialect(), conn, jobs, now))?
        } else {
            let transaction = !self.dialect().one_statement(HotPath::Enqueue(jobs.len()));
            let ids = self.write_as("enqueueing jobs", transaction, |conn| self.dialect().enqueue(conn, jobs, now))?;
            ids.into_iter().map(Enqueued::New).collect()
        };
        if jobs.iter().any(|job| job.scheduled_at.is_none_or(|at| at <= now)) {
            self.jobs_ready();
        }
        Ok(enqueued)
    }
}
