//! Threads the runtime starts and must join before it returns: a process that exits while one
//! of them is still inside libpq or OpenSSL can crash at exit.

use std::time::Duration;

/// How long [`StoppedArbiters::join`] waits for the threads of stopped arbiters.
pub(crate) const THREAD_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The arbiters the runtime stopped, kept so that shutdown can join their threads.
///
/// Stopping an arbiter only asks its thread to end: the thread then drops its actors and waits
/// for its blocking pool (database calls still under way, TLS connections closing). A process
/// that calls `exit()` meanwhile runs OpenSSL's atexit cleanup while those threads are still
/// inside libpq/OpenSSL or exiting (their OpenSSL thread-state destructors), which crashes the
/// process with SIGSEGV in libcrypto. So `run()` and `shutdown()` join them before returning.
#[derive(Clone, Default)]
pub(crate) struct StoppedArbiters(std::sync::Arc<std::sync::Mutex<Vec<Stopped>>>);

/// A thread asked to end.
enum Stopped {
    Arbiter(actix::Arbiter),
    Thread(std::thread::JoinHandle<()>),
}

impl Stopped {
    fn join(self) {
        match self {
            Stopped::Arbiter(arbiter) => {
                let _ = arbiter.join();
            }
            Stopped::Thread(thread) => {
                let _ = thread.join();
            }
        }
    }
}

impl StoppedArbiters {
    /// Stops `arbiter` and keeps it for [`StoppedArbiters::join`].
    pub(crate) fn stop(&self, arbiter: actix::Arbiter) {
        arbiter.stop();
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Stopped::Arbiter(arbiter));
    }

    /// Keeps `thread`, already told to end, for [`StoppedArbiters::join`].
    pub(crate) fn ended(&self, thread: std::thread::JoinHandle<()>) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Stopped::Thread(thread));
    }

    /// Waits up to `timeout` for the threads of every arbiter stopped so far to end; returns
    /// how many were still running when it gave up (they are then left to themselves).
    pub(crate) fn join(&self, timeout: Duration) -> usize {
        let arbiters = std::mem::take(&mut *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let total = arbiters.len();
        if total == 0 {
            return 0;
        }
        let (done, joined) = std::sync::mpsc::channel();
        // `Arbiter::join` has no timeout: join on a helper thread, wait for it here.
        let spawned = std::thread::Builder::new().name("solidq-join".into()).spawn(move || {
            for stopped in arbiters {
                stopped.join();
                let _ = done.send(());
            }
        });
        if spawned.is_err() {
            return total;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut left = total;
        while left > 0 {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match joined.recv_timeout(wait) {
                Ok(()) => left -= 1,
                Err(_) => break,
            }
        }
        left
    }
}
