//! Session liveness: each registered process holds a session-level advisory lock on a
//! dedicated connection for its whole life. When the process dies, PostgreSQL ends its session
//! and frees the lock, which [`SessionLiveness::gone`] sees long before a heartbeat expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, Bool, Integer, Nullable, Text};

use crate::model::ProcessId;
use crate::store::connection::{init_tls, DbConnection};
use crate::store::dialect::{expect_variant, lock_or_recover, SessionLiveness};
use crate::store::error::{StoreError, StoreResult};
use crate::store::leadership::Candidacy;

/// How long after losing one of its own sessions a store reports no session as gone: a
/// session lost by this process too means the server probably restarted and every live
/// process is re-taking its lock.
pub(super) const SESSION_RESTART_GRACE: Duration = Duration::from_secs(5);

/// The dedicated connection holding one process's advisory lock.
struct Session {
    /// `None` after a failed reconnect or once the process is gone.
    conn: Option<PgConnection>,
    /// Whether `conn` holds the lock.
    locked: bool,
    /// Set when the process deregistered or was reaped: never reconnect.
    closed: bool,
    /// Whether `conn` also holds the leader lock.
    leading: bool,
    /// When a query last checked `conn` (see [`SessionLiveness::keep`]).
    queried_at: Option<Instant>,
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
    /// The URL as configured plus `connect_timeout`, for the dedicated connections.
    url: String,
    sessions: Mutex<HashMap<ProcessId, Arc<Mutex<Session>>>>,
    /// First advisory-lock key: a stable hash of `current_schema()`.
    schema_key: OnceLock<i32>,
    /// When one of this store's own sessions was last found broken.
    session_lost_at: Mutex<Option<Instant>>,
}

#[derive(QueryableByName)]
struct SchemaName {
    #[diesel(sql_type = Nullable<Text>)]
    schema: Option<String>,
}

#[derive(QueryableByName)]
struct Acquired {
    #[diesel(sql_type = Bool)]
    acquired: bool,
}

/// FNV-1a: a 32-bit hash that is the same in every build and on every machine.
pub(super) fn stable_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// Second advisory-lock key of a process: its id as int4.
fn process_key(process: ProcessId) -> i32 {
    process as i32
}

/// How often [`SessionLiveness::keep`] checks the session with a query rather than by reading
/// its socket.
const SESSION_QUERY_EVERY: Duration = Duration::from_secs(30);

/// Second advisory-lock key of the leader lock: no process id (they start at 1).
const LEADER_KEY: i32 = -1;

impl Sessions {
    /// No sessions yet; new ones connect to `url`.
    pub(super) fn new(url: String) -> Self {
        Sessions {
            url,
            sessions: Mutex::new(HashMap::new()),
            schema_key: OnceLock::new(),
            session_lost_at: Mutex::new(None),
        }
    }

    /// The first advisory-lock key, from the connection's `current_schema()` (every connection
    /// of this store uses the same URL, hence the same schema).
    pub(super) fn schema_key(&self, conn: &mut PgConnection) -> QueryResult<i32> {
        if let Some(key) = self.schema_key.get() {
            return Ok(*key);
        }
        let row: SchemaName = sql_query("SELECT current_schema() AS schema").get_result(conn)?;
        let key = stable_hash(row.schema.as_deref().unwrap_or("")) as i32;
        Ok(*self.schema_key.get_or_init(|| key))
    }

    fn try_lock(&self, conn: &mut PgConnection, process: ProcessId) -> QueryResult<bool> {
        let key = self.schema_key(conn)?;
        let row: Acquired = sql_query("SELECT pg_try_advisory_lock($1, $2) AS acquired")
            .bind::<Integer, _>(key)
            .bind::<Integer, _>(process_key(process))
            .get_result(conn)?;
        Ok(row.acquired)
    }

    fn session(&self, process: ProcessId) -> Option<Arc<Mutex<Session>>> {
        lock_or_recover(&self.sessions).get(&process).cloned()
    }
}

