//! A SQLite database file, and the guard that keeps writes from vanishing with it.
//!
//! A process that has a SQLite file open goes on writing to it after the file was deleted or
//! replaced at its path: in WAL mode SQLite does not notice, the writes land in the unlinked
//! file and vanish when the process exits, although every commit succeeded. Every connection
//! solidq opens through a [`SqliteFile`] (the store's pools and the application's
//! [`app_pool`](super::app_pool)) is guarded against that:
//!
//! - its commits are refused once its file is no longer at its path: SQLite's commit hook asks
//!   the file system (`SQLITE_FCNTL_HAS_MOVED`, one `stat` per write transaction) and turns the
//!   commit into a rollback, whatever code issued it (diesel's `transaction`, a statement in
//!   autocommit, [`write_transaction`](super::write_transaction));
//! - solidq's own code asks first ([`moved`]) and refuses with an error naming the path;
//! - no new connection is opened once the path no longer names the file first opened there,
//!   so that a pool does not create an empty database in its place.
//!
//! Connections opened elsewhere (a `SqliteConnection` of the application's own) are left
//! alone.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use libsqlite3_sys as ffi;

use crate::store::error::{StoreError, StoreResult};

/// The SQL function that guarded connections have: the path of the connection's database
/// file when that file is no longer at its path, NULL otherwise.
const MOVED_FUNCTION: &CStr = c"solidq_database_moved";

thread_local! {
    /// Set around the opening of a connection that is to be guarded: the extension hook runs
    /// inside `sqlite3_open_v2`, on the opening thread.
    static GUARD_NEXT_OPEN: Cell<bool> = const { Cell::new(false) };
}

/// A SQLite database file: its path, and which file the path named when solidq first opened
/// it (device and inode). Clones share that.
#[derive(Debug, Clone)]
pub struct SqliteFile(Arc<FileState>);

#[derive(Debug)]
struct FileState {
    path: PathBuf,
    /// The path as SQLite takes it (UTF-8).
    location: String,
    /// Device and inode of the file when the first connection opened it.
    opened: OnceLock<(u64, u64)>,
    /// Why the file is gone, once that was seen: it never comes back.
    gone: Mutex<Option<String>>,
}

impl SqliteFile {
    /// The database file at `path`; an error names a path that is not UTF-8.
    pub fn new(path: &Path) -> Result<SqliteFile, String> {
        let location = path.to_str().ok_or_else(|| format!("path {} is not valid UTF-8", path.display()))?;
        Ok(SqliteFile(Arc::new(FileState {
            path: path.to_path_buf(),
            location: location.to_string(),
            opened: OnceLock::new(),
            gone: Mutex::new(None),
        })))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Opens a guarded connection (see the module documentation) with `pragmas`. The first
    /// one may create the file; later ones are refused once the path names another file or
    /// none, with the reason.
    pub(crate) fn open(&self, pragmas: &str) -> Result<SqliteConnection, String> {
        if self.0.opened.get().is_some() {
            self.check()?;
        }
        let mut conn = open_guarded(&self.0.location).map_err(|err| explain_open(&self.0.path, &err))?;
        conn.batch_execute(pragmas).map_err(|err| format!("setting up {}: {err}", self.0.path.display()))?;
        if let Ok(identity) = file_identity(&self.0.path) {
            let _ = self.0.opened.set(identity);
        }
        Ok(conn)
    }

    /// `Ok` while the path names the file first opened there; once it does not, the reason
    /// (deleted or replaced), now and on every later call.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut gone = self.0.gone.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(reason) = gone.as_ref() {
            return Err(reason.clone());
        }
        let Some(opened) = self.0.opened.get() else { return Ok(()) };
        match file_identity(&self.0.path) {
            Ok(now) if now == *opened => return Ok(()),
            _ => {}
        }
        let reason = moved_reason(&self.0.path);
        *gone = Some(reason.clone());
        Err(reason)
    }

    /// The reason of a failed [`SqliteFile::check`], without checking again.
    pub(crate) fn gone(&self) -> Option<String> {
        self.0.gone.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Why writes to the database at `path` are refused: it is no longer at its path.
pub(crate) fn moved_reason(path: &Path) -> String {
    let path_now = if path.exists() { "was replaced by another file" } else { "was deleted" };
    format!(
        "the SQLite database {} {path_now} while this process had it open; nothing more is written to it (what \
         would be written would vanish with the old file): restart the process to use the file now at that path",
        path.display()
    )
}

/// The reason writes on `conn` must be refused, if its database file is no longer at its
/// path. Connections that solidq did not open (no guard) are never refused.
pub(crate) fn moved(conn: &mut SqliteConnection) -> Option<String> {
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = Nullable<Text>)]
        path: Option<String>,
    }
    let query = format!("SELECT {}() AS path", MOVED_FUNCTION.to_str().unwrap_or_default());
    // An error means a connection without the guard (no such function).
    let path = diesel::sql_query(query).get_result::<Moved>(conn).ok()?.path?;
    Some(moved_reason(Path::new(&path)))
}

/// Refuses writes on `conn` with [`StoreError::DatabaseGone`] (naming the path) once its file
/// is no longer at its path.
pub(crate) fn refuse_writes_if_moved(conn: &mut SqliteConnection) -> StoreResult<()> {
    match moved(conn) {
        Some(reason) => Err(StoreError::DatabaseGone(reason)),
        None => Ok(()),
    }
}

