//! Database outages in the middle of a run (Solid Queue #683, #512, #133, #309, #385):
//! - PostgreSQL unreachable for 20 s: the runtime connects through a TCP proxy that the test
//!   cuts (every open connection closed, new ones closed at once) and restores. 20 s is longer
//!   than the alive threshold, so the heartbeat also fences the process and lifts the fence.
//! - A SQLite file locked by another process (the `sqlite3` shell if installed, otherwise a
//!   second connection on a thread) for longer than the store's busy timeout.
//!
//! In both: nothing panics, no job is lost, at most the jobs running at the cut run twice,
//! processing resumes within 5 s of the database returning, errors are logged with backoff
//! (not once per poll), the runtime fences itself and resumes, the host's actix System and
//! its actors keep running, and the runtime still shuts down cleanly.
//!
//! A third test cuts PostgreSQL exactly between a claim's COMMIT and its reply (Solid Queue
//! #748's cousin): the claim is committed but the worker saw an error; the job must still run.
//!
//! The tests run one after another (they count panics process-wide and measure times).
//! `SOLIDQ_TEST_LOG=1` echoes the runtime's log to stderr.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::TestDb;
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use serde::{Deserialize, Serialize};
use solidq::config::{Config, DatabaseUrl, WorkerGroup};
use solidq::store::{pool::SQLITE_BUSY_TIMEOUT, QueuePattern};
use solidq::{Job, JobError, Perform, Runtime};

/// Jobs run at once by the runtime under test: the most that may run twice.
const CONCURRENCY: usize = 3;
/// Jobs per scenario.
const JOBS: i64 = 200;
/// Each job's run time.
const JOB_MS: u64 = 20;
/// The requirement: processing resumes this soon after the database returns.
const RESUME_WITHIN: Duration = Duration::from_secs(5);
/// Error lines allowed during an outage. One line per failed poll would be about a thousand
/// (a 20 ms polling interval over 20 s); backoff logs the 1st, 2nd, 4th, 8th... failure of
/// each of the ~6 periodic calls.
const MAX_ERROR_LINES: usize = 60;

// --- serialisation and panic counting ---------------------------------------------------------

/// Held by each test for its whole run.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics in this process (any thread) since the hook was installed.
fn panics() -> &'static AtomicUsize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            COUNT.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    &COUNT
}

// --- a log drain that keeps every record --------------------------------------------------------

struct LogLine {
    at: Instant,
    level: slog::Level,
    text: String,
}

/// Keeps every record (message and key-values) with its time; echoes to stderr when
/// `SOLIDQ_TEST_LOG` is set.
#[derive(Clone)]
struct LogRecorder {
    lines: Arc<Mutex<Vec<LogLine>>>,
    echo: bool,
}

impl LogRecorder {
    fn new() -> Self {
        LogRecorder { lines: Arc::default(), echo: std::env::var_os("SOLIDQ_TEST_LOG").is_some() }
    }

    fn logger(&self) -> slog::Logger {
        slog::Logger::root(self.clone(), slog::o!())
    }

    /// Error-level (and critical) lines logged in `[from, to)`.
    fn errors_between(&self, from: Instant, to: Instant) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.level.is_at_least(slog::Level::Error) && l.at >= from && l.at < to)
            .map(|l| l.text.clone())
            .collect()
    }

    /// When a line containing `needle` was first logged at or after `from`.
    fn first(&self, needle: &str, from: Instant) -> Option<Instant> {
        self.lines.lock().unwrap().iter().find(|l| l.at >= from && l.text.contains(needle)).map(|l| l.at)
    }

    fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.text.contains(needle)).count()
    }
}

struct KvText<'a>(&'a mut String);

impl slog::Serializer for KvText<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for LogRecorder {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let mut text = record.msg().to_string();
        let _ = slog::KV::serialize(&record.kv(), record, &mut KvText(&mut text));
        let _ = slog::KV::serialize(values, record, &mut KvText(&mut text));
        if self.echo {
            eprintln!("{} {text}", record.level().as_short_str());
        }
        let line = LogLine { at: Instant::now(), level: record.level(), text };
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
        Ok(())
    }
}

