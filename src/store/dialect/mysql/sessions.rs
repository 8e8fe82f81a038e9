//! Session liveness: each registered process holds a named lock, `GET_LOCK`, on a dedicated
//! connection for its whole life. When the process dies, the server closes its session and
//! frees the lock, which [`SessionLiveness::gone`] sees through `IS_FREE_LOCK` long before a
//! heartbeat expires. Named locks outlive COMMIT and belong to the connection, so they are
//! never taken on a pooled one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::mysql::Mysql as MysqlBackend;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::sql::Number;
use crate::model::ProcessId;
use crate::store::connection::{open_mysql, DbConnection};
use crate::store::dialect::{expect_variant, lock_or_recover, SessionLiveness};
use crate::store::error::{StoreError, StoreResult};
use crate::store::leadership::Candidacy;

/// How long after losing one of its own sessions a store reports no session as gone: a
/// session lost by this process too means the server probably restarted and every live
/// process is re-taking its lock.
const SESSION_RESTART_GRACE: Duration = Duration::from_secs(5);

/// The dedicated connection holding one process's named lock.
struct Session {
    /// `None` after a failed reconnect or once the process is gone.
    conn: Option<MysqlConnection>,
    /// Whether `conn` holds the lock (locks are counted: take it once per connection).
    locked: bool,
    /// Set when the process deregistered or was reaped: never reconnect.
    closed: bool,
    /// Whether `conn` also holds the leader lock.
    leading: bool,
}

impl Session {
    /// Gives up a connection that failed: its locks are gone with it (or soon will be).
    fn broke(&mut self) {
        self.conn = None;
        self.locked = false;
        self.leading = false;
    }
}

/// The dedicated session connections of the processes a store registered.
pub(super) struct Sessions {
    /// The URL as configured, for the dedicated connections.
    url: String,
    sessions: Mutex<HashMap<ProcessId, Arc<Mutex<Session>>>>,
    /// A stable hash of `DATABASE()`, which names this store's locks apart from other
    /// databases' on the same server.
    database_key: OnceLock<u64>,
    /// When one of this store's own sessions was last found broken.
    session_lost_at: Mutex<Option<Instant>>,
}

#[derive(QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

/// FNV-1a 64: the same in every build and on every machine.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The named lock of `process` in the database whose name hashes to `database_key`.
fn lock_name(database_key: u64, process: ProcessId) -> String {
    format!("solidq:{database_key:016x}:{process}")
}

/// The leader lock in the database whose name hashes to `database_key`.
fn leader_lock_name(database_key: u64) -> String {
    format!("solidq:{database_key:016x}:leader")
}

impl Sessions {
    /// No sessions yet; new ones connect to `url`.
    pub(super) fn new(url: String) -> Self {
        Sessions {
            url,
            sessions: Mutex::new(HashMap::new()),
            database_key: OnceLock::new(),
            session_lost_at: Mutex::new(None),
        }
    }

    /// The hash of the connection's `DATABASE()` (every connection of this store uses the
    /// same URL, hence the same database).
    pub(super) fn database_key(&self, conn: &mut MysqlConnection) -> QueryResult<u64> {
        if let Some(key) = self.database_key.get() {
            return Ok(*key);
        }
        let row: DatabaseName = sql_query("SELECT DATABASE() AS name").get_result(conn)?;
        let key = stable_hash(row.name.as_deref().unwrap_or(""));
        Ok(*self.database_key.get_or_init(|| key))
    }

    /// The lock of `process`: `solidq:<16 hex>:<id>`, at most 43 characters (the limit is 64).
    fn lock_name(&self, conn: &mut MysqlConnection, process: ProcessId) -> QueryResult<String> {
        Ok(lock_name(self.database_key(conn)?, process))
    }

    /// Takes the lock of `process` without waiting; whether it got it.
    fn try_lock(&self, conn: &mut MysqlConnection, process: ProcessId) -> QueryResult<bool> {
        let name = self.lock_name(conn, process)?;
        let row: Number = sql_query("SELECT GET_LOCK(?, 0) AS n").bind::<Text, _>(name).get_result(conn)?;
        Ok(row.n == Some(1))
    }