/// Device and inode of the file at `path`.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Why SQLite could not open `path`, in words that name the file: SQLite says only "unable to
/// open database file", so ask the operating system the same question.
fn explain_open(path: &Path, err: &diesel::ConnectionError) -> String {
    let why = if path.is_dir() {
        "it is a directory".to_string()
    } else if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()) {
        format!("its directory {} does not exist", dir.display())
    } else {
        match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path) {
            Err(io) if matches!(io.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                format!("{io}: the limit of open files is reached, see ulimit -n")
            }
            Err(io) => io.to_string(),
            Ok(_) => "the operating system can open it, SQLite cannot".to_string(),
        }
    };
    format!("cannot open the SQLite database {}: {err} ({why})", path.display())
}

/// Opens a connection to `location` with the guard installed.
fn open_guarded(location: &str) -> ConnectionResult<SqliteConnection> {
    static REGISTER: Once = Once::new();
    // SAFETY: `guard_connection` has the signature SQLite expects of an extension entry point.
    REGISTER.call_once(|| unsafe {
        ffi::sqlite3_auto_extension(Some(guard_connection));
    });
    GUARD_NEXT_OPEN.with(|guard| guard.set(true));
    let conn = SqliteConnection::establish(location);
    GUARD_NEXT_OPEN.with(|guard| guard.set(false));
    conn
}

/// Runs inside `sqlite3_open_v2` for every connection of the process; guards those opened by
/// [`open_guarded`]. A non-zero return fails the open.
unsafe extern "C" fn guard_connection(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    if !GUARD_NEXT_OPEN.try_with(Cell::get).unwrap_or(false) {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `db` is the connection being opened; the hook and the function get it back
    // (the hook as its argument, the function from its context) while it is open.
    unsafe {
        ffi::sqlite3_commit_hook(db, Some(refuse_commit_if_moved), db.cast());
        ffi::sqlite3_create_function_v2(
            db,
            MOVED_FUNCTION.as_ptr(),
            0,
            ffi::SQLITE_UTF8,
            std::ptr::null_mut(),
            Some(moved_path),
            None,
            None,
            None,
        )
    }
}

/// Whether the main database file of `db` is no longer at its path (deleted or replaced).
///
/// # Safety
/// `db` is an open connection.
unsafe fn has_moved(db: *mut ffi::sqlite3) -> bool {
    let mut moved: c_int = 0;
    // SAFETY: HAS_MOVED writes one int through its argument.
    let rc = unsafe {
        ffi::sqlite3_file_control(db, c"main".as_ptr(), ffi::SQLITE_FCNTL_HAS_MOVED, (&mut moved as *mut c_int).cast())
    };
    rc == ffi::SQLITE_OK && moved != 0
}

/// The commit hook: non-zero turns the commit into a rollback.
unsafe extern "C" fn refuse_commit_if_moved(db: *mut c_void) -> c_int {
    // SAFETY: registered with its own connection as the argument.
    c_int::from(unsafe { has_moved(db.cast()) })
}

/// `solidq_database_moved()`: the file's path when it has moved, NULL otherwise.
unsafe extern "C" fn moved_path(ctx: *mut ffi::sqlite3_context, _argc: c_int, _argv: *mut *mut ffi::sqlite3_value) {
    // SAFETY: called by SQLite with a valid context of an open connection; the file name
    // lives as long as the connection and is copied (SQLITE_TRANSIENT).
    unsafe {
        let db = ffi::sqlite3_context_db_handle(ctx);
        if !has_moved(db) {
            ffi::sqlite3_result_null(ctx);
            return;
        }
        let name = ffi::sqlite3_db_filename(db, c"main".as_ptr());
        let name = if name.is_null() { c"".as_ptr() } else { name };
        ffi::sqlite3_result_text(ctx, name, -1, ffi::SQLITE_TRANSIENT());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_connection_refuses_commits_once_its_file_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guarded.sqlite3");
        let file = SqliteFile::new(&path).unwrap();
        let mut conn = file.open("PRAGMA journal_mode = WAL;").unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        assert_eq!(moved(&mut conn), None);
        assert!(file.check().is_ok());

        std::fs::remove_file(&path).unwrap();
        let reason = moved(&mut conn).expect("the deletion is seen");
        assert!(reason.contains(&path.display().to_string()) && reason.contains("was deleted"), "{reason}");
        assert!(diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut conn).is_err(), "autocommit refused");
        let in_transaction = conn.transaction(|conn| diesel::sql_query("INSERT INTO t VALUES (2)").execute(conn));
        assert!(in_transaction.is_err(), "COMMIT refused");
        assert!(file.check().unwrap_err().contains("was deleted"));
        let refused = file.open("").err().expect("no connection opened");
        assert!(refused.contains("was deleted"), "{refused}");
        assert!(!path.exists(), "no empty database created in its place");
    }

    #[test]
    fn connections_opened_elsewhere_are_not_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.sqlite3");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(moved(&mut conn), None);
        // In WAL mode SQLite itself writes on into the unlinked file: the loss this guards against.
        diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut conn).unwrap();
    }
}