// --- a TCP proxy that can play a database outage -------------------------------------------------

/// Forwards 127.0.0.1:<port> to `target`, two copy threads per connection. `cut` closes every
/// open connection and closes new ones as soon as they are accepted; `restore` forwards again.
struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    target: SocketAddr,
    /// Whether connections are forwarded; its lock also guards registration, so that no
    /// connection set up concurrently with a cut survives it.
    up: Mutex<bool>,
    /// One handle per side of every forwarded connection.
    open: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
    /// Armed: the next claim reply (rows holding a job's arguments) marks its connection, and
    /// that connection's next COMMIT is forwarded while every reply after it is dropped.
    armed: AtomicBool,
    /// The trap went off: a claim's COMMIT went to the server and its reply will never arrive.
    sprung: AtomicBool,
}

/// What the trap knows about one connection.
#[derive(Default)]
struct ConnFlags {
    /// The server sent claimed jobs on it; the client's next COMMIT ends that claim.
    claim_seen: AtomicBool,
    /// Drop everything the server sends from now on.
    swallow: AtomicBool,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            target,
            up: Mutex::new(true),
            open: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            sprung: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("outage-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if accepting.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(client) = client {
                        accepting.forward(client);
                    }
                }
            })
            .unwrap();
        Proxy { addr, shared }
    }

    /// The database is gone: open connections die, new ones are closed at once.
    fn cut(&self) {
        let mut up = self.shared.up.lock().unwrap();
        *up = false;
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The database is back.
    fn restore(&self) {
        *self.shared.up.lock().unwrap() = true;
    }

    /// Sets the trap for the next claim's COMMIT (needs `sslmode=disable`: it reads the bytes).
    fn arm_claim_commit_trap(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Whether a claim's COMMIT has gone to the server with its reply dropped.
    fn trap_sprung(&self) -> bool {
        self.shared.sprung.load(Ordering::SeqCst)
    }
}

impl ProxyShared {
    fn forward(self: &Arc<Self>, client: TcpStream) {
        let up = self.up.lock().unwrap();
        if !*up {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        let Ok(server) = TcpStream::connect(self.target) else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let clones = (client.try_clone(), client.try_clone(), server.try_clone(), server.try_clone());
        let (Ok(client2), Ok(client_handle), Ok(server2), Ok(server_handle)) = clones else { return };
        {
            let mut open = self.open.lock().unwrap();
            open.retain(|s| s.peer_addr().is_ok());
            open.push(client_handle);
            open.push(server_handle);
        }
        drop(up);
        let flags = Arc::new(ConnFlags::default());
        pipe(client, server, true, flags.clone(), self.clone());
        pipe(server2, client2, false, flags, self.clone());
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Copies `from` to `to` on a thread (`upstream`: client to server), springing the trap if
/// armed; when either side ends, both are closed.
fn pipe(mut from: TcpStream, mut to: TcpStream, upstream: bool, flags: Arc<ConnFlags>, proxy: Arc<ProxyShared>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => &buf[..n],
            };
            if upstream {
                if proxy.armed.load(Ordering::SeqCst)
                    && flags.claim_seen.load(Ordering::SeqCst)
                    && contains(chunk, b"COMMIT")
                {
                    flags.swallow.store(true, Ordering::SeqCst);
                    proxy.armed.store(false, Ordering::SeqCst);
                    proxy.sprung.store(true, Ordering::SeqCst);
                }
            } else {
                if flags.swallow.load(Ordering::SeqCst) {
                    continue;
                }
                if proxy.armed.load(Ordering::SeqCst) && contains(chunk, b"sleep_ms") {
                    flags.claim_seen.store(true, Ordering::SeqCst);
                }
            }
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// `url` (`postgres://[user@]host[:port]/db?...`) split around its `host[:port]`.
fn split_authority(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    (format!("{scheme}://{user}"), host_port.to_string(), tail.to_string())
}

/// The TCP address of the server `url` names (port 5432 unless given).
fn server_of(url: &str) -> SocketAddr {
    let (_, host_port, _) = split_authority(url);
    let host_port = if host_port.contains(':') { host_port } else { format!("{host_port}:5432") };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("{} names no TCP address (the proxy needs host:port)", common::POSTGRES_URL_VAR))
}

/// `url` with its host and port replaced by `addr`; the database and query (the test schema's
/// `search_path`) stay.
fn via(url: &str, addr: SocketAddr) -> String {
    let (head, _, tail) = split_authority(url);
    format!("{head}{addr}{tail}")
}

// --- a SQLite lock held by another process -------------------------------------------------------

/// An exclusive write lock on a SQLite file, held by the `sqlite3` shell when it is installed
/// (a real other process), otherwise by a second connection on a thread.
enum SqliteLocker {
    Shell { child: Child, stdin: ChildStdin, lines: Receiver<String> },
    Thread { release: mpsc::Sender<()>, lines: Receiver<String>, thread: Option<std::thread::JoinHandle<()>> },
}

impl SqliteLocker {
    /// Starts taking the lock; [`SqliteLocker::locked`] says when it is held.
    fn start(path: &std::path::Path) -> SqliteLocker {
        let spawned = Command::new("sqlite3")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(mut child) => {
                let mut stdin = child.stdin.take().unwrap();
                let stdout = child.stdout.take().unwrap();
                let (tx, lines) = mpsc::channel();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        let _ = tx.send(line);
                    }
                });
                // `.bail on`: if BEGIN fails the shell exits instead of printing "locked".
                stdin.write_all(b".bail on\n.timeout 5000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n").unwrap();
                stdin.flush().unwrap();
                SqliteLocker::Shell { child, stdin, lines }
            }
            Err(err) => {
                eprintln!("sqlite3 shell not available ({err}); holding the lock from a second connection");
                let path = path.to_str().unwrap().to_string();
                let (tx, lines) = mpsc::channel();
                let (release, released) = mpsc::channel::<()>();
                let thread = std::thread::spawn(move || {
                    let mut conn = SqliteConnection::establish(&path).expect("opening the locking connection");
                    conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
                    diesel::RunQueryDsl::execute(diesel::sql_query("BEGIN EXCLUSIVE"), &mut conn)
                        .expect("BEGIN EXCLUSIVE");
                    tx.send("locked".to_string()).unwrap();
                    let _ = released.recv();
                    diesel::RunQueryDsl::execute(diesel::sql_query("COMMIT"), &mut conn).expect("COMMIT");
                });
                SqliteLocker::Thread { release, lines, thread: Some(thread) }
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SqliteLocker::Shell { .. } => "the sqlite3 shell (another process)",
            SqliteLocker::Thread { .. } => "a second connection on a thread",
        }
    }

    /// Whether the lock is held now (panics if taking it failed).
    fn locked(&mut self) -> bool {
        let lines = match self {
            SqliteLocker::Shell { lines, .. } | SqliteLocker::Thread { lines, .. } => lines,
        };
        match lines.try_recv() {
            Ok(line) => line == "locked",
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => panic!("the locker could not take the lock"),
        }
    }

    /// Commits (releasing the lock) and waits for the locker to end.
    fn release(self) {
        match self {
            SqliteLocker::Shell { mut child, mut stdin, .. } => {
                stdin.write_all(b"COMMIT;\n.quit\n").unwrap();
                stdin.flush().unwrap();
                drop(stdin);
                let status = child.wait().unwrap();
                assert!(status.success(), "sqlite3 ended with {status}");
            }
            SqliteLocker::Thread { release, mut thread, .. } => {
                release.send(()).unwrap();
                thread.take().unwrap().join().expect("the locking thread");
            }
        }
    }
}

