//! The fleet benchmark of issue 18: `cargo run --release --example fleet -- --processes N
//! --seconds S [--settle S] [--jobs J] [--sleep-ms MIN-MAX] [--sample-ms MS]`, or
//! `… --processes N --drain J` for the drain scenario.
//!
//! Against `SOLIDQ_DATABASE_URL` (PostgreSQL is the target; SQLite and MySQL report what they
//! can), it starts N fleet members: this binary again with `--member`, each a solidq `Runtime`
//! with the settings the user's environment gives (no `SOLIDQ_*` variable of its own), a
//! no-op job and a job that sleeps registered, running until TERM. Each member's output goes to
//! a log file of its own; the logs are kept, and their directory named, when a member fails.
//!
//! The fleet scenario:
//! 1. migrates; on PostgreSQL starts one member alone to count the connections an idle member
//!    holds (pool, session-lock and LISTEN connections, told apart by `pg_stat_activity` and
//!    `pg_locks`; each member connects with its own `PGAPPNAME`), and refuses, with the
//!    `ALTER SYSTEM SET max_connections = …` to run, when N members do not fit;
//! 2. starts N members, waits for their N process rows, lets start-up settle (`--settle`,
//!    default 10 s);
//! 3. idle window of `--seconds`: the server's transactions per second in this database
//!    (`pg_stat_database`, read in autocommit before and after, the parent's own transactions
//!    subtracted), the connections held (`pg_stat_activity`, the parent's own excluded), RSS and
//!    CPU per member (`/proc`), the CPU of the server backends that serve the members, and a
//!    breakdown of the members' statements from sampling `pg_stat_activity` every
//!    `--sample-ms` (default 50; 0 turns it off);
//! 4. load: a wave of `--jobs` sleep jobs (default 2,000, each 200–500 ms) enqueued in bulk;
//!    SIGKILL to the current maintenance leader once it holds claims, then the time until its
//!    claims are back (none held by it) and its row is gone, and, apart, until a new leader row
//!    (another process or a higher term) appears; a replacement member; a second wave, SIGKILL
//!    to the non-leader holding the most claims, its recovery measured the same way, and a
//!    replacement again; then every job must finish (none failed, discarded or left);
//! 5. TERM to every member (each must exit 0), human-readable lines and one JSON line.
//!
//! The drain scenario (`--drain J`): J no-op jobs enqueued in bulk, then N members started;
//! `drain_per_s` from their start to the last job finished (BENCHMARKS.md compares 1 and 4).
//!
//! The leader is read from `solidq_leaders` (see `support/leader.rs`); a build without that
//! table falls back to the live process with the lowest id, and says so.
//!
//! `pg_stat_database` counts every transaction in the database: give the run a database of its
//! own (the JSON's `other_connections` shows anyone else connected). Its counters reach the
//! view when each backend flushes them (at most once a second while busy, within 10 s when
//! idle): over a window of many seconds the lag is alike at both ends. But PostgreSQL 15 flushes
//! a backend's transaction counts only along with statistics of tables: a connection whose
//! transactions read no table (the session-lock connection's `SELECT 1`, the watchdog's
//! `pg_try_advisory_lock`) has them counted when it closes, not in the window. So
//! `server_transactions_per_s` is a lower bound, and the sampled statements (a new
//! `query_start` on a member's backend between two samples is one statement; two in one
//! interval count once) say what runs. Checked against `log_min_duration_statement = 0` with 10
//! idle members: the log showed 85.8 statements/s, sampling every 50 ms 70.8/s (it misses the
//! watchdog's process list, run just before its lock probe on the same connection), and
//! `pg_stat_database` 35.0 transactions/s.

#[path = "support/leader.rs"]
mod leader;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::PooledConnection;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use solidq::store::connection::{app_pool, AppPool, Manager};
use solidq::{Config, DatabaseUrl, EnqueueOptions, Job, JobState, NewJob, Runtime, Store};

type Error = Box<dyn std::error::Error>;

/// Does nothing: the drain scenario measures the queue, not the job.
#[derive(Serialize, Deserialize)]
struct Noop(u64);

impl Job for Noop {
    const KIND: &'static str = "fleet.noop";
}

/// Sleeps `ms` milliseconds on the member's event loop: a job that stays claimed for a while,
/// so that a killed member dies holding claims.
#[derive(Serialize, Deserialize)]
struct Nap {
    ms: u64,
}

impl Job for Nap {
    const KIND: &'static str = "fleet.sleep";
}

struct Args {
    processes: usize,
    seconds: u64,
    settle: u64,
    jobs: usize,
    sleep_ms: (u64, u64),
    sample_ms: u64,
    drain: Option<usize>,
    member: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        processes: 10,
        seconds: 30,
        settle: 10,
        jobs: 2000,
        sleep_ms: (200, 500),
        sample_ms: 50,
        drain: None,
        member: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |text: String| text.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--processes" => args.processes = number(value()?)? as usize,
            "--seconds" => args.seconds = number(value()?)?,
            "--settle" => args.settle = number(value()?)?,
            "--jobs" => args.jobs = number(value()?)? as usize,
            "--sample-ms" => args.sample_ms = number(value()?)?,
            "--drain" => args.drain = Some(number(value()?)? as usize),
            "--sleep-ms" => {
                let text = value()?;
                let (min, max) = text.split_once('-').ok_or(format!("--sleep-ms is MIN-MAX, not {text:?}"))?;
                args.sleep_ms = (number(min.to_string())?, number(max.to_string())?);
                if args.sleep_ms.0 > args.sleep_ms.1 {
                    return Err(format!("--sleep-ms: {min} is more than {max}"));
                }
            }
            "--member" => args.member = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --processes N --seconds S [--settle S] [--jobs J] \
                     [--sleep-ms MIN-MAX] [--sample-ms MS] or --processes N --drain J)"
                ))
            }
        }
    }
    if args.processes == 0 {
        return Err("--processes must be at least 1".into());
    }
    if args.drain.is_none() && args.processes < 2 {
        return Err("the fleet scenario kills the leader and a non-leader: --processes must be at least 2".into());
    }
    if args.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    Ok(args)
}

