//! MySQL 8.0.1+ / MariaDB 10.6+ (InnoDB). Skeleton: the interface Part A compiles against;
//! the bodies follow.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use super::{DeadProcess, Dialect, SessionLiveness};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId};
use crate::store::connection::DbConnection;
use crate::store::params::Claim;

mod sessions;
mod sql;

use sessions::Sessions;

/// The MySQL migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// The MySQL dialect, with the dedicated session connections of the processes this store
/// registered.
pub struct Mysql {
    /// The URL as configured, for the migration and session connections.
    url: String,
    sessions: Sessions,
}

impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql").finish_non_exhaustive()
    }
}

impl Mysql {
    /// A dialect whose dedicated connections (migrations, sessions) go to `url`.
    pub fn new(url: String) -> Self {
        Mysql { sessions: Sessions::new(url.clone()), url }
    }

    /// The dialect's SQL only, on a connection the caller opened: no sessions.
    pub fn sql_only() -> Self {
        Mysql::new(String::new())
    }
}

/// Inserts the jobs and their executions; the caller holds a transaction.
pub(crate) fn enqueue_on(
    conn: &mut MysqlConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Vec<JobId>> {
    let _ = (conn, new_jobs, now);
    todo!("MySQL enqueue")
}

impl Dialect for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn begin_write(&self, conn: &mut DbConnection) -> QueryResult<()> {
        let _ = conn;
        todo!()
    }

    fn begin_read(&self, conn: &mut DbConnection) -> QueryResult<()> {
        let _ = conn;
        todo!()
    }

    fn retryable(&self, err: &diesel::result::Error) -> bool {
        let _ = err;
        false
    }

    fn migrate(&self, conn: &mut DbConnection) -> Result<usize, String> {
        let _ = (conn, &self.url);
        todo!()
    }

    fn enqueue(&self, conn: &mut DbConnection, jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
        let _ = (conn, jobs, now);
        todo!()
    }

    fn claim(&self, conn: &mut DbConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
        let _ = (conn, claim);
        todo!()
    }

    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>> {
        let _ = (conn, tokens);
        todo!()
    }

    fn lock_key(&self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        let _ = (conn, key);
        todo!()
    }

    fn take_claims_of(&self, conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
        let _ = (conn, process);
        todo!()
    }

    fn take_orphan_claims(&self, conn: &mut DbConnection) -> QueryResult<Vec<JobId>> {
        let _ = conn;
        todo!()
    }

    fn take_due(&self, conn: &mut DbConnection, now: NaiveDateTime, batch: usize) -> QueryResult<Vec<JobId>> {
        let _ = (conn, now, batch);
        todo!()
    }

    fn delete_process(
        &self,
        conn: &mut DbConnection,
        process: ProcessId,
        cutoff: Option<NaiveDateTime>,
    ) -> QueryResult<Option<DeadProcess>> {
        let _ = (conn, process, cutoff);
        todo!()
    }

    fn sessions(&self) -> Option<&dyn SessionLiveness> {
        Some(&self.sessions)
    }
}