// --- the job, its handler, and a host actor ------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Tick {
    n: i64,
    sleep_ms: u64,
}

impl Job for Tick {
    const KIND: &'static str = "outage.tick";
}

/// Every execution: the job's number and when it started.
type Executions = Arc<Mutex<Vec<(i64, Instant)>>>;

struct Ticker {
    seen: Executions,
}

impl Actor for Ticker {
    type Context = Context<Self>;
}

impl Handler<Perform<Tick>> for Ticker {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Tick>, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push((msg.job.n, Instant::now()));
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(msg.job.sleep_ms)).await;
            Ok(())
        })
    }
}

/// The host application's own actor, on the System's arbiter: ticks every 50 ms and keeps the
/// longest gap between ticks (the event loop was blocked or the System stopped).
struct HostPulse {
    last: Instant,
    longest_gap: Duration,
    ticks: usize,
}

impl Actor for HostPulse {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(50), |act, _| {
            act.longest_gap = act.longest_gap.max(act.last.elapsed());
            act.last = Instant::now();
            act.ticks += 1;
        });
    }
}

#[derive(Message)]
#[rtype(result = "(usize, Duration)")]
struct HowAreYou;

impl Handler<HowAreYou> for HostPulse {
    type Result = MessageResult<HowAreYou>;
    fn handle(&mut self, _: HowAreYou, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.ticks, self.longest_gap.max(self.last.elapsed())))
    }
}

