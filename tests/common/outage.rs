//! Database outages on demand: a TCP proxy in front of PostgreSQL or MySQL that can be cut (and,
//! for PostgreSQL, can drop the reply to a committed claim), and a SQLite file locked by another
//! process.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};

/// Forwards 127.0.0.1:<port> to `target`, two copy threads per connection. `cut` closes every
/// open connection and closes new ones as soon as they are accepted; `restore` forwards again.
pub struct Proxy {
    pub addr: SocketAddr,
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
    /// Armed: the next claim reply (rows holding a job's arguments) is dropped, with every
    /// reply after it on that connection. A claim of one queue pattern is one statement,
    /// committed by the server as it answers: the claim commits and the worker never hears.
    armed: AtomicBool,
    /// The trap went off: a committed claim's reply will never arrive.
    sprung: AtomicBool,
}

/// What the trap knows about one connection.
#[derive(Default)]
struct ConnFlags {
    /// Drop everything the server sends from now on.
    swallow: AtomicBool,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
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
    pub fn cut(&self) {
        let mut up = self.shared.up.lock().unwrap();
        *up = false;
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The database is back.
    pub fn restore(&self) {
        *self.shared.up.lock().unwrap() = true;
    }

    /// Sets the trap for the next claim's reply (needs `sslmode=disable`: it reads the bytes).
    pub fn arm_claim_commit_trap(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Whether a claim's reply was dropped.
    pub fn trap_sprung(&self) -> bool {
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
            if !upstream {
                if proxy.armed.load(Ordering::SeqCst) && contains(chunk, b"sleep_ms") {
                    flags.swallow.store(true, Ordering::SeqCst);
                    proxy.armed.store(false, Ordering::SeqCst);
                    proxy.sprung.store(true, Ordering::SeqCst);
                }
                if flags.swallow.load(Ordering::SeqCst) {
                    continue;
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

/// The TCP address of the server `url` names (unless given, port 3306 for `mysql://`, 5432
/// otherwise).
pub fn server_of(url: &str) -> SocketAddr {
    let (scheme, host_port, _) = split_authority(url);
    let default_port = if scheme.starts_with("mysql://") { 3306 } else { 5432 };
    let host_port = if host_port.contains(':') { host_port } else { format!("{host_port}:{default_port}") };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("{url} names no TCP address (the proxy needs host:port)"))
}

/// `url` with its host and port replaced by `addr`; the database and query (the test schema's
/// `search_path`) stay.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (head, _, tail) = split_authority(url);
    format!("{head}{addr}{tail}")
}

/// An exclusive write lock on a SQLite file, held by the `sqlite3` shell when it is installed
/// (a real other process), otherwise by a second connection on a thread.
pub enum SqliteLocker {
    Shell { child: Child, stdin: ChildStdin, lines: Receiver<String> },
    Thread { release: mpsc::Sender<()>, lines: Receiver<String>, thread: Option<std::thread::JoinHandle<()>> },
}

impl SqliteLocker {
    /// Starts taking the lock; [`SqliteLocker::locked`] says when it is held.
    pub fn start(path: &std::path::Path) -> SqliteLocker {
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

    pub fn kind(&self) -> &'static str {
        match self {
            SqliteLocker::Shell { .. } => "the sqlite3 shell (another process)",
            SqliteLocker::Thread { .. } => "a second connection on a thread",
        }
    }

    /// Whether the lock is held now (panics if taking it failed).
    pub fn locked(&mut self) -> bool {
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
    pub fn release(self) {
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

#[allow(async_fn_in_trait)]
pub trait Outage {
    /// Makes the database unavailable to the runtime; returns once it is.
    async fn begin(&mut self);
    /// Makes it available again; returns the moment it was given back.
    async fn end(&mut self) -> Instant;
}

pub struct ProxyOutage(pub Proxy);

impl Outage for ProxyOutage {
    async fn begin(&mut self) {
        self.0.cut();
    }
    async fn end(&mut self) -> Instant {
        self.0.restore();
        Instant::now()
    }
}

pub struct LockOutage {
    pub path: std::path::PathBuf,
    pub locker: Option<SqliteLocker>,
}

impl Outage for LockOutage {
    async fn begin(&mut self) {
        let mut locker = SqliteLocker::start(&self.path);
        eprintln!("locking the SQLite file with {}", locker.kind());
        super::wait_for("the other process to hold the lock", Duration::from_secs(10), || locker.locked()).await;
        self.locker = Some(locker);
    }
    async fn end(&mut self) -> Instant {
        let released = Instant::now();
        let locker = self.locker.take().expect("a lock to release");
        actix_rt::task::spawn_blocking(move || locker.release()).await.expect("releasing the lock");
        released
    }
}