    fn session(&self, process: ProcessId) -> Option<Arc<Mutex<Session>>> {
        lock_or_recover(&self.sessions).get(&process).cloned()
    }
}

impl SessionLiveness for Sessions {
    fn register(&self, insert: &mut dyn FnMut(&mut DbConnection) -> QueryResult<ProcessId>) -> StoreResult<ProcessId> {
        let action = "registering the process";
        let conn = open_mysql(&self.url).map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
        let mut conn = DbConnection::Mysql(conn);
        // Row and lock in one transaction on the dedicated connection: nobody can see the row
        // while its lock is free (the lock is taken before the row commits, and stays after).
        let id = conn
            .transaction(|conn| {
                let id = insert(conn)?;
                let conn = expect_variant!(conn, Mysql);
                if !self.try_lock(conn, id)? {
                    return Err(diesel::result::Error::QueryBuilderError(
                        format!("the session lock of new process {id} is held by another session").into(),
                    ));
                }
                Ok(id)
            })
            .map_err(StoreError::query(action))?;
        let DbConnection::Mysql(conn) = conn else { unreachable!("opened as a MySQL connection") };
        let session = Session { conn: Some(conn), locked: true, closed: false, leading: false };
        lock_or_recover(&self.sessions).insert(id, Arc::new(Mutex::new(session)));
        Ok(id)
    }

    fn keep(&self, process: ProcessId) -> StoreResult<bool> {
        let action = "keeping the process session";
        let Some(session) = self.session(process) else {
            return Ok(false);
        };
        let mut session = lock_or_recover(&session);
        if session.closed {
            return Ok(false);
        }
        let alive = match session.conn.as_mut() {
            Some(conn) => sql_query("SELECT 1 AS n").load::<Number>(conn).is_ok(),
            None => false,
        };
        if alive && session.locked {
            return Ok(false);
        }
        *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
        if !alive {
            session.broke();
            let conn =
                open_mysql(&self.url).map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
            session.conn = Some(conn);
        }
        let Some(conn) = session.conn.as_mut() else {
            return Ok(false);
        };
        // Try, never wait: if the old session still holds the lock (the server has not
        // noticed it died yet), the next check tries again.
        let locked = self.try_lock(conn, process).map_err(StoreError::query(action))?;
        session.locked = locked;
        if !locked {
            return Err(StoreError::Connection {
                action,
                message: format!("the session lock of process {process} is still held by an earlier session"),
            });
        }
        Ok(true)
    }