// --- the scenario -----------------------------------------------------------------------------------

fn config(url: DatabaseUrl, alive_threshold: Duration) -> Config {
    Config {
        database_url: url,
        pool_size: 4,
        workers: vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: CONCURRENCY }],
        polling_interval: Duration::from_millis(20),
        dispatcher_polling_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        alive_threshold,
        watchdog_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn finished(db: &TestDb) -> i64 {
    db.store.counts().expect("counting jobs (direct connection)").0.finished
}

/// How the database goes away and comes back.
trait Outage {
    /// Makes the database unavailable to the runtime; returns once it is.
    async fn begin(&mut self);
    /// Makes it available again; returns the moment it was given back.
    async fn end(&mut self) -> Instant;
}

struct ProxyOutage(Proxy);

impl Outage for ProxyOutage {
    async fn begin(&mut self) {
        self.0.cut();
    }
    async fn end(&mut self) -> Instant {
        self.0.restore();
        Instant::now()
    }
}

struct LockOutage {
    path: std::path::PathBuf,
    locker: Option<SqliteLocker>,
}

impl Outage for LockOutage {
    async fn begin(&mut self) {
        let mut locker = SqliteLocker::start(&self.path);
        eprintln!("locking the SQLite file with {}", locker.kind());
        wait_for("the other process to hold the lock", Duration::from_secs(10), || locker.locked()).await;
        self.locker = Some(locker);
    }
    async fn end(&mut self) -> Instant {
        let released = Instant::now();
        let locker = self.locker.take().expect("a lock to release");
        actix_rt::task::spawn_blocking(move || locker.release()).await.expect("releasing the lock");
        released
    }
}

