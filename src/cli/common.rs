//! What every command shares: how a failure becomes an exit code, and how a command reaches
//! the database.

use crate::config::{Config, ConfigError};
use crate::store::{self, SharedStore, StoreError};

/// Connections the CLI asks for: it runs one statement at a time.
const CLI_POOL_SIZE: u32 = 2;

/// A failure on its way to an exit code.
pub(super) enum Failure {
    /// Exit 2 with this message.
    Usage(String),
    /// Exit 2, listing every configuration problem.
    Config(ConfigError),
    /// Exit 1.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    /// A name or job the store refuses is the operator's input: exit 2, as for a bad flag.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidName(_) | StoreError::InvalidJob { .. } => Failure::Usage(err.to_string()),
            other => Failure::Store(other),
        }
    }
}

pub(super) fn connect(config: &Config) -> Result<SharedStore, Failure> {
    Ok(store::connect(&config.database_url, config.pool_size.min(CLI_POOL_SIZE))?)
}

/// For commands that only read: a SQLite file that does not exist is no database (opening it
/// would create an empty one and report nothing).
pub(super) fn connect_existing(config: &Config, action: &'static str) -> Result<SharedStore, Failure> {
    if let crate::model::DatabaseUrl::Sqlite(path) = &config.database_url {
        if !path.exists() {
            return Err(Failure::Store(StoreError::Connection {
                action,
                message: format!(
                    "there is no database at {} (nothing has created it: run `solidq migrate`, enqueue a job or \
                     start the application first, or check SOLIDQ_DATABASE_URL)",
                    path.display()
                ),
            }));
        }
    }
    let store = connect(config)?;
    if config.auto_migrate {
        store.migrate()?;
    }
    Ok(store)
}

/// Connects and, when `SOLIDQ_AUTO_MIGRATE` is on, applies pending migrations.
pub(super) fn connect_ready(config: &Config) -> Result<SharedStore, Failure> {
    let store = connect(config)?;
    if config.auto_migrate {
        store.migrate()?;
    }
    Ok(store)
}

pub(super) fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