    fn gone(&self, conn: &mut DbConnection, candidates: &[ProcessId]) -> QueryResult<Vec<ProcessId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let recently_lost =
            lock_or_recover(&self.session_lost_at).is_some_and(|at| at.elapsed() < SESSION_RESTART_GRACE);
        if recently_lost {
            return Ok(Vec::new());
        }
        let conn = expect_variant!(conn, Mysql);
        let key = self.database_key(conn)?;
        // This store's own processes too, in the same round trip: if one of their locks is
        // free, the sessions were cut here as well (a network cut, a server restart) and the
        // others' free locks prove nothing yet.
        let own: Vec<ProcessId> = lock_or_recover(&self.sessions).keys().copied().collect();
        let mut asked: Vec<ProcessId> = candidates.iter().chain(&own).copied().collect();
        asked.sort_unstable();
        asked.dedup();
        #[derive(QueryableByName)]
        struct Free {
            #[diesel(sql_type = BigInt)]
            process: i64,
            #[diesel(sql_type = Nullable<BigInt>)]
            free: Option<i64>,
        }
        // IS_FREE_LOCK takes nothing, so there is nothing to give back (PostgreSQL's probe
        // must unlock what it took).
        // Casts: a bare `?` in the select list has no type in the result metadata (diesel
        // cannot read MYSQL_TYPE_NULL columns).
        let sql = vec!["SELECT CAST(? AS SIGNED) AS process, CAST(IS_FREE_LOCK(?) AS SIGNED) AS free"; asked.len()]
            .join(" UNION ALL ");
        let mut query = sql_query(sql).into_boxed::<MysqlBackend>();
        for &process in &asked {
            query = query.bind::<BigInt, _>(process).bind::<Text, _>(lock_name(key, process));
        }
        let rows: Vec<Free> = query.load(conn)?;
        let free: Vec<ProcessId> = rows.into_iter().filter(|row| row.free == Some(1)).map(|row| row.process).collect();
        if free.iter().any(|process| own.contains(process)) {
            *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
            return Ok(Vec::new());
        }
        Ok(free.into_iter().filter(|process| candidates.contains(process)).collect())
    }

    fn session_id(&self, process: ProcessId) -> Option<i32> {
        let session = self.session(process)?;
        let mut session = lock_or_recover(&session);
        let conn = session.conn.as_mut()?;
        let row: Number = sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS n").get_result(conn).ok()?;
        row.n.and_then(|id| i32::try_from(id).ok())
    }

    fn release(&self, process: ProcessId) {
        let session = lock_or_recover(&self.sessions).remove(&process);
        if let Some(session) = session {
            let mut session = lock_or_recover(&session);
            session.closed = true;
            // Closing the connection frees its locks.
            session.broke();
        }
    }

    fn try_lead(&self, process: ProcessId) -> StoreResult<Candidacy> {
        let action = "trying the leader lock";
        let no = Candidacy { leads: false, fleet: None };
        let Some(session) = self.session(process) else { return Ok(no) };
        let mut session = lock_or_recover(&session);
        // Without its own lock the process is reconnecting: it may be judged dead, so it
        // must not lead.
        if session.closed || !session.locked {
            return Ok(no);
        }
        let leading = session.leading;
        let Some(conn) = session.conn.as_mut() else { return Ok(no) };
        #[derive(QueryableByName)]
        struct Try {
            #[diesel(sql_type = Nullable<BigInt>)]
            won: Option<i64>,
            #[diesel(sql_type = BigInt)]
            fleet: i64,
        }
        let result = if leading {
            // Held for as long as the session lives (named locks survive COMMIT): only the
            // connection needs checking.
            sql_query("SELECT 1 AS n").load::<Number>(conn).map(|_| Try { won: Some(1), fleet: 0 })
        } else {
            self.database_key(conn).and_then(|key| {
                sql_query(
                    "SELECT CAST(GET_LOCK(?, 0) AS SIGNED) AS won, \
                     (SELECT CAST(count(*) AS SIGNED) FROM solidq_processes) AS fleet",
                )
                .bind::<Text, _>(leader_lock_name(key))
                .get_result(conn)
            })
        };
        match result {
            Ok(tried) => {
                let won = tried.won == Some(1);
                session.leading = won;
                let fleet = (tried.fleet > 0).then(|| usize::try_from(tried.fleet).unwrap_or(usize::MAX));
                Ok(Candidacy { leads: won, fleet })
            }
            Err(err) => {
                session.broke();
                *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
                Err(StoreError::query(action)(err))
            }
        }
    }

    fn resign(&self, process: ProcessId) {
        let Some(session) = self.session(process) else { return };
        let mut session = lock_or_recover(&session);
        if !session.leading {
            return;
        }
        session.leading = false;
        let unlocked = match (session.conn.as_mut(), self.database_key.get()) {
            (Some(conn), Some(&key)) => sql_query("SELECT CAST(RELEASE_LOCK(?) AS SIGNED) AS n")
                .bind::<Text, _>(leader_lock_name(key))
                .load::<Number>(conn)
                .is_ok(),
            _ => false,
        };
        if !unlocked {
            // Closing the session frees its locks; `keep` reconnects and takes the process's.
            session.broke();
        }
    }
}