/// Runs `JOBS` jobs on a runtime connected to `runtime_url`; `outage` strikes for `length`
/// once some are finished. `db.store` (direct) is the test's view of the database.
async fn outage_scenario(
    name: &str,
    db: &TestDb,
    runtime_url: DatabaseUrl,
    alive_threshold: Duration,
    length: Duration,
    mut outage: impl Outage,
) {
    let panics_before = panics().load(Ordering::SeqCst);
    let host = HostPulse { last: Instant::now(), longest_gap: Duration::ZERO, ticks: 0 }.start();
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let handler_seen = seen.clone();
    let runtime = Runtime::new(config(runtime_url, alive_threshold), log.logger())
        .expect("building the runtime")
        .register::<Tick, _, _>(move || Ticker { seen: handler_seen.clone() });
    let ids = runtime.queue().enqueue_all((1..=JOBS).map(|n| Tick { n, sleep_ms: JOB_MS })).await.unwrap();
    let started = Instant::now();
    let handle = runtime.start().expect("starting the runtime");

    wait_for("20 jobs to finish", Duration::from_secs(20), || finished(db) >= 20).await;
    outage.begin().await;
    let cut_at = Instant::now();
    let finished_at_cut = finished(db);
    assert!(finished_at_cut < JOBS - 20, "the outage must strike while jobs are pending ({finished_at_cut} done)");
    actix_rt::time::sleep(length).await;
    let finished_at_restore = finished(db);
    let executions_at_restore = seen.lock().unwrap().len();
    let restored_at = outage.end().await;
    assert!(System::try_current().is_some(), "the host's System is gone");

    // Processing resumes: an outcome is recorded, and a job is claimed and starts.
    let (mut recorded_after, mut started_after) = (None, None);
    let deadline = restored_at + Duration::from_secs(20);
    while recorded_after.is_none() || started_after.is_none() {
        assert!(Instant::now() < deadline, "[{name}] processing did not resume within 20 s of the database returning");
        if recorded_after.is_none() && finished(db) > finished_at_restore {
            recorded_after = Some(restored_at.elapsed());
        }
        if started_after.is_none() {
            started_after =
                seen.lock().unwrap().iter().find(|(_, at)| *at > restored_at).map(|(_, at)| *at - restored_at);
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (recorded_after, started_after) = (recorded_after.unwrap(), started_after.unwrap());

    let finish_deadline = Instant::now() + Duration::from_secs(30);
    while finished(db) < JOBS && Instant::now() < finish_deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    if finished(db) < JOBS {
        let process = handle.process_id().await;
        let claims = process.map(|p| db.store.claimed_by(p).unwrap());
        let ran: HashSet<i64> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
        let unfinished: Vec<String> = ids
            .iter()
            .zip(1..)
            .filter_map(|(id, n)| {
                let job = db.store.job(*id).unwrap()?;
                (job.state != "finished").then(|| {
                    format!("job {id} (n={n}): {} attempts={} executed={}", job.state, job.attempts, ran.contains(&n))
                })
            })
            .collect();
        panic!(
            "[{name}] not every job finished 30 s after the restore: {:?}; unfinished: {unfinished:?}; process \
             {process:?} holds claims {claims:?}",
            db.store.counts().unwrap().0
        );
    }
    let all_done = started.elapsed();
    let report = handle.shutdown().await;

    // --- what happened -----------------------------------------------------------------
    let outage_errors = log.errors_between(cut_at, restored_at);
    let errors_after = log.errors_between(restored_at, Instant::now());
    let fenced_at = log.first("fencing this process", cut_at);
    let resumed_at = log.first("resuming", cut_at).or_else(|| log.first("registered again", cut_at));
    let restarts = log.count("child actor is down");
    let executions = seen.lock().unwrap().clone();
    let mut runs: BTreeMap<i64, Vec<Instant>> = BTreeMap::new();
    for (n, at) in &executions {
        runs.entry(*n).or_default().push(*at);
    }
    let duplicated: Vec<i64> = runs.iter().filter(|(_, at)| at.len() > 1).map(|(n, _)| *n).collect();
    let duplicates = executions.len() - runs.len();
    let (host_ticks, host_gap) = host.send(HowAreYou).await.expect("the host actor answers after the outage");
    let states: HashSet<String> =
        ids.iter().map(|id| db.store.job(*id).unwrap().map(|j| j.state).unwrap_or_else(|| "missing".into())).collect();

    eprintln!(
        "[{name}] outage {length:?}: finished at cut {finished_at_cut}, at restore {finished_at_restore} \
         (executions by then {executions_at_restore}); after restore: first outcome recorded in {recorded_after:?}, \
         first new job started in {started_after:?}; all {JOBS} finished {all_done:?} after start"
    );
    eprintln!(
        "[{name}] error lines: {} during the outage, {} after it; fenced {:?} into the outage, resumed {:?} after \
         the restore; executions {} for {} jobs (duplicates {duplicates}: {duplicated:?}); child restarts \
         {restarts}; host actor ticks {host_ticks}, longest gap {host_gap:?}; shutdown {report:?}",
        outage_errors.len(),
        errors_after.len(),
        fenced_at.map(|at| at - cut_at),
        resumed_at.map(|at| at.saturating_duration_since(restored_at)),
        executions.len(),
        runs.len(),
    );
    for line in &outage_errors {
        eprintln!("[{name}]   error during the outage: {line}");
    }
    for line in &errors_after {
        eprintln!("[{name}]   error after the outage: {line}");
    }

    // --- the requirements ----------------------------------------------------------------
    assert_eq!(panics().load(Ordering::SeqCst), panics_before, "something panicked");
    assert_eq!(restarts, 0, "no child actor may crash or get stuck because of the outage");
    assert_eq!(states, HashSet::from(["finished".to_string()]), "every job finished, none lost");
    assert_eq!(runs.len() as i64, JOBS, "every job ran");
    assert!(duplicates <= CONCURRENCY, "{duplicates} duplicate executions; at most the {CONCURRENCY} running jobs");
    for n in &duplicated {
        assert!(runs[n][0] < cut_at, "job {n} ran twice but was not running when the outage began");
    }
    assert!(recorded_after < RESUME_WITHIN, "first outcome recorded {recorded_after:?} after the database returned");
    assert!(started_after < RESUME_WITHIN, "first new job started {started_after:?} after the database returned");
    assert!(
        outage_errors.len() < MAX_ERROR_LINES,
        "{} error lines during a {length:?} outage: errors must be logged with backoff",
        outage_errors.len()
    );
    assert!(!outage_errors.is_empty(), "the outage must be visible in the log");
    // A heartbeat that failed later than the alive threshold into the outage fences the
    // process. (On SQLite the heartbeat can instead wait in line for the one writer connection
    // and get through just as the lock goes: it never failed, nobody could reap the process
    // meanwhile, and there is nothing to fence.)
    let failed_late = log.first("heartbeat failed", cut_at + alive_threshold).is_some_and(|at| at < restored_at);
    if failed_late {
        let fenced_at =
            fenced_at.expect("longer than the alive threshold without a heartbeat: the process fences itself");
        assert!(fenced_at < restored_at, "fenced during the outage");
    }
    if fenced_at.is_some() {
        let resumed_at = resumed_at.expect("the fence is lifted once the database answers");
        assert!(resumed_at >= restored_at);
    }
    assert!(host_gap < Duration::from_secs(2), "the host's event loop stalled for {host_gap:?}");
    assert!(System::try_current().is_some(), "the host's System is gone");
    assert!(report.deregistered, "clean shutdown after the outage: {report:?}");
    assert_eq!((report.abandoned, report.released), (0, 0), "nothing left running at shutdown: {report:?}");
    assert!(db.store.processes().unwrap().is_empty(), "the process deregistered");
}

#[test]
fn postgres_outage_of_20s_loses_nothing_and_resumes_quickly() {
    let _serial = serial();
    let Some(db) = common::postgres_db() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    eprintln!("runtime connects through the proxy: {url}");
    System::new().block_on(outage_scenario(
        "postgres",
        &db,
        DatabaseUrl::Postgres(url),
        Duration::from_secs(10),
        Duration::from_secs(20),
        ProxyOutage(proxy),
    ));
}

#[test]
fn sqlite_file_locked_by_another_process_loses_nothing_and_resumes() {
    let _serial = serial();
    let db = common::sqlite_db();
    let DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    // Held past the busy timeout, so that store calls really fail; the alive threshold is
    // shorter than the busy timeout, so that the first failed heartbeat fences the process.
    let length = SQLITE_BUSY_TIMEOUT + Duration::from_secs(2);
    System::new().block_on(outage_scenario(
        "sqlite",
        &db,
        db.url.clone(),
        Duration::from_secs(4),
        length,
        LockOutage { path, locker: None },
    ));
}

/// Three live processes share the database through an outage longer than their alive
/// threshold. Each one's heartbeat is old when the database returns only because nobody could
/// write: the first watchdog back must not reap the others, and a job whose outcome was kept
/// through the outage must not run again elsewhere.
async fn live_processes_outlast_an_outage(
    name: &str,
    db: &TestDb,
    runtime_url: DatabaseUrl,
    alive_threshold: Duration,
    length: Duration,
    mut outage: impl Outage,
) {
    const FLEET: usize = 3;
    const FLEET_JOBS: i64 = 60;
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let mut handles = Vec::new();
    let mut queue = None;
    for _ in 0..FLEET {
        let handler_seen = seen.clone();
        let runtime = Runtime::new(config(runtime_url.clone(), alive_threshold), log.logger())
            .expect("building a runtime")
            .register::<Tick, _, _>(move || Ticker { seen: handler_seen.clone() });
        queue.get_or_insert_with(|| runtime.queue());
        handles.push(runtime.start().expect("starting a runtime"));
    }
    let ids = queue.unwrap().enqueue_all((1..=FLEET_JOBS).map(|n| Tick { n, sleep_ms: 300 })).await.unwrap();
    let mut identities = Vec::new();
    for handle in &handles {
        let started = Instant::now();
        let id = loop {
            if let Some(id) = handle.process_id().await {
                break id;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "[{name}] a runtime never registered");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        };
        identities.push(id);
    }
    wait_for("10 jobs to finish", Duration::from_secs(20), || finished(db) >= 10).await;
    outage.begin().await;
    actix_rt::time::sleep(length).await;
    let restored_at = outage.end().await;
    wait_for("every job to finish", Duration::from_secs(60), || finished(db) == FLEET_JOBS).await;
    // Well past the threshold after the restore: every watchdog had its chance to reap.
    let settle = (alive_threshold * 2).saturating_sub(restored_at.elapsed());
    actix_rt::time::sleep(settle).await;
    let mut after = Vec::new();
    for handle in &handles {
        after.push(handle.process_id().await.expect("still registered"));
    }
    let executions = seen.lock().unwrap().clone();
    let mut runs: BTreeMap<i64, usize> = BTreeMap::new();
    for (n, _) in &executions {
        *runs.entry(*n).or_default() += 1;
    }
    let twice: Vec<i64> = runs.iter().filter(|(_, count)| **count > 1).map(|(n, _)| *n).collect();
    let reaped = log.count("dead process reaped");
    let resumed = log.count("heartbeat ages count from now");
    eprintln!(
        "[{name}] {FLEET} processes through a {length:?} outage (threshold {alive_threshold:?}): identities before {identities:?}, after {after:?}; reaped {reaped}; watches resumed {resumed}; jobs run twice {twice:?}"
    );
    for handle in &handles {
        assert!(handle.shutdown().await.deregistered);
    }
    assert_eq!(reaped, 0, "[{name}] a live process was reaped after the outage");
    assert_eq!(identities, after, "[{name}] no live process had to register again");
    assert!(twice.is_empty(), "[{name}] jobs {twice:?} ran twice");
    assert_eq!(runs.len() as i64, FLEET_JOBS, "[{name}] every job ran");
    let states: HashSet<String> = ids.iter().map(|id| db.store.job(*id).unwrap().unwrap().state).collect();
    assert_eq!(states, HashSet::from(["finished".to_string()]));
}

#[test]
fn postgres_outage_longer_than_the_threshold_reaps_no_live_process() {
    let _serial = serial();
    let Some(db) = common::postgres_db() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    System::new().block_on(live_processes_outlast_an_outage(
        "postgres fleet",
        &db,
        DatabaseUrl::Postgres(url),
        Duration::from_secs(3),
        Duration::from_secs(8),
        ProxyOutage(proxy),
    ));
}

#[test]
fn sqlite_lock_longer_than_the_threshold_reaps_no_live_process() {
    let _serial = serial();
    let db = common::sqlite_db();
    let DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    System::new().block_on(live_processes_outlast_an_outage(
        "sqlite fleet",
        &db,
        db.url.clone(),
        Duration::from_secs(3),
        SQLITE_BUSY_TIMEOUT + Duration::from_secs(2),
        LockOutage { path, locker: None },
    ));
}

/// The connection drops after a claim's COMMIT reached the server but before its reply came
/// back: the claim is committed, the worker saw an error. The job must still run.
async fn claim_commit_reply_lost(db: &TestDb, proxy: Proxy, url: String) {
    let panics_before = panics().load(Ordering::SeqCst);
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let handler_seen = seen.clone();
    let runtime = Runtime::new(config(DatabaseUrl::Postgres(url), Duration::from_secs(10)), log.logger())
        .expect("building the runtime")
        .register::<Tick, _, _>(move || Ticker { seen: handler_seen.clone() });
    let jobs = 30;
    let ids = runtime.queue().enqueue_all((1..=jobs).map(|n| Tick { n, sleep_ms: JOB_MS })).await.unwrap();
    let handle = runtime.start().expect("starting the runtime");
    wait_for("5 jobs to finish", Duration::from_secs(20), || finished(db) >= 5).await;
    let process = handle.process_id().await.expect("registered");

    proxy.arm_claim_commit_trap();
    wait_for("a claim's COMMIT to reach the server", Duration::from_secs(10), || proxy.trap_sprung()).await;
    // Let the server commit, then the connection drops with the reply unsent.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let executed: HashSet<i64> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
    let in_doubt: Vec<i64> = db
        .store
        .claimed_by(process)
        .unwrap()
        .iter()
        .filter_map(|token| ids.iter().position(|id| *id == token.job_id).map(|i| i as i64 + 1))
        .filter(|n| !executed.contains(n))
        .collect();
    eprintln!("[claim reply lost] committed claims the runtime never heard of: jobs {in_doubt:?}");
    assert!(!in_doubt.is_empty(), "the trap should leave a committed, unacknowledged claim");
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let restored_at = Instant::now();

    let deadline = restored_at + Duration::from_secs(20);
    while finished(db) < jobs && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = db.store.counts().unwrap().0;
    let stuck: Vec<String> = ids
        .iter()
        .filter_map(|id| db.store.job(*id).unwrap())
        .filter(|job| job.state != "finished")
        .map(|job| format!("job {} {} attempts={}", job.id, job.state, job.attempts))
        .collect();
    let report = handle.shutdown().await;
    eprintln!("[claim reply lost] after restore: {counts:?}, unfinished {stuck:?}, shutdown {report:?}");
    assert!(
        stuck.is_empty(),
        "jobs {in_doubt:?} were claimed by a COMMIT whose reply was lost; 20 s after the database returned \
         they are still unfinished ({stuck:?}) although process {process} is alive and registered: the worker \
         treated the claim as failed and nobody reconciles it (shutdown then released {} claim(s))",
        report.released
    );
    assert_eq!(panics().load(Ordering::SeqCst), panics_before, "something panicked");
    assert!(report.deregistered);
}

#[test]
fn postgres_claim_whose_commit_reply_is_lost_still_runs() {
    let _serial = serial();
    let Some(db) = common::postgres_db() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    // Plain text, so that the proxy can see the COMMIT.
    let url = format!("{}&sslmode=disable", via(&direct, proxy.addr));
    System::new().block_on(claim_commit_reply_lost(&db, proxy, url));
}
