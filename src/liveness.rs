//! Who this process is, and whether a process row written on this same host is still running.
//!
//! A pid is only meaningful inside one PID namespace on one boot of one host: containers on a
//! node share the boot id but not the namespace, and pids repeat across namespaces. So a row is
//! judged by its pid only when hostname, boot id and PID-namespace id all match ours, and a
//! recorded process start time guards against the pid having been reused.

use std::fs;

use crate::model::{ProcessDetails, ProcessMetadata, ProcessRow};

/// Where a process runs: enough to tell whether its pid can be checked from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// `gethostname()`.
    pub hostname: String,
    /// `/proc/sys/kernel/random/boot_id`, empty where unavailable.
    pub boot_id: String,
    /// The `/proc/self/ns/pid` link, e.g. `pid:[4026531836]`, empty where unavailable.
    pub pid_namespace: String,
}

impl HostIdentity {
    /// The identity of the calling process's host, boot and PID namespace.
    pub fn current() -> HostIdentity {
        HostIdentity {
            hostname: hostname(),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            pid_namespace: fs::read_link("/proc/self/ns/pid")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// Whether pids recorded under `other` can be checked from here.
    pub fn shares_pid_space_with(&self, other: &HostIdentity) -> bool {
        !self.boot_id.is_empty()
            && !self.pid_namespace.is_empty()
            && self.hostname == other.hostname
            && self.boot_id == other.boot_id
            && self.pid_namespace == other.pid_namespace
    }
}

/// The host name, or `unknown`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), and whether
/// it is a zombie. `None` if the process does not exist.
pub fn process_start(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, *state == "Z" || *state == "X"))
}

/// The metadata this process writes into its row: its host identity and start time, for the
/// pid probe of other processes on this host, and what it serves.
pub fn process_metadata(details: ProcessDetails) -> ProcessMetadata {
    let me = HostIdentity::current();
    let pid = std::process::id() as i32;
    ProcessMetadata {
        boot_id: me.boot_id,
        pid_namespace: me.pid_namespace,
        start_time: process_start(pid).map(|(start, _)| start),
        details,
        abandoned: None,
    }
}

/// If `row` was written from the same host, boot and PID namespace as `me`, and its process is
/// gone (no such pid, a zombie, or the pid now belongs to a process started at another time),
/// says why. Otherwise `None`: the pid cannot tell, and the heartbeat must decide.
pub fn local_death(row: &ProcessRow, me: &HostIdentity) -> Option<String> {
    let theirs = HostIdentity {
        hostname: row.hostname.clone(),
        boot_id: row.metadata.boot_id.clone(),
        pid_namespace: row.metadata.pid_namespace.clone(),
    };
    if !me.shares_pid_space_with(&theirs) {
        return None;
    }
    let recorded_start = row.metadata.start_time;
    match process_start(row.pid) {
        None => Some(format!("pid {} on {} is no longer running", row.pid, row.hostname)),
        Some((_, true)) => Some(format!("pid {} on {} has exited (zombie)", row.pid, row.hostname)),
        Some((start, false)) => match recorded_start {
            Some(recorded) if recorded != start => {
                Some(format!("pid {} on {} now belongs to another process", row.pid, row.hostname))
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(pid: i32, metadata: ProcessMetadata) -> ProcessRow {
        let now = Utc::now().naive_utc();
        ProcessRow {
            id: 1,
            kind: "Runtime".into(),
            name: "p".into(),
            pid,
            hostname: hostname(),
            metadata,
            last_heartbeat_at: now,
            created_at: now,
        }
    }

    #[test]
    fn own_process_is_alive_and_a_missing_pid_is_dead() {
        let me = HostIdentity::current();
        let mine = row(std::process::id() as i32, process_metadata(ProcessDetails::default()));
        assert_eq!(local_death(&mine, &me), None);
        // pid_max is at most 2^22, so this pid cannot exist.
        let gone = row(i32::MAX - 7, process_metadata(ProcessDetails::default()));
        assert!(local_death(&gone, &me).unwrap().contains("no longer running"));
    }

    #[test]
    fn reused_pid_is_dead_and_foreign_namespace_is_undecided() {
        let me = HostIdentity::current();
        let mut meta = process_metadata(ProcessDetails::default());
        meta.start_time = Some(1);
        let reused = row(std::process::id() as i32, meta);
        assert!(local_death(&reused, &me).unwrap().contains("another process"));
        let mut meta = process_metadata(ProcessDetails::default());
        meta.pid_namespace = "pid:[1]".into();
        let foreign = row(i32::MAX - 7, meta);
        assert_eq!(local_death(&foreign, &me), None);
    }
}
