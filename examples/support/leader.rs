//! Who leads the maintenance sweeps now, for `examples/fleet.rs` and `examples/chaos.rs`
//! (included by `#[path]`; a directory without `main.rs` is not an example of its own).
//!
//! The election of issue 18 keeps one row per role in `solidq_leaders` (`name`, `process_id`,
//! `term`, `elected_at`); the maintenance leader's row is named `maintenance`. A build without
//! that table reads as "no election here": the live process with the lowest id stands in, and a
//! warning says so once. So the examples measure the same things before and after the election
//! lands; once `Store` reads the leader itself, this file goes.

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use solidq::{DbConnection, Store};

/// Where a [`Leader`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `maintenance` row of `solidq_leaders`.
    Table,
    /// No `solidq_leaders` in this build: the live process with the lowest id.
    LowestLiveId,
}

impl Source {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Table => "solidq_leaders",
            Source::LowestLiveId => "lowest_live_id",
        }
    }
}

/// The maintenance leader as last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    /// Its row in `solidq_processes`.
    pub process_id: i64,
    /// The election's term (`None` without the table).
    pub term: Option<i64>,
    /// Where this was read from.
    pub source: Source,
}

impl Leader {
    /// Whether this leader comes from a later election than `before`: another process, or the
    /// same one under a higher term (it lost the lock and won it again).
    pub fn replaces(&self, before: &Leader) -> bool {
        self.process_id != before.process_id || self.term > before.term
    }
}

#[derive(QueryableByName)]
struct LeaderRow {
    #[diesel(sql_type = BigInt)]
    process_id: i64,
    #[diesel(sql_type = BigInt)]
    term: i64,
}

/// Set once the missing table was reported, so a poll loop warns once, not every 5 ms.
static WARNED: AtomicBool = AtomicBool::new(false);

/// The current maintenance leader: the `maintenance` row of `solidq_leaders`, `None` when no
/// process was elected yet (the row still names a leader that died until the next election:
/// compare terms with [`Leader::replaces`]). Without the table, the live process with the
/// lowest id (see [`lowest_live`]).
pub fn current(conn: &mut DbConnection, store: &Store) -> Result<Option<Leader>, String> {
    let read = diesel::sql_query("SELECT process_id, term FROM solidq_leaders WHERE name = 'maintenance'")
        .load::<LeaderRow>(conn);
    match read {
        Ok(rows) => Ok(rows.first().map(|row| Leader {
            process_id: row.process_id,
            term: Some(row.term),
            source: Source::Table,
        })),
        Err(err) if no_table(&err) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: no solidq_leaders table in this build (no leader election yet): the live process \
                     with the lowest id stands in for the leader"
                );
            }
            lowest_live(store)
        }
        Err(err) => Err(format!("reading solidq_leaders: {err}")),
    }
}

/// Whether `err` says that `solidq_leaders` does not exist, in the words of each backend.
fn no_table(err: &diesel::result::Error) -> bool {
    let text = err.to_string().to_lowercase();
    text.contains("solidq_leaders")
        && (text.contains("does not exist") || text.contains("no such table") || text.contains("doesn't exist"))
}

/// The process row with the lowest id whose process lives: a row of this host whose pid is
/// gone is a dead process the watchdog has not reaped yet; rows of other hosts count as live
/// (this host cannot tell).
pub fn lowest_live(store: &Store) -> Result<Option<Leader>, String> {
    let host = hostname();
    let rows = store.processes().map_err(|err| format!("listing processes: {err}"))?;
    Ok(rows
        .iter()
        .filter(|row| row.hostname != host || pid_alive(row.pid))
        .map(|row| row.id)
        .min()
        .map(|process_id| Leader { process_id, term: None, source: Source::LowestLiveId }))
}

/// Whether a process with this pid exists on this host (a zombie counts: wait for children).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the pid exists.
    let answer = unsafe { libc::kill(pid as libc::pid_t, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This host's name, as the runtime writes it into its process row.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within it
    // or truncates, and we stop at the first NUL or the end.
    unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
