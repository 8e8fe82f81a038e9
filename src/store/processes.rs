//! Processes: register, beat, prove the session alive, deregister.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::store::sql_types::{at, At};

use super::connection::DbConnection;
use super::executions::hand_back;
use super::schema::solidq_processes as processes;
use super::{Store, StoreResult};
use crate::model::{NewProcess, ProcessId, ProcessMetadata};

/// Result of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The row was stamped.
    Stamped,
    /// The row is gone: this process was reaped and must register again.
    Missing,
}

/// A row of `solidq_processes` to insert.
#[derive(Insertable)]
#[diesel(table_name = processes)]
struct ProcessInsert<'a> {
    kind: &'a str,
    name: &'a str,
    pid: i32,
    hostname: &'a str,
    metadata: String,
    last_heartbeat_at: At,
    created_at: At,
}

/// Inserts the process row and returns its id (found by the unique name: no backend needs
/// `RETURNING` for it).
fn insert_process(conn: &mut DbConnection, process: &NewProcess, now: NaiveDateTime) -> QueryResult<ProcessId> {
    diesel::insert_into(processes::table)
        .values(ProcessInsert {
            kind: &process.kind,
            name: &process.name,
            pid: process.pid,
            hostname: &process.hostname,
            metadata: process.metadata.to_json(),
            last_heartbeat_at: at(now),
            created_at: at(now),
        })
        .execute(conn)?;
    processes::table.filter(processes::name.eq(&process.name)).select(processes::id).first(conn)
}

impl Store {
    /// Inserts a process row and returns its id. Backends with session liveness (PostgreSQL)
    /// also take the process's proof here, on a connection kept for the process's life.
    pub fn register_process(&self, process: &NewProcess, now: NaiveDateTime) -> StoreResult<ProcessId> {
        match self.dialect().sessions() {
            Some(sessions) => self.observed("registering the process", || {
                sessions.register(&mut |conn| insert_process(conn, process, now))
            }),
            None => self.write("registering the process", |conn| insert_process(conn, process, now)),
        }
    }

    /// Stamps the process's `last_heartbeat_at`, after checking that the database is still
    /// the one this store opened ([`Store::check_database`]).
    pub fn beat(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<Beat> {
        self.beat_with_metadata(process, now, None)
    }

    /// [`Store::beat`], rewriting the row's `metadata` in the same statement when given (the
    /// process's abandoned executions changed).
    pub fn beat_with_metadata(
        &self,
        process: ProcessId,
        now: NaiveDateTime,
        metadata: Option<&ProcessMetadata>,
    ) -> StoreResult<Beat> {
        self.check_database()?;
        // Only this process's own row changes: no maintenance pass of this process reads it.
        let stamped = self.write_unmarked("writing the heartbeat", true, |conn| {
            let row = processes::table.find(process);
            match metadata {
                Some(metadata) => diesel::update(row)
                    .set((processes::last_heartbeat_at.eq(at(now)), processes::metadata.eq(metadata.to_json())))
                    .execute(conn),
                None => diesel::update(row).set(processes::last_heartbeat_at.eq(at(now))).execute(conn),
            }
        })?;
        if stamped > 0 {
            return Ok(Beat::Stamped);
        }
        // The row is gone (reaped): its session proves nothing any more.
        if let Some(sessions) = self.dialect().sessions() {
            sessions.release(process);
        }
        Ok(Beat::Missing)
    }

    /// Checks the process's session-liveness connection and, if it broke (e.g. the database
    /// restarted), reconnects and proves the session again. Returns whether it had to.
    /// Backends without session liveness return `Ok(false)`.
    pub fn keep_session(&self, process: ProcessId) -> StoreResult<bool> {
        match self.dialect().sessions() {
            Some(sessions) => sessions.keep(process),
            None => Ok(false),
        }
    }

    /// Ids among `candidates` whose database session ended (their proof is missing).
    /// Backends without session liveness return an empty list.
    pub fn sessions_gone(&self, candidates: &[ProcessId]) -> StoreResult<Vec<ProcessId>> {
        match self.dialect().sessions() {
            Some(sessions) if !candidates.is_empty() => {
                self.with_connection("probing process sessions", |conn| sessions.gone(conn, candidates))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The server's id of the session that proves `process` alive, if this store registered
    /// the process and the session is up: on PostgreSQL the backend pid of its advisory-lock
    /// connection (see `pg_stat_activity`). Backends without session liveness return `None`.
    pub fn session_id(&self, process: ProcessId) -> Option<i32> {
        self.dialect().sessions().and_then(|sessions| sessions.session_id(process))
    }

    /// Graceful exit: returns every claim of `process` to ready, giving their attempts back
    /// (see [`Store::release_claims`]), deletes its row and gives up its session and the leader
    /// lock if it held it. Returns the number of claims released.
    pub fn deregister(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<usize> {
        // First: another process may be elected while this one hands its claims back.
        self.dialect().resign(process);
        let released = self.write("deregistering the process", |conn| {
            // The row first: on PostgreSQL this waits for the process's claims under way (they
            // hold the row FOR KEY SHARE) to commit, so that the next statement sees them.
            diesel::delete(processes::table.find(process)).execute(conn)?;
            let ids = self.dialect().take_claims_of(conn, process)?;
            hand_back(conn, &ids, now)?;
            Ok(ids.len())
        })?;
        if let Some(sessions) = self.dialect().sessions() {
            sessions.release(process);
        }
        Ok(released)
    }
}