impl SessionLiveness for Sessions {
    fn register(&self, insert: &mut dyn FnMut(&mut DbConnection) -> QueryResult<ProcessId>) -> StoreResult<ProcessId> {
        let action = "registering the process";
        init_tls();
        let conn = PgConnection::establish(&self.url)
            .map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
        let mut conn = DbConnection::Postgres(conn);
        // Row and lock in one transaction on the dedicated connection: nobody can see the row
        // while its lock is free.
        let id = conn
            .transaction(|conn| {
                let id = insert(conn)?;
                let conn = expect_variant!(conn, Postgres);
                let key = self.schema_key(conn)?;
                sql_query("SELECT pg_advisory_lock($1, $2)")
                    .bind::<Integer, _>(key)
                    .bind::<Integer, _>(process_key(id))
                    .execute(conn)?;
                Ok(id)
            })
            .map_err(StoreError::query(action))?;
        let DbConnection::Postgres(conn) = conn else { unreachable!("opened as a PostgreSQL connection") };
        let session = Session { conn: Some(conn), locked: true, closed: false, leading: false, queried_at: None };
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
        // A server that ended the session (a restart, `pg_terminate_backend`) has closed the
        // socket: reading it (what a LISTEN connection does for its notifications) tells, and
        // costs the server nothing. A query, which also finds a silently dropped connection,
        // only now and then: the heartbeat checks every 200 ms, and a fleet of idle processes
        // would otherwise run five statements a second each.
        let query = session.queried_at.is_none_or(|at| at.elapsed() >= SESSION_QUERY_EVERY);
        let alive = match session.conn.as_mut() {
            Some(conn) if query => diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1").is_ok(),
            Some(conn) => conn.notifications_iter().all(|notification| notification.is_ok()),
            None => false,
        };
        if alive && query {
            session.queried_at = Some(Instant::now());
        }
        if alive && session.locked {
            return Ok(false);
        }
        *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
        if !alive {
            session.broke();
            let conn = PgConnection::establish(&self.url)
                .map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
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
        let conn = expect_variant!(conn, Postgres);
        let schema = self.schema_key(conn)?;
        let by_key: HashMap<i32, ProcessId> = candidates.iter().map(|&p| (process_key(p), p)).collect();
        // This store's own processes too, in the same round trip: if one of their locks is
        // free, the sessions were cut here as well (a network cut, a server restart) and the
        // others' free locks prove nothing yet.
        let own: Vec<i32> = lock_or_recover(&self.sessions).keys().map(|&p| process_key(p)).collect();
        let keys: Vec<i32> = by_key.keys().chain(&own).copied().collect();
        // One round trip whatever the number of processes: try every lock, keep the ones taken,
        // and give those straight back.
        #[derive(QueryableByName)]
        struct Taken {
            #[diesel(sql_type = Integer)]
            key: i32,
        }
        let taken: Vec<Taken> =
            sql_query("SELECT k AS key FROM unnest($2::int4[]) AS k WHERE pg_try_advisory_lock($1, k)")
                .bind::<Integer, _>(schema)
                .bind::<Array<Integer>, _>(&keys)
                .load(conn)?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<i32> = taken.into_iter().map(|t| t.key).collect();
        sql_query("SELECT pg_advisory_unlock($1, k) FROM unnest($2::int4[]) AS k")
            .bind::<Integer, _>(schema)
            .bind::<Array<Integer>, _>(&taken)
            .execute(conn)?;
        if taken.iter().any(|key| own.contains(key)) {
            *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
            return Ok(Vec::new());
        }
        Ok(taken.iter().filter_map(|key| by_key.get(key).copied()).collect())
    }

    fn session_id(&self, process: ProcessId) -> Option<i32> {
        #[derive(QueryableByName)]
        struct BackendPid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        let session = self.session(process)?;
        let mut session = lock_or_recover(&session);
        let conn = session.conn.as_mut()?;
        let row: BackendPid = sql_query("SELECT pg_backend_pid() AS pid").get_result(conn).ok()?;
        Some(row.pid)
    }

    fn release(&self, process: ProcessId) {
        let session = lock_or_recover(&self.sessions).remove(&process);
        if let Some(session) = session {
            let mut session = lock_or_recover(&session);
            session.closed = true;
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
            #[diesel(sql_type = Bool)]
            won: bool,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            fleet: i64,
        }
        let result = if leading {
            // Held for as long as the session lives: only the connection needs checking.
            diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1").map(|()| Try { won: true, fleet: 0 })
        } else {
            self.schema_key(conn).and_then(|key| {
                sql_query(
                    "SELECT pg_try_advisory_lock($1, $2) AS won, (SELECT count(*) FROM solidq_processes) AS fleet",
                )
                .bind::<Integer, _>(key)
                .bind::<Integer, _>(LEADER_KEY)
                .get_result(conn)
            })
        };
        match result {
            Ok(tried) => {
                session.leading = tried.won;
                let fleet = (tried.fleet > 0).then(|| usize::try_from(tried.fleet).unwrap_or(usize::MAX));
                Ok(Candidacy { leads: tried.won, fleet })
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
        let unlocked = match (session.conn.as_mut(), self.schema_key.get()) {
            (Some(conn), Some(&key)) => sql_query("SELECT pg_advisory_unlock($1, $2)")
                .bind::<Integer, _>(key)
                .bind::<Integer, _>(LEADER_KEY)
                .execute(conn)
                .is_ok(),
            _ => false,
        };
        if !unlocked {
            // Closing the session frees its locks; `keep` reconnects and takes the process's.
            session.broke();
        }
    }
}
