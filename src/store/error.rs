//! What the store's operations fail with.

/// Errors from the database layer, with what was being done. `Debug` prints the same text
/// as `Display`.
#[derive(thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool (database down, pool exhausted).
    #[error("no database connection for {action}: {message}")]
    Connection {
        /// What the store was doing.
        action: &'static str,
        /// The pool's or driver's message.
        message: String,
    },
    /// A statement failed.
    #[error("database error while {action}: {source}")]
    Query {
        /// What the store was doing.
        action: &'static str,
        /// The diesel error.
        source: diesel::result::Error,
    },
    /// Applying migrations failed.
    #[error("migrating the database failed: {0}")]
    Migration(String),
    /// The database this store opened is no longer where its URL points: the SQLite file was
    /// deleted or replaced while the process had it open. Everything written since would be
    /// lost with the unlinked file, so the store refuses every write from then on.
    #[error("{0}")]
    DatabaseGone(String),
    /// A name the store refuses to write (see [`name_problem`](crate::model::name_problem)).
    #[error("{0}")]
    InvalidName(String),
    /// A dashboard query or action the store refuses as given (a bad page size or cursor, a
    /// selection an action does not apply to, an unknown recurring task).
    #[error("{0}")]
    InvalidQuery(String),
    /// A job the store refuses to insert (see [`NewJob::problem`](crate::model::NewJob::problem)).
    #[error("job of kind {} refused: {problem}", crate::model::shown_name(kind))]
    InvalidJob {
        /// The job's kind.
        kind: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A write made as the leader of `term` (inside [`Store::as_leader`](crate::store::Store::as_leader))
    /// found that another process was elected since: the write changed nothing.
    #[error("deposed: the leader of term {term} was replaced by a later election; the write changed nothing")]
    Deposed {
        /// The term the write was made for.
        term: i64,
    },
}

impl StoreError {
    /// Wraps a diesel error with what was being done.
    pub fn query(action: &'static str) -> impl FnOnce(diesel::result::Error) -> StoreError {
        move |source| StoreError::Query { action, source }
    }

    /// Wraps a pool or connection error with what was being done.
    pub fn connection(action: &'static str) -> impl FnOnce(diesel::r2d2::PoolError) -> StoreError {
        move |err| StoreError::Connection { action, message: err.to_string() }
    }
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;
