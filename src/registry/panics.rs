//! Panic capture: a handler's panic unwinds on its own thread and closes its actor's mailbox;
//! the hook installed here remembers each thread's last panic message and place, so that the
//! registry can record it as the job's failure.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

/// A panic's message and where it happened (`file:line`), by thread.
type PanicLog = Mutex<HashMap<ThreadId, (String, Option<String>)>>;

fn panic_log() -> &'static PanicLog {
    static LOG: OnceLock<PanicLog> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

/// Installs (once) a panic hook that remembers the last panic message of every thread, then
/// calls the hook that was installed before.
pub fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = payload_text(info.payload());
            let location = info.location().map(|loc| format!("{}:{}", loc.file(), loc.line()));
            if let Ok(mut log) = panic_log().lock() {
                log.insert(std::thread::current().id(), (message, location));
            }
            previous(info);
        }));
    });
}

/// The text of a panic payload.
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Takes the recorded panic message of any of `threads`.
pub(super) fn take_panic(threads: &HashSet<ThreadId>) -> Option<(String, Option<String>)> {
    let mut log = panic_log().lock().ok()?;
    let thread = threads.iter().find(|t| log.contains_key(t)).copied()?;
    log.remove(&thread)
}