fn main() {
    let result = parse_args().map_err(Error::from).and_then(|args| if args.member { member() } else { parent(args) });
    if let Err(err) = result {
        eprintln!("fleet: {err}");
        std::process::exit(1);
    }
}

/// One fleet member: the runtime as the user's environment configures it, until TERM.
fn member() -> Result<(), Error> {
    Runtime::from_env()?
        .register_async::<Noop, _, _>(|_, _| async { Ok(()) })
        .register_async::<Nap, _, _>(|job, _| async move {
            actix_rt::time::sleep(Duration::from_millis(job.ms)).await;
            Ok(())
        })
        .run()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The members

/// One member process.
struct Member {
    index: usize,
    child: Child,
}

/// The running members, where their output goes, and the `application_name` each connects
/// with (so that the server's views tell members and the parent apart).
struct Fleet {
    members: Vec<Member>,
    next_index: usize,
    prefix: String,
    logs: Option<tempfile::TempDir>,
}

impl Fleet {
    fn new() -> Result<Fleet, Error> {
        let prefix = format!("solidq-fleet-{}", std::process::id());
        let logs = tempfile::Builder::new().prefix("solidq-fleet-logs-").tempdir()?;
        Ok(Fleet { members: Vec::new(), next_index: 0, prefix, logs: Some(logs) })
    }

    fn app_name(&self, index: usize) -> String {
        format!("{}-m{index}", self.prefix)
    }

    fn parent_app_name(&self) -> String {
        format!("{}-parent", self.prefix)
    }

    /// The member index an `application_name` belongs to.
    fn index_of(&self, app: &str) -> Option<usize> {
        app.strip_prefix(&self.prefix)?.strip_prefix("-m")?.parse().ok()
    }

    fn spawn(&mut self) -> Result<u32, Error> {
        let index = self.next_index;
        self.next_index += 1;
        let dir = self.logs.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_else(std::env::temp_dir);
        let log = File::create(dir.join(format!("member-{index}.log")))?;
        // PGAPPNAME is libpq's, not solidq's: the member's settings stay the user's.
        let child = Command::new(std::env::current_exe()?)
            .arg("--member")
            .env("PGAPPNAME", self.app_name(index))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        self.members.push(Member { index, child });
        Ok(pid)
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    fn index_of_pid(&self, pid: u32) -> Option<usize> {
        self.members.iter().find(|m| m.child.id() == pid).map(|m| m.index)
    }

    /// SIGKILL to the member `pid`; returns when it was sent, after reaping the child (so that
    /// its pid is gone, not a zombie).
    fn kill9(&mut self, pid: u32) -> Result<Instant, Error> {
        let at = self.members.iter().position(|m| m.child.id() == pid).ok_or(format!("no member with pid {pid}"))?;
        let mut member = self.members.swap_remove(at);
        signal(pid, libc::SIGKILL);
        let sent = Instant::now();
        member.child.wait()?;
        Ok(sent)
    }

    /// TERM to every member, then waits for all: (exit statuses by member index, time until
    /// the last exited).
    fn stop_all(&mut self) -> Result<(Vec<(usize, ExitStatus)>, Duration), Error> {
        let started = Instant::now();
        for m in &self.members {
            signal(m.child.id(), libc::SIGTERM);
        }
        let mut statuses = Vec::new();
        for mut m in self.members.drain(..) {
            statuses.push((m.index, m.child.wait()?));
        }
        Ok((statuses, started.elapsed()))
    }

    /// Keeps the members' logs (after a failure) and returns their directory.
    fn keep_logs(&mut self) -> Option<std::path::PathBuf> {
        self.logs.take().map(|dir| dir.keep())
    }
}

impl Drop for Fleet {
    /// The parent stopped early: members get TERM and 10 s to drain, then SIGKILL.
    fn drop(&mut self) {
        if self.members.is_empty() {
            return;
        }
        for m in &self.members {
            signal(m.child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for m in &mut self.members {
            while Instant::now() < deadline && matches!(m.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
        if let Some(dir) = self.keep_logs() {
            eprintln!("fleet: members' logs kept in {}", dir.display());
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child we spawned and a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's view of the database

/// The store (enqueue, process rows, jobs) and one connection held for the whole run for the
/// parent's own SQL, so that its statements can be counted and subtracted.
struct Db {
    store: Store,
    conn: PooledConnection<Manager>,
    _pool: AppPool,
    backend: &'static str,
    url: DatabaseUrl,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Db {
    fn open(url: &DatabaseUrl) -> Result<Db, Error> {
        let store = Store::connect(url, 2)?;
        store.migrate()?;
        let pool = app_pool(url, 1)?;
        let conn = pool.get()?;
        Ok(Db { backend: store.backend(), store, conn, _pool: pool, url: url.clone() })
    }

    fn postgres(&self) -> bool {
        matches!(self.url, DatabaseUrl::Postgres(_))
    }

    fn count(&mut self, sql: &str) -> Result<i64, Error> {
        let row: Count = diesel::sql_query(sql).get_result(&mut *self.conn)?;
        Ok(row.n)
    }

    fn claims_of(&mut self, process: i64) -> Result<i64, Error> {
        self.count(&format!("SELECT count(*) AS n FROM solidq_claimed_executions WHERE process_id = {process}"))
    }

    fn row_exists(&mut self, process: i64) -> Result<bool, Error> {
        Ok(self.count(&format!("SELECT count(*) AS n FROM solidq_processes WHERE id = {process}"))? > 0)
    }

    /// Whether any job is still ready or claimed. Polled every few milliseconds during a drain:
    /// it reads one row of each table, where counting 100,000 ready rows would cost the server
    /// a good share of what the drain measures.
    fn jobs_left(&mut self) -> Result<bool, Error> {
        let n = self.count(
            "SELECT (SELECT count(*) FROM (SELECT job_id FROM solidq_ready_executions LIMIT 1) AS r) \
             + (SELECT count(*) FROM (SELECT job_id FROM solidq_claimed_executions LIMIT 1) AS c) AS n",
        )?;
        Ok(n > 0)
    }

    /// Claims per process, most first.
    fn claims_by_process(&mut self) -> Result<Vec<(i64, i64)>, Error> {
        #[derive(QueryableByName)]
        struct Held {
            #[diesel(sql_type = BigInt)]
            process_id: i64,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<Held> = diesel::sql_query(
            "SELECT process_id, count(*) AS n FROM solidq_claimed_executions GROUP BY process_id ORDER BY n DESC",
        )
        .load(&mut *self.conn)?;
        Ok(rows.into_iter().map(|r| (r.process_id, r.n)).collect())
    }

    fn leader(&mut self) -> Result<Option<leader::Leader>, Error> {
        Ok(leader::current(&mut self.conn, &self.store)?)
    }

    /// Process ids of the members registered now, by OS pid.
    fn registered(&self, fleet: &Fleet) -> Result<HashMap<u32, i64>, Error> {
        let pids = fleet.pids();
        Ok(self
            .store
            .processes()?
            .into_iter()
            .filter(|row| pids.contains(&(row.pid as u32)))
            .map(|row| (row.pid as u32, row.id))
            .collect())
    }

    /// Waits until every member has its process row.
    fn wait_registered(&self, fleet: &Fleet, timeout: Duration) -> Result<HashMap<u32, i64>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.registered(fleet)?;
            if rows.len() == fleet.members.len() {
                return Ok(rows);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {} members registered within {} s",
                    rows.len(),
                    fleet.members.len(),
                    timeout.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL's views

/// A client connection to this database, as `pg_stat_activity` shows it.
#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    app: String,
    #[diesel(sql_type = Nullable<Text>)]
    query_start: Option<String>,
    #[diesel(sql_type = Text)]
    query: String,
    /// The second keys (`objid`) of the advisory locks it holds, comma-separated.
    #[diesel(sql_type = Text)]
    advisory: String,
}

/// Every client connection to this database but the one asking; with the advisory locks each
/// holds when `locks` (a join on `pg_locks`, which the sampling loop does without).
fn backends(db: &mut Db, locks: bool) -> Result<Vec<Backend>, Error> {
    let advisory = if locks {
        "coalesce((SELECT string_agg(l.objid::text, ',') FROM pg_locks l \
         WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted), '')"
    } else {
        "''"
    };
    let sql = format!(
        "SELECT a.pid, coalesce(a.application_name, '') AS app, a.query_start::text AS query_start, \
         coalesce(a.query, '') AS query, {advisory} AS advisory FROM pg_stat_activity a \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'"
    );
    Ok(diesel::sql_query(sql).load(&mut *db.conn)?)
}

/// What a member's connection is for.
#[derive(Default, Clone, Copy, Serialize, Debug)]
struct Roles {
    /// Connections of the store's pool.
    pool: usize,
    /// The connection holding the process's session lock (advisory lock on its process id).
    session_lock: usize,
    /// The LISTEN connection for ready jobs.
    listen: usize,
    /// A connection holding another advisory lock (the leader lock, once there is one).
    other_lock: usize,
}

impl Roles {
    fn total(&self) -> usize {
        self.pool + self.session_lock + self.listen + self.other_lock
    }

    fn add(&mut self, backend: &Backend, process_id: Option<i64>) {
        let locks: Vec<i64> = backend.advisory.split(',').filter_map(|key| key.parse().ok()).collect();
        // The session lock's second key is the process id as int4, shown as an oid.
        let session_key = process_id.map(|id| i64::from(id as i32 as u32));
        if session_key.is_some_and(|key| locks.contains(&key)) {
            self.session_lock += 1;
        } else if !locks.is_empty() {
            self.other_lock += 1;
        } else if backend.query.trim_start().to_ascii_uppercase().starts_with("LISTEN") {
            self.listen += 1;
        } else {
            self.pool += 1;
        }
    }
}

/// The members' connections, by member index, told apart by role.
fn member_connections(
    db: &mut Db,
    fleet: &Fleet,
    process_of_index: &HashMap<usize, i64>,
) -> Result<(BTreeMap<usize, Roles>, Connections), Error> {
    let parent = fleet.parent_app_name();
    let mut by_member: BTreeMap<usize, Roles> = BTreeMap::new();
    let mut held = Connections { backend_pids: Vec::new(), members: 0, parent: 1, others: 0 };
    for backend in backends(db, true)? {
        if let Some(index) = fleet.index_of(&backend.app) {
            by_member.entry(index).or_default().add(&backend, process_of_index.get(&index).copied());
            held.members += 1;
            held.backend_pids.push(backend.pid);
        } else if backend.app == parent {
            held.parent += 1;
        } else {
            held.others += 1;
        }
    }
    Ok((by_member, held))
}

/// Connections to this database by whom they serve (the parent's counts the one asking).
struct Connections {
    backend_pids: Vec<i32>,
    members: usize,
    parent: usize,
    others: usize,
}

#[derive(QueryableByName)]
struct Capacity {
    /// The server's major version, for the restart command.
    #[diesel(sql_type = BigInt)]
    major: i64,
    #[diesel(sql_type = BigInt)]
    max: i64,
    #[diesel(sql_type = BigInt)]
    reserved: i64,
    #[diesel(sql_type = BigInt)]
    used: i64,
}

fn capacity(db: &mut Db) -> Result<Capacity, Error> {
    Ok(diesel::sql_query(
        "SELECT current_setting('server_version_num')::int8 / 10000 AS major, \
         current_setting('max_connections')::int8 AS max, \
         current_setting('superuser_reserved_connections')::int8 AS reserved, \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used",
    )
    .get_result(&mut *db.conn)?)
}

/// Transactions committed and rolled back in this database so far, read in a transaction of
/// its own (autocommit) so that the statistics snapshot is fresh.
fn server_transactions(db: &mut Db) -> Result<i64, Error> {
    db.count("SELECT (xact_commit + xact_rollback)::int8 AS n FROM pg_stat_database WHERE datname = current_database()")
}

/// One member alone, settled: what an idle member holds. It is stopped again before the fleet
/// starts.
struct Probe {
    roles: Roles,
    rss_mb: f64,
}

const PROBE_SETTLE: Duration = Duration::from_secs(3);

fn probe(db: &mut Db, fleet: &mut Fleet) -> Result<Probe, Error> {
    let pid = fleet.spawn()?;
    let index = fleet.index_of_pid(pid).ok_or("the probe member vanished")?;
    let rows = db.wait_registered(fleet, Duration::from_secs(60))?;
    std::thread::sleep(PROBE_SETTLE);
    let process_of_index: HashMap<usize, i64> = rows.get(&pid).map(|id| (index, *id)).into_iter().collect();
    let (by_member, _) = member_connections(db, fleet, &process_of_index)?;
    let roles = by_member.get(&index).copied().unwrap_or_default();
    let rss_mb = proc_rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let (statuses, _) = fleet.stop_all()?;
    check_exits(&statuses, fleet)?;
    // Its server backends end a moment after it exits: wait, so that they are not counted as in
    // use by others.
    let app = fleet.app_name(index);
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends(db, false)?.iter().any(|b| b.app == app) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Probe { roles, rss_mb })
}

/// Refuses when N members, as the probe counted them, do not fit in the server's connections.
fn check_capacity(db: &mut Db, probe: &Probe, processes: usize, config: &Config) -> Result<Value, Error> {
    let cap = capacity(db)?;
    let per_member = probe.roles.total() as i64;
    // One member's worth more: a replacement starts while a killed member's backends may not
    // have ended yet.
    let needed = per_member * (processes as i64 + 1);
    let available = cap.max - cap.reserved - cap.used;
    // Under load a pool may open up to SOLIDQ_POOL_SIZE connections: the worst case.
    let non_pool = per_member - probe.roles.pool as i64;
    let peak_per_member = non_pool + i64::from(config.pool_size);
    let round_up = |n: i64| (n + 49) / 50 * 50;
    let report = json!({
        "max_connections": cap.max,
        "superuser_reserved": cap.reserved,
        "in_use_before": cap.used,
        "needed_idle": needed,
        "peak_bound_per_member": peak_per_member,
    });
    if needed > available {
        let suggested = round_up(cap.used + cap.reserved + needed);
        return Err(format!(
            "PostgreSQL allows {} connections ({} reserved for superusers, {} in use now): {} members holding {} \
             each when idle ({} pool, {} session lock, {} LISTEN{}) plus one replacement need {needed}, and {available} \
             are free.\nRaise the limit, then restart PostgreSQL (max_connections is read only at server start):\n  \
             psql -c \"ALTER SYSTEM SET max_connections = {suggested}\"\n  pg_ctlcluster {} main restart   \
             (Debian's cluster `main`; or your service manager's restart)\nUnder load each member's pool may grow to SOLIDQ_POOL_SIZE ({}): \
             {} would cover that worst case.",
            cap.max,
            cap.reserved,
            cap.used,
            processes,
            per_member,
            probe.roles.pool,
            probe.roles.session_lock,
            probe.roles.listen,
            if probe.roles.other_lock > 0 { format!(", {} other lock", probe.roles.other_lock) } else { String::new() },
            cap.major,
            config.pool_size,
            round_up(cap.used + cap.reserved + peak_per_member * (processes as i64 + 1)),
        )
        .into());
    }
    if peak_per_member * (processes as i64 + 1) > available {
        eprintln!(
            "fleet: warning: {processes} members fit at {per_member} connections each, but not if every pool grows to \
             SOLIDQ_POOL_SIZE ({}) under load ({available} free)",
            config.pool_size
        );
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// /proc

fn proc_stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces): field 3 onwards.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// CPU time used so far (user + system), in milliseconds.
fn proc_cpu_ms(pid: u32) -> Option<f64> {
    let fields = proc_stat_fields(pid)?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15: 12th and 13th after the command name.
    Some((fields.get(11)? + fields.get(12)?) as f64 * 1000.0 / ticks)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is a PostgreSQL server process of this host (so its CPU is the server's).
fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
}

/// How many of a member's open files are the SQLite database file: one per connection.
fn sqlite_connections(pid: u32, path: &std::path::Path) -> Option<usize> {
    let path = std::fs::canonicalize(path).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).filter(|target| *target == path).count())
}

/// Mean and max, rounded to one decimal.
fn mean_max(values: &[f64]) -> Value {
    if values.is_empty() {
        return json!({"mean": null, "max": null});
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    json!({"mean": round1(mean), "max": round1(max)})
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// The parent

fn parent(args: Args) -> Result<(), Error> {
    let mut fleet = Fleet::new()?;
    // Before any connection: the parent's own are told apart from the members' by this name.
    std::env::set_var("PGAPPNAME", fleet.parent_app_name());
    let config = Config::from_env()?;
    if let DatabaseUrl::Postgres(url) = &config.database_url {
        if url.contains("application_name") {
            eprintln!(
                "fleet: warning: the URL sets application_name, which overrides PGAPPNAME: members' connections cannot \
                 be told apart from the parent's"
            );
        }
    }
    let mut db = Db::open(&config.database_url)?;
    eprintln!("fleet: {} at {}", db.backend, describe(&config.database_url));

    let mut capacity_report = Value::Null;
    let mut probe_report = Value::Null;
    if db.postgres() {
        let probe = probe(&mut db, &mut fleet)?;
        eprintln!(
            "fleet: an idle member holds {} connections ({} pool, {} session lock, {} LISTEN, {} other lock), RSS {:.1} MB",
            probe.roles.total(),
            probe.roles.pool,
            probe.roles.session_lock,
            probe.roles.listen,
            probe.roles.other_lock,
            probe.rss_mb
        );
        probe_report =
            json!({"connections": probe.roles.total(), "by_role": probe.roles, "rss_mb": round1(probe.rss_mb)});
        capacity_report = check_capacity(&mut db, &probe, args.processes, &config)?;
    }

    let result = match args.drain {
        Some(jobs) => drain(&mut db, &mut fleet, &args, jobs),
        None => fleet_scenario(&mut db, &mut fleet, &args),
    };
    let mut line = match result {
        Ok(line) => line,
        Err(err) => {
            if let Some(dir) = fleet.keep_logs() {
                eprintln!("fleet: members' logs kept in {}", dir.display());
            }
            return Err(err);
        }
    };
    line["backend"] = json!(db.backend);
    line["probe"] = probe_report;
    line["capacity"] = capacity_report;
    println!("{line}");
    if line["ok"] == json!(false) {
        if let Some(dir) = fleet.keep_logs() {
            eprintln!("fleet: members' logs kept in {}", dir.display());
        }
        return Err("the run found a problem (see above)".into());
    }
    Ok(())
}

/// The URL without credentials, for the log.
fn describe(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => path.display().to_string(),
        DatabaseUrl::Postgres(url) | DatabaseUrl::Mysql(url) => match url.split_once('@') {
            Some((scheme_user, rest)) => format!("{}//…@{rest}", scheme_user.split("//").next().unwrap_or("")),
            None => url.clone(),
        },
    }
}

fn check_exits(statuses: &[(usize, ExitStatus)], fleet: &mut Fleet) -> Result<(), Error> {
    let failed: Vec<String> =
        statuses.iter().filter(|(_, s)| !s.success()).map(|(i, s)| format!("member {i}: {s}")).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let logs = fleet.keep_logs().map(|d| d.display().to_string()).unwrap_or_default();
    Err(format!("members did not exit 0 after TERM: {} (logs in {logs})", failed.join(", ")).into())
}

/// `count` sleep jobs of `range` milliseconds, enqueued in bulk (1,000 per statement).
fn enqueue_naps(db: &Db, count: usize, range: (u64, u64)) -> Result<Vec<i64>, Error> {
    let jobs: Vec<NewJob> = (0..count)
        .map(|_| NewJob::from_job(&Nap { ms: fastrand::u64(range.0..=range.1) }, EnqueueOptions::new()))
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(count);
    for chunk in jobs.chunks(1000) {
        ids.extend(db.store.enqueue(chunk, chrono::Utc::now().naive_utc())?);
    }
    Ok(ids)
}

/// What the idle window measured.
struct Idle {
    json: Value,
    lines: Vec<String>,
}

fn idle_window(db: &mut Db, fleet: &Fleet, process_of_index: &HashMap<usize, i64>, args: &Args) -> Result<Idle, Error> {
    let window = Duration::from_secs(args.seconds);
    let pids = fleet.pids();
    let pg = db.postgres();
    let mut lines = Vec::new();

    // The parent's statements on its connection from the first read on; each is a transaction
    // of its own in this database, and is subtracted.
    let mut parent_transactions = 0i64;
    let mut backend_pids: Vec<u32> = Vec::new();
    let before = if pg {
        let before = server_transactions(db)?;
        parent_transactions += 1;
        backend_pids = member_connections(db, fleet, process_of_index)?
            .1
            .backend_pids
            .iter()
            .map(|p| *p as u32)
            .filter(|p| is_postgres(*p))
            .collect();
        parent_transactions += 1;
        Some(before)
    } else {
        None
    };
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| proc_cpu_ms(*p)).collect();
    let server_cpu_before: f64 = backend_pids.iter().filter_map(|p| proc_cpu_ms(*p)).sum();
    let started = Instant::now();

    // Sampling pg_stat_activity: a new query_start on a member's backend is a statement it ran
    // (a burst between two samples shows as its last statement only).
    let mut last_start: HashMap<i32, String> = HashMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = 0usize;
    while started.elapsed() < window {
        if pg && args.sample_ms > 0 {
            for b in backends(db, false)? {
                if fleet.index_of(&b.app).is_none() {
                    continue;
                }
                if let Some(start) = b.query_start {
                    if last_start.insert(b.pid, start.clone()).is_some_and(|old| old != start) {
                        *seen.entry(statement_shape(&b.query)).or_default() += 1;
                    }
                }
            }
            samples += 1;
            parent_transactions += 1;
            let left = window.saturating_sub(started.elapsed());
            std::thread::sleep(Duration::from_millis(args.sample_ms).min(left));
        } else {
            std::thread::sleep(window.saturating_sub(started.elapsed()));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .filter_map(|(p, before)| Some((proc_cpu_ms(*p)? - (*before)?) / elapsed))
        .collect();
    let server_cpu_after: f64 = backend_pids.iter().filter_map(|p| proc_cpu_ms(*p)).sum();
    let rss: Vec<f64> = pids.iter().filter_map(|p| proc_rss_kb(*p)).map(|kb| kb as f64 / 1024.0).collect();

    let mut json = json!({
        "window_s": round1(elapsed),
        "rss_mb": mean_max(&rss),
        "cpu_ms_per_s": mean_max(&cpu),
        "cpu_ms_per_s_all_members": round1(cpu.iter().sum::<f64>()),
    });
    lines.push(format!(
        "idle: RSS per member mean {} MB, max {} MB; CPU per member mean {} ms/s, max {} ms/s ({} ms/s for all {})",
        json["rss_mb"]["mean"],
        json["rss_mb"]["max"],
        json["cpu_ms_per_s"]["mean"],
        json["cpu_ms_per_s"]["max"],
        json["cpu_ms_per_s_all_members"],
        pids.len()
    ));

    match &db.url {
        DatabaseUrl::Postgres(_) => {
            let (by_member, held) = member_connections(db, fleet, process_of_index)?;
            parent_transactions += 1;
            // The parent's pending statistics reach the view before the last read.
            diesel::sql_query("SELECT pg_stat_force_next_flush()").execute(&mut *db.conn)?;
            parent_transactions += 1;
            let after = server_transactions(db)?;
            let fleet_transactions = after - before.unwrap_or(after) - parent_transactions;
            let per_s = fleet_transactions as f64 / elapsed;
            let mut roles = Roles::default();
            let per_member: Vec<f64> = by_member.values().map(|r| r.total() as f64).collect();
            for r in by_member.values() {
                roles.pool += r.pool;
                roles.session_lock += r.session_lock;
                roles.listen += r.listen;
                roles.other_lock += r.other_lock;
            }
            let mut statements: Vec<(String, usize)> = seen.into_iter().collect();
            statements.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            let sampled_total: usize = statements.iter().map(|(_, n)| n).sum();
            let top: Vec<Value> = statements
                .iter()
                .take(10)
                .map(|(shape, n)| json!({"statement": shape, "per_s": round1(*n as f64 / elapsed)}))
                .collect();
            json["server_transactions_per_s"] = json!(round1(per_s));
            json["server_transactions_per_s_per_member"] = json!((per_s / pids.len() as f64 * 100.0).round() / 100.0);
            json["parent_transactions_subtracted"] = json!(parent_transactions);
            json["connections_held"] = json!(held.members + held.others);
            json["member_connections"] = json!(held.members);
            json["other_connections"] = json!(held.others);
            json["parent_connections"] = json!(held.parent);
            json["connections_per_member"] = mean_max(&per_member);
            json["connections_by_role"] = json!(roles);
            json["server_backend_cpu_ms_per_s"] = json!(round1((server_cpu_after - server_cpu_before) / elapsed));
            json["sampled_statements_per_s"] = json!(round1(sampled_total as f64 / elapsed));
            json["sample_ms"] = json!(args.sample_ms);
            json["samples"] = json!(samples);
            json["sampled_top"] = json!(top);
            lines.push(format!(
                "idle: server transactions {:.1}/s in this database ({:.2}/s per member, {} of the parent's subtracted; \
                 a lower bound: transactions reading no table are counted when their connection closes)",
                per_s,
                per_s / pids.len() as f64,
                parent_transactions
            ));
            lines.push(format!(
                "idle: connections held {} ({} by members: {} pool, {} session lock, {} LISTEN, {} other lock; {} by \
                 others), per member mean {} max {}",
                held.members + held.others,
                held.members,
                roles.pool,
                roles.session_lock,
                roles.listen,
                roles.other_lock,
                held.others,
                json["connections_per_member"]["mean"],
                json["connections_per_member"]["max"]
            ));
            lines.push(format!(
                "idle: CPU of the members' server backends {} ms/s",
                json["server_backend_cpu_ms_per_s"]
            ));
            if args.sample_ms > 0 {
                lines.push(format!(
                    "idle: sampled statements {:.1}/s (every {} ms, a lower bound), most seen:",
                    sampled_total as f64 / elapsed,
                    args.sample_ms
                ));
                for (shape, n) in statements.iter().take(10) {
                    lines.push(format!("  {:>7.2}/s  {shape}", *n as f64 / elapsed));
                }
            }
        }
        DatabaseUrl::Sqlite(path) => {
            let per_member: Vec<f64> =
                pids.iter().filter_map(|p| sqlite_connections(*p, path)).map(|n| n as f64).collect();
            json["connections_per_member"] = mean_max(&per_member);
            json["not_measured"] = json!(
                "server transactions and server connections: SQLite has no server; connections_per_member \
                       counts each member's open handles on the database file"
            );
            lines.push(format!(
                "idle: SQLite handles on the database file per member mean {} max {}; no server to count transactions",
                json["connections_per_member"]["mean"], json["connections_per_member"]["max"]
            ));
        }
        DatabaseUrl::Mysql(_) => {
            json["not_measured"] = json!(
                "server transactions and connections: MySQL has no per-database transaction counters, and its \
                 process list does not tell members apart"
            );
            lines.push("idle: server transactions and connections not measured on MySQL".into());
        }
    }
    Ok(Idle { json, lines })
}

/// A statement's text in one line, at most 90 characters: what the breakdown groups by.
fn statement_shape(query: &str) -> String {
    let one_line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 90 {
        format!("{}…", one_line.chars().take(90).collect::<String>())
    } else {
        one_line
    }
}

/// How one killed member's work came back.
struct Recovery {
    claims_held: i64,
    /// Until no claim was held by it any more.
    claims_back: Option<Duration>,
    /// Until its process row was gone.
    row_gone: Option<Duration>,
    /// Until a leader from a later election was seen (for the leader's kill), or when the
    /// leader changed at all (for another member's).
    new_leader: Option<Duration>,
    leader_after: Option<leader::Leader>,
}

impl Recovery {
    fn json(&self, leader_before: Option<leader::Leader>) -> Value {
        let opt_ms = |d: Option<Duration>| d.map(ms);
        json!({
            "claims_held": self.claims_held,
            "claims_back_ms": opt_ms(self.claims_back),
            "row_gone_ms": opt_ms(self.row_gone),
            "recovery_ms": self.claims_back.zip(self.row_gone).map(|(a, b)| ms(a.max(b))),
            "new_leader_ms": opt_ms(self.new_leader),
            "leader_before": leader_before.map(|l| json!({"process_id": l.process_id, "term": l.term})),
            "leader_after": self.leader_after.map(|l| json!({"process_id": l.process_id, "term": l.term})),
        })
    }
}

/// How long recovery may take before the run calls it a failure.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);

/// SIGKILL to `pid` (process row `process`), then watches until its claims are back, its row
/// is gone and (when `leader_before` is the victim) a new leader is seen; for a non-leader
/// victim it only notes whether the leader changed meanwhile.
fn kill_and_watch(
    db: &mut Db,
    fleet: &mut Fleet,
    pid: u32,
    process: i64,
    leader_before: Option<leader::Leader>,
) -> Result<Recovery, Error> {
    let claims_held = db.claims_of(process)?;
    let victim_leads = leader_before.is_some_and(|l| l.process_id == process);
    let sent = fleet.kill9(pid)?;
    let mut r = Recovery { claims_held, claims_back: None, row_gone: None, new_leader: None, leader_after: None };
    loop {
        let now = sent.elapsed();
        if r.claims_back.is_none() && db.claims_of(process)? == 0 {
            r.claims_back = Some(now);
        }
        if r.row_gone.is_none() && !db.row_exists(process)? {
            r.row_gone = Some(now);
        }
        if r.new_leader.is_none() {
            let current = db.leader()?;
            let changed = match (current, leader_before) {
                (Some(seen), Some(before)) => seen.replaces(&before),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if changed {
                r.new_leader = Some(now);
                r.leader_after = current;
            }
        }
        let done = r.claims_back.is_some() && r.row_gone.is_some() && (!victim_leads || r.new_leader.is_some());
        if done {
            break;
        }
        if now > RECOVERY_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !victim_leads && r.leader_after.is_none() {
        r.leader_after = db.leader()?;
    }
    Ok(r)
}

/// Enqueues waves of sleep jobs until `target` (a process id, or any non-leader when `None`)
/// holds claims, at most five waves; returns the ids enqueued and the victim (OS pid, process
/// id) holding the most claims.
fn feed_until_claimed(
    db: &mut Db,
    fleet: &Fleet,
    args: &Args,
    target: Option<i64>,
    leader: Option<i64>,
    ids: &mut Vec<i64>,
) -> Result<(u32, i64), Error> {
    for wave in 0..5 {
        ids.extend(enqueue_naps(db, args.jobs, args.sleep_ms)?);
        let rows = db.registered(fleet)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = db.claims_by_process()?;
            let pick = held.iter().find(|(process, n)| {
                *n > 0
                    && match target {
                        Some(t) => *process == t,
                        None => Some(*process) != leader && rows.values().any(|id| id == process),
                    }
            });
            if let Some((process, _)) = pick {
                let pid = rows.iter().find(|(_, id)| *id == process).map(|(pid, _)| *pid);
                if let Some(pid) = pid {
                    return Ok((pid, *process));
                }
            }
            if Instant::now() > deadline || (held.is_empty() && !db.jobs_left()?) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        eprintln!("fleet: wave {} ended before the chosen victim held claims; another wave", wave + 1);
    }
    Err("the victim never held claims in five waves of jobs".into())
}

fn fleet_scenario(db: &mut Db, fleet: &mut Fleet, args: &Args) -> Result<Value, Error> {
    let n = args.processes;
    let mut lines = Vec::new();
    let started = Instant::now();
    for _ in 0..n {
        fleet.spawn()?;
    }
    let rows = db.wait_registered(fleet, Duration::from_secs(300))?;
    let registered_ms = ms(started.elapsed());
    eprintln!("fleet: {n} members registered in {registered_ms} ms; settling {} s", args.settle);
    lines.push(format!("start: {n} members registered in {registered_ms} ms"));
    std::thread::sleep(Duration::from_secs(args.settle));

    let process_of_index: HashMap<usize, i64> =
        rows.iter().filter_map(|(pid, id)| Some((fleet.index_of_pid(*pid)?, *id))).collect();
    eprintln!("fleet: idle window of {} s", args.seconds);
    let idle = idle_window(db, fleet, &process_of_index, args)?;
    lines.extend(idle.lines);

    // Load: the leader first.
    eprintln!("fleet: load; waiting for a leader");
    let deadline = Instant::now() + Duration::from_secs(120);
    let leader_before = loop {
        let rows = db.registered(fleet)?;
        match db.leader()? {
            Some(l) if rows.values().any(|id| *id == l.process_id) => break l,
            _ if Instant::now() > deadline => return Err("no member was elected leader within 120 s".into()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let load_started = Instant::now();
    let mut ids = Vec::new();
    let (pid, process) = feed_until_claimed(db, fleet, args, Some(leader_before.process_id), None, &mut ids)?;
    eprintln!("fleet: SIGKILL to the leader (process {process}, pid {pid})");
    let leader_kill = kill_and_watch(db, fleet, pid, process, Some(leader_before))?;
    lines.push(format!(
        "leader kill: held {} claims; claims back in {} ms, row gone in {} ms; new leader (source {}) in {} ms: {:?} -> {:?}",
        leader_kill.claims_held,
        show(leader_kill.claims_back),
        show(leader_kill.row_gone),
        leader_before.source.name(),
        show(leader_kill.new_leader),
        (leader_before.process_id, leader_before.term),
        leader_kill.leader_after.map(|l| (l.process_id, l.term)),
    ));
    let mut ok =
        leader_kill.claims_back.is_some() && leader_kill.row_gone.is_some() && leader_kill.new_leader.is_some();

    // A replacement, then a non-leader.
    let replaced_at = Instant::now();
    fleet.spawn()?;
    db.wait_registered(fleet, Duration::from_secs(120))?;
    let replacement_ms = ms(replaced_at.elapsed());
    let leader_now = db.leader()?;
    let (pid, process) = feed_until_claimed(db, fleet, args, None, leader_now.map(|l| l.process_id), &mut ids)?;
    eprintln!("fleet: SIGKILL to a non-leader (process {process}, pid {pid})");
    let member_kill = kill_and_watch(db, fleet, pid, process, leader_now)?;
    lines.push(format!(
        "member kill: held {} claims; claims back in {} ms, row gone in {} ms; leader {}",
        member_kill.claims_held,
        show(member_kill.claims_back),
        show(member_kill.row_gone),
        if member_kill.new_leader.is_some() { "changed meanwhile" } else { "unchanged" },
    ));
    ok &= member_kill.claims_back.is_some() && member_kill.row_gone.is_some();
    // Back to N members, so that the stop below is the whole fleet's.
    fleet.spawn()?;
    db.wait_registered(fleet, Duration::from_secs(120))?;

    // Every job must end, finished.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (counts, _) = db.store.counts()?;
        if counts.ready + counts.claimed + counts.scheduled + counts.blocked == 0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("fleet: jobs did not all end within 600 s: {counts:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let load_s = load_started.elapsed().as_secs_f64();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let state = db.store.job(*id)?.and_then(|j| j.state);
        *states.entry(state.map_or("missing".into(), |s| format!("{s:?}").to_lowercase())).or_default() += 1;
    }
    let finished = states.get(&format!("{:?}", JobState::Finished).to_lowercase()).copied().unwrap_or(0);
    let lost = ids.len() - finished;
    ok &= lost == 0;
    lines.push(format!(
        "load: {} jobs enqueued, {finished} finished, {lost} not finished {:?}, in {:.1} s",
        ids.len(),
        states,
        load_s
    ));

    // Connections after the load: pools that grew keep their connections for a while.
    let after_load = if db.postgres() {
        let rows = db.registered(fleet)?;
        let process_of_index: HashMap<usize, i64> =
            rows.iter().filter_map(|(pid, id)| Some((fleet.index_of_pid(*pid)?, *id))).collect();
        let (by_member, held) = member_connections(db, fleet, &process_of_index)?;
        let per_member: Vec<f64> = by_member.values().map(|r| r.total() as f64).collect();
        lines.push(format!(
            "after load: members hold {} connections, per member mean {} max {}",
            held.members,
            mean_max(&per_member)["mean"],
            mean_max(&per_member)["max"]
        ));
        json!({"member_connections": held.members, "connections_per_member": mean_max(&per_member)})
    } else {
        Value::Null
    };

    eprintln!("fleet: TERM to every member");
    let members = fleet.members.len();
    let (statuses, stop_took) = fleet.stop_all()?;
    let exited_0 = statuses.iter().filter(|(_, s)| s.success()).count();
    ok &= exited_0 == members;
    lines.push(format!(
        "stop: {exited_0} of {members} members exited 0 after TERM, the last after {} ms",
        ms(stop_took)
    ));
    for line in &lines {
        println!("{line}");
    }
    if exited_0 != members {
        eprintln!("fleet: members failed to exit 0: {statuses:?}");
    }
    Ok(json!({
        "scenario": "fleet",
        "ok": ok,
        "processes": n,
        "registered_ms": registered_ms,
        "settle_s": args.settle,
        "leader_source": leader_before.source.name(),
        "idle": idle.json,
        "load": {
            "wave_jobs": args.jobs,
            "sleep_ms": [args.sleep_ms.0, args.sleep_ms.1],
            "jobs": ids.len(),
            "finished": finished,
            "lost": lost,
            "states": states,
            "load_s": round1(load_s),
            "leader_kill": leader_kill.json(Some(leader_before)),
            "replacement_registered_ms": replacement_ms,
            "member_kill": member_kill.json(leader_now),
            "leader_changed_on_member_kill": member_kill.new_leader.is_some(),
            "after_load": after_load,
        },
        "stop": {"members": members, "exited_0": exited_0, "last_exit_ms": ms(stop_took)},
    }))
}

fn show(d: Option<Duration>) -> String {
    d.map_or_else(|| format!("> {}", RECOVERY_LIMIT.as_millis()), |d| d.as_millis().to_string())
}

/// The drain: `jobs` no-op jobs first, then N members; from their start to the last finish.
fn drain(db: &mut Db, fleet: &mut Fleet, args: &Args, jobs: usize) -> Result<Value, Error> {
    let (before, _) = db.store.counts()?;
    let seeded_at = Instant::now();
    let mut next = 0;
    while next < jobs {
        let end = (next + 10_000).min(jobs);
        let batch: Vec<NewJob> =
            (next..end).map(|n| NewJob::from_job(&Noop(n as u64), EnqueueOptions::new())).collect::<Result<_, _>>()?;
        db.store.enqueue(&batch, chrono::Utc::now().naive_utc())?;
        next = end;
    }
    let seeded = seeded_at.elapsed();
    // As after any bulk load: without statistics the planner scans the tables whole.
    if db.postgres() {
        diesel::sql_query("ANALYZE").execute(&mut *db.conn)?;
    }
    eprintln!("fleet: {jobs} no-op jobs enqueued in {} ms; starting {} members", ms(seeded), args.processes);
    let started = Instant::now();
    for _ in 0..args.processes {
        fleet.spawn()?;
    }
    let mut registered = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if registered.is_none() && db.registered(fleet)?.len() == args.processes {
            registered = Some(started.elapsed());
        }
        if !db.jobs_left()? {
            break;
        }
        if Instant::now() > deadline {
            return Err("the drain did not end within 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let (after, _) = db.store.counts()?;
    let finished = after.finished - before.finished;
    let failed = (after.failed - before.failed) + (after.discarded - before.discarded);
    let rss: Vec<f64> = fleet.pids().iter().filter_map(|p| proc_rss_kb(*p)).map(|kb| kb as f64 / 1024.0).collect();
    let members = fleet.members.len();
    let (statuses, stop_took) = fleet.stop_all()?;
    let exited_0 = statuses.iter().filter(|(_, s)| s.success()).count();
    let ok = finished as usize == jobs && failed == 0 && exited_0 == members;
    let per_s = jobs as f64 / took.as_secs_f64();
    println!(
        "drain: {jobs} no-op jobs by {} members in {:.2} s: {:.0} jobs/s ({} finished, {failed} failed or discarded; all \
         registered after {} ms); {exited_0} of {members} exited 0 after TERM",
        args.processes,
        took.as_secs_f64(),
        per_s,
        finished,
        registered.map_or("-".into(), |d| d.as_millis().to_string()),
    );
    Ok(json!({
        "scenario": "drain",
        "ok": ok,
        "processes": args.processes,
        "jobs": jobs,
        "seed_per_s": (jobs as f64 / seeded.as_secs_f64()) as u64,
        "drain_s": (took.as_secs_f64() * 100.0).round() / 100.0,
        "drain_per_s": per_s as u64,
        "all_registered_ms": registered.map(ms),
        "finished": finished,
        "failed_or_discarded": failed,
        "rss_mb_at_end": mean_max(&rss),
        "stop": {"members": members, "exited_0": exited_0, "last_exit_ms": ms(stop_took)},
    }))
}
