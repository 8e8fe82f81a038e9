//! The status view (what `solidq status` prints, and what an application can serve from its own
//! endpoint): every process with its heartbeat age, and job counts per state and queue. The
//! rendering is pure functions of the rows and `now`, testable without a database;
//! [`status_text`] reads them from a store.

use std::time::Duration;

use chrono::{NaiveDateTime, SecondsFormat, TimeDelta};
use serde_json::{json, Value};

use crate::model::duration::format_duration;
use crate::model::{ProcessRow, QueuePattern};
use crate::store::{JobCounts, Leader, QueueCounts, Waiting};

/// Everything `solidq status` shows, read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct StatusView<'a> {
    /// Every process row.
    pub processes: &'a [ProcessRow],
    /// Job counts over all queues.
    pub totals: &'a JobCounts,
    /// Job counts per queue.
    pub queues: &'a [QueueCounts],
    /// Jobs waiting to run, per kind and queue (to find those no live process can run).
    pub waiting: &'a [Waiting],
    /// The time the rows were read (UTC).
    pub now: NaiveDateTime,
    /// `SOLIDQ_ALIVE_THRESHOLD`: a process whose heartbeat is older is dead.
    pub alive_threshold: Duration,
    /// The elected leader, which runs the maintenance sweeps ([`Store::leader`](crate::store::Store::leader)).
    pub leader: Option<&'a Leader>,
}

/// How long ago `last_heartbeat_at` was; negative if it lies in the future (clock skew
/// between hosts).
pub fn heartbeat_age(now: NaiveDateTime, last_heartbeat_at: NaiveDateTime) -> TimeDelta {
    now - last_heartbeat_at
}

/// Whether a heartbeat of `age` is recent enough: dead means older than `alive_threshold`.
pub fn is_alive(age: TimeDelta, alive_threshold: Duration) -> bool {
    match age.to_std() {
        Ok(age) => age <= alive_threshold,
        // Negative: a heartbeat from the future is not an old one.
        Err(_) => true,
    }
}

/// What a process serves, as it registered it: the queue patterns of its worker groups and the
/// kinds it has handlers for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Queue patterns of all its worker groups.
    pub queues: Vec<QueuePattern>,
    /// Kinds it has handlers for.
    pub kinds: Vec<String>,
}

impl Served {
    /// Reads what `process` registered in its metadata (nothing, for a row without it).
    pub fn by(process: &ProcessRow) -> Served {
        let details = &process.metadata.details;
        let queues =
            details.workers.iter().flat_map(|group| &group.queues).map(|queue| QueuePattern::parse(queue)).collect();
        Served { queues, kinds: details.kinds.clone() }
    }

    /// Whether this process would run a job of `kind` on `queue`.
    pub fn runs(&self, kind: &str, queue: &str) -> bool {
        self.kinds.iter().any(|k| k == kind) && self.queues.iter().any(|pattern| pattern.matches(queue))
    }
}

/// Jobs waiting that no live process can run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unservable {
    /// Their kind.
    pub kind: String,
    /// Their queue.
    pub queue: String,
    /// How many wait (ready or scheduled).
    pub jobs: i64,
    /// Why none of the live processes runs them.
    pub reason: &'static str,
}

/// The waiting jobs that no live process (heartbeat within `alive_threshold`) can run: no live
/// process has a handler for their kind, or none that has one works their queue.
pub fn unservable(
    processes: &[ProcessRow],
    waiting: &[Waiting],
    now: NaiveDateTime,
    alive_threshold: Duration,
) -> Vec<Unservable> {
    let live = live_served(processes, now, alive_threshold);
    waiting
        .iter()
        .filter(|w| !live.iter().any(|served| served.runs(&w.kind, &w.queue)))
        .map(|w| Unservable {
            kind: w.kind.clone(),
            queue: w.queue.clone(),
            jobs: w.ready + w.scheduled,
            reason: if live.iter().any(|served| served.kinds.contains(&w.kind)) {
                "no live process with a handler for this kind works this queue"
            } else {
                "no live process has a handler for this kind"
            },
        })
        .collect()
}

/// What each live process serves: those whose heartbeat is within `alive_threshold` of `now`.
pub fn live_served(processes: &[ProcessRow], now: NaiveDateTime, alive_threshold: Duration) -> Vec<Served> {
    processes
        .iter()
        .filter(|p| is_alive(heartbeat_age(now, p.last_heartbeat_at), alive_threshold))
        .map(Served::by)
        .collect()
}

/// A heartbeat age in whole units, short: `0s`, `3s`, `2m10s`, `1h5m`, `3d4h`.
///
/// ```
/// use chrono::TimeDelta;
/// use solidq::status::format_age;
///
/// assert_eq!(format_age(TimeDelta::seconds(3)), "3s");
/// assert_eq!(format_age(TimeDelta::seconds(130)), "2m10s");
/// assert_eq!(format_age(TimeDelta::seconds(3900)), "1h5m");
/// assert_eq!(format_age(TimeDelta::milliseconds(-2500)), "-2s");
/// ```
pub fn format_age(age: TimeDelta) -> String {
    let secs = age.num_seconds();
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let text = match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{}h", secs / 86_400, (secs % 86_400) / 3600),
    };
    format!("{sign}{text}")
}

fn utc(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Replaces control characters so a stored name cannot break the table or the terminal.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Lays out rows under headers; columns whose flag in `right` is set are right-aligned.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        // No trailing blanks: the last cells may be short or empty.
        let mut out = out.trim_end().to_string();
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn count_cells(counts: &JobCounts) -> [String; 5] {
    [
        counts.ready.to_string(),
        counts.scheduled.to_string(),
        counts.claimed.to_string(),
        counts.failed.to_string(),
        counts.finished.to_string(),
    ]
}

/// The human-readable status: a table of processes with heartbeat age and alive/dead, then
/// job counts by state, overall and per queue.
///
/// ```
/// use std::time::Duration;
/// use chrono::NaiveDate;
/// use solidq::status::{render_table, StatusView};
/// use solidq::model::ProcessRow;
/// use solidq::store::{JobCounts, QueueCounts};
///
/// let now = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap().and_hms_opt(12, 0, 0).unwrap();
/// let process = ProcessRow {
///     id: 1,
///     kind: "Runtime".into(),
///     name: "solidq-web1-4242-ab12".into(),
///     pid: 4242,
///     hostname: "web1".into(),
///     metadata: Default::default(),
///     last_heartbeat_at: now - chrono::TimeDelta::seconds(130),
///     created_at: now - chrono::TimeDelta::hours(1),
/// };
/// let totals = JobCounts { ready: 1, ..JobCounts::default() };
/// let queues = vec![QueueCounts { queue: "default".into(), counts: totals.clone() }];
/// let text = render_table(&StatusView {
///     processes: &[process],
///     totals: &totals,
///     queues: &queues,
///     waiting: &[],
///     now,
///     alive_threshold: Duration::from_secs(60),
///     leader: None,
/// });
/// assert!(text.contains("2m10s"));
/// assert!(text.contains("dead"));
/// ```
pub fn render_table(view: &StatusView<'_>) -> String {
    let mut out = String::new();
    let threshold = format_duration(view.alive_threshold);
    if view.processes.is_empty() {
        out.push_str("Processes: none registered\n");
    } else {
        let mut alive = 0;
        let rows: Vec<Vec<String>> = view
            .processes
            .iter()
            .map(|p| {
                let age = heartbeat_age(view.now, p.last_heartbeat_at);
                let is_alive = is_alive(age, view.alive_threshold);
                alive += usize::from(is_alive);
                vec![
                    p.id.to_string(),
                    printable(&p.kind),
                    printable(&p.name),
                    printable(&p.hostname),
                    p.pid.to_string(),
                    format_age(age),
                    if is_alive { "alive" } else { "dead" }.to_string(),
                    if view.leader.is_some_and(|l| l.process == p.id) { "leader" } else { "" }.to_string(),
                ]
            })
            .collect();
        let dead = view.processes.len() - alive;
        out.push_str(&format!(
            "Processes: {} ({alive} alive, {dead} dead; dead = no heartbeat for over {threshold}, \
             SOLIDQ_ALIVE_THRESHOLD)\n",
            view.processes.len()
        ));
        out.push_str(&table(
            &["ID", "KIND", "NAME", "HOST", "PID", "HEARTBEAT", "STATE", "ROLE"],
            &rows,
            &[true, false, false, false, true, true, false, false],
        ));
        out.push_str(&leader_line(view));
        out.push_str(&abandoned_section(view));
    }
    let t = view.totals;
    out.push_str(&format!(
        "\nJobs: {} ready, {} scheduled, {} claimed, {} failed, {} finished",
        t.ready, t.scheduled, t.claimed, t.failed, t.finished
    ));
    // The states of the job lifecycle features, when they are in use.
    for (count, state) in
        [(t.waiting, "waiting"), (t.blocked, "blocked"), (t.discarded, "discarded"), (t.cancelled, "cancelled")]
    {
        if count > 0 {
            out.push_str(&format!(", {count} {state}"));
        }
    }
    out.push('\n');
    if !view.queues.is_empty() {
        let rows: Vec<Vec<String>> = view
            .queues
            .iter()
            .map(|q| {
                let mut row = vec![printable(&q.queue)];
                row.extend(count_cells(&q.counts));
                row
            })
            .collect();
        out.push_str(&table(
            &["QUEUE", "READY", "SCHEDULED", "CLAIMED", "FAILED", "FINISHED"],
            &rows,
            &[false, true, true, true, true, true],
        ));
    }
    let stuck = unservable(view.processes, view.waiting, view.now, view.alive_threshold);
    if !stuck.is_empty() {
        let total: i64 = stuck.iter().map(|u| u.jobs).sum();
        out.push_str(&format!("\nWaiting with no live process to run them: {total}\n"));
        let rows: Vec<Vec<String>> = stuck
            .iter()
            .map(|u| vec![printable(&u.kind), printable(&u.queue), u.jobs.to_string(), u.reason.to_string()])
            .collect();
        out.push_str(&table(&["KIND", "QUEUE", "JOBS", "WHY"], &rows, &[false, false, true, false]));
    }
    out
}

/// The abandoned executions of every live process, if any: a line with the total and a table
/// of process, job, kind, attempt, timeout and when it timed out.
fn abandoned_section(view: &StatusView<'_>) -> String {
    let mut rows = Vec::new();
    let mut total = 0;
    for process in view.processes {
        if !is_alive(heartbeat_age(view.now, process.last_heartbeat_at), view.alive_threshold) {
            continue;
        }
        let abandoned = process.metadata.abandoned();
        total += abandoned.count;
        for execution in &abandoned.executions {
            rows.push(vec![
                process.id.to_string(),
                execution.job_id.to_string(),
                printable(&execution.kind),
                execution.attempt.to_string(),
                format_duration(Duration::from_secs_f64(execution.timeout_secs.max(0.0))),
                execution.timed_out_at.map(|at| utc(at.naive_utc())).unwrap_or_default(),
            ]);
        }
        let unlisted = abandoned.count.saturating_sub(abandoned.executions.len());
        if unlisted > 0 {
            rows.push(vec![
                process.id.to_string(),
                format!("(+{unlisted} more)"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    if total == 0 {
        return String::new();
    }
    let mut out = format!("\nAbandoned executions (ran past their timeout, handler still running): {total}\n");
    out.push_str(&table(
        &["PROCESS", "JOB", "KIND", "ATTEMPT", "TIMEOUT", "TIMED OUT AT"],
        &rows,
        &[true, true, false, true, true, false],
    ));
    out
}

/// Who leads and since when; a leader whose row is gone is named as such (it died or left,
/// and no other process has taken the lock yet).
fn leader_line(view: &StatusView<'_>) -> String {
    let Some(leader) = view.leader else {
        return "Leader: none elected yet (the maintenance sweeps run in the elected process)\n".into();
    };
    let since = format_age(view.now - leader.elected_at);
    match view.processes.iter().find(|p| p.id == leader.process) {
        Some(p) => format!(
            "Leader: process {} ({}) since {} UTC ({since} ago), term {}\n",
            p.id,
            printable(&p.name),
            leader.elected_at.format("%Y-%m-%d %H:%M:%S"),
            leader.term
        ),
        None => format!(
            "Leader: process {} (gone; another process takes over at its next try), term {}\n",
            leader.process, leader.term
        ),
    }
}

/// The status as one JSON object:
///
/// - `processes`: objects with `id`, `kind`, `name`, `hostname`, `pid`, `metadata`,
///   `last_heartbeat_at` and `created_at` (RFC 3339, UTC), `heartbeat_age_secs` (float,
///   negative under clock skew), `alive` and `abandoned` (`count` and `executions`, each
///   with `job_id`, `kind`, `attempt`, `timeout_secs` and `timed_out_at`: executions that ran
///   past their timeout and whose handler still runs, see [`AbandonedExecutions`](crate::model::AbandonedExecutions));
/// - `jobs`: `ready`, `scheduled`, `claimed`, `failed`, `finished`, `blocked`, `waiting`, `discarded`,
///   `cancelled` and `queues`, a list of objects with `queue` and the same nine counts;
/// - `unservable`: the waiting jobs no live process can run, as objects with `kind`, `queue`,
///   `jobs` and `reason`;
/// - `leader`: `process_id`, `term`, `elected_at` (RFC 3339, UTC) and `registered` (whether
///   its process row still exists), or `null` before the first election; each process also has
///   `leader` (a boolean);
/// - `now` (RFC 3339, UTC) and `alive_threshold_secs`, to interpret `alive`.
pub fn render_json(view: &StatusView<'_>) -> Value {
    let processes: Vec<Value> = view
        .processes
        .iter()
        .map(|p| {
            let age = heartbeat_age(view.now, p.last_heartbeat_at);
            json!({
                "id": p.id,
                "kind": p.kind,
                "name": p.name,
                "hostname": p.hostname,
                "pid": p.pid,
                "metadata": p.metadata,
                "last_heartbeat_at": utc(p.last_heartbeat_at),
                "created_at": utc(p.created_at),
                "heartbeat_age_secs": age.num_milliseconds() as f64 / 1000.0,
                "alive": is_alive(age, view.alive_threshold),
                "leader": view.leader.is_some_and(|l| l.process == p.id),
                "abandoned": p.metadata.abandoned(),
            })
        })
        .collect();
    let t = view.totals;
    json!({
        "now": utc(view.now),
        "alive_threshold_secs": view.alive_threshold.as_secs_f64(),
        "processes": processes,
        "leader": view.leader.map(|l| json!({
            "process_id": l.process,
            "term": l.term,
            "elected_at": utc(l.elected_at),
            "registered": view.processes.iter().any(|p| p.id == l.process),
        })),
        "jobs": {
            "ready": t.ready,
            "scheduled": t.scheduled,
            "claimed": t.claimed,
            "failed": t.failed,
            "finished": t.finished,
            "blocked": t.blocked,
            "waiting": t.waiting,
            "discarded": t.discarded,
            "cancelled": t.cancelled,
            "queues": view.queues,
        },
        "unservable": unservable(view.processes, view.waiting, view.now, view.alive_threshold),
    })
}

/// Reads every process and the job counts from `store` and renders the status table, as
/// `solidq status` prints it.
///
/// ```no_run
/// # fn demo(store: &solidq::Store) -> Result<(), solidq::store::StoreError> {
/// println!("{}", solidq::status::status_text(store, std::time::Duration::from_secs(300))?);
/// # Ok(()) }
/// ```
pub fn status_text(store: &crate::store::Store, alive_threshold: Duration) -> crate::store::StoreResult<String> {
    let processes = store.processes()?;
    let (totals, queues) = store.counts()?;
    let waiting = store.waiting()?;
    let leader = store.leader()?;
    let view = StatusView {
        processes: &processes,
        totals: &totals,
        queues: &queues,
        waiting: &waiting,
        now: chrono::Utc::now().naive_utc(),
        alive_threshold,
        leader: leader.as_ref(),
    };
    Ok(render_table(&view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AbandonedExecution, AbandonedExecutions, ProcessDetails, ProcessMetadata, WorkerDetails};
    use chrono::NaiveDate;

    fn details(kinds: &[&str], queues: &[&str]) -> ProcessDetails {
        ProcessDetails {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            workers: vec![WorkerDetails { queues: queues.iter().map(|q| q.to_string()).collect(), concurrency: 1 }],
            backend: "sqlite".into(),
        }
    }

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 26).unwrap().and_hms_milli_opt(12, 0, 0, 0).unwrap()
    }

    fn process(id: i64, name: &str, age: TimeDelta) -> ProcessRow {
        ProcessRow {
            id,
            kind: "Runtime".into(),
            name: name.into(),
            pid: 1000 + id as i32,
            hostname: "web1".into(),
            metadata: ProcessMetadata {
                details: ProcessDetails { backend: "sqlite".into(), ..ProcessDetails::default() },
                ..ProcessMetadata::default()
            },
            last_heartbeat_at: now() - age,
            created_at: now() - TimeDelta::hours(2),
        }
    }

    /// A view at [`now`] with nothing waiting.
    fn view<'a>(
        processes: &'a [ProcessRow],
        totals: &'a JobCounts,
        queues: &'a [QueueCounts],
        alive_threshold_secs: u64,
    ) -> StatusView<'a> {
        StatusView {
            processes,
            totals,
            queues,
            waiting: &[],
            now: now(),
            alive_threshold: Duration::from_secs(alive_threshold_secs),
            leader: None,
        }
    }

    fn counts(ready: i64, failed: i64) -> JobCounts {
        JobCounts { ready, scheduled: 2, claimed: 3, failed, finished: 100, ..JobCounts::default() }
    }

    #[test]
    fn ages_are_short_and_truncated() {
        assert_eq!(format_age(TimeDelta::zero()), "0s");
        assert_eq!(format_age(TimeDelta::milliseconds(999)), "0s");
        assert_eq!(format_age(TimeDelta::seconds(59)), "59s");
        assert_eq!(format_age(TimeDelta::seconds(60)), "1m0s");
        assert_eq!(format_age(TimeDelta::seconds(3599)), "59m59s");
        assert_eq!(format_age(TimeDelta::seconds(7260)), "2h1m");
        assert_eq!(format_age(TimeDelta::seconds(90_000)), "1d1h");
        assert_eq!(format_age(TimeDelta::seconds(-5)), "-5s");
    }

    #[test]
    fn dead_means_older_than_the_threshold() {
        let threshold = Duration::from_secs(60);
        assert!(is_alive(TimeDelta::seconds(60), threshold));
        assert!(!is_alive(TimeDelta::milliseconds(60_001), threshold));
        assert!(is_alive(TimeDelta::seconds(-10), threshold));
    }

    #[test]
    fn table_shows_every_process_and_the_counts() {
        let processes = vec![
            process(1, "solidq-web1-1001-aaaa", TimeDelta::seconds(3)),
            process(22, "solidq-web1-1022-bbbb", TimeDelta::seconds(130)),
        ];
        let totals = counts(5, 1);
        let queues = vec![
            QueueCounts { queue: "default".into(), counts: counts(4, 1) },
            QueueCounts { queue: "reports-monthly".into(), counts: counts(1, 0) },
        ];
        let leader = Leader { process: 1, term: 3, elected_at: now() - TimeDelta::seconds(600) };
        let text = render_table(&StatusView { leader: Some(&leader), ..view(&processes, &totals, &queues, 60) });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Processes: 2 (1 alive, 1 dead; dead = no heartbeat for over 1m"), "{text}");
        assert_eq!(lines[1], "ID  KIND     NAME                   HOST   PID  HEARTBEAT  STATE  ROLE");
        assert_eq!(lines[2], " 1  Runtime  solidq-web1-1001-aaaa  web1  1001         3s  alive  leader");
        assert_eq!(lines[3], "22  Runtime  solidq-web1-1022-bbbb  web1  1022      2m10s  dead");
        assert_eq!(
            lines[4],
            "Leader: process 1 (solidq-web1-1001-aaaa) since 2026-11-26 11:50:00 UTC (10m0s ago), term 3"
        );
        assert!(text.contains("Jobs: 5 ready, 2 scheduled, 3 claimed, 1 failed, 100 finished"));
        assert!(text.contains("QUEUE            READY  SCHEDULED  CLAIMED  FAILED  FINISHED"));
        assert!(text.contains("default              4          2        3       1       100"));
        assert!(text.contains("reports-monthly      1          2        3       0       100"));
    }

    #[test]
    fn table_without_processes_or_jobs() {
        let text = render_table(&view(&[], &JobCounts::default(), &[], 300));
        assert_eq!(text, "Processes: none registered\n\nJobs: 0 ready, 0 scheduled, 0 claimed, 0 failed, 0 finished\n");
    }

    #[test]
    fn control_characters_in_names_are_neutralised() {
        let processes = vec![process(1, "evil\n\u{1b}[2Jname", TimeDelta::seconds(1))];
        let text = render_table(&view(&processes, &JobCounts::default(), &[], 60));
        assert!(text.contains("evil??[2Jname"), "{text}");
    }

    #[test]
    fn json_has_processes_and_jobs() {
        let processes = vec![process(1, "a", TimeDelta::milliseconds(1500)), process(2, "b", TimeDelta::seconds(600))];
        let totals = counts(1, 0);
        let queues = vec![QueueCounts { queue: "default".into(), counts: counts(1, 0) }];
        let value = render_json(&view(&processes, &totals, &queues, 300));
        let first = &value["processes"][0];
        assert_eq!(first["id"], 1);
        assert_eq!(first["kind"], "Runtime");
        assert_eq!(first["name"], "a");
        assert_eq!(first["hostname"], "web1");
        assert_eq!(first["pid"], 1001);
        assert_eq!(first["metadata"]["details"]["backend"], "sqlite");
        assert_eq!(first["last_heartbeat_at"], "2026-11-26T11:59:58.500Z");
        assert_eq!(first["heartbeat_age_secs"], 1.5);
        assert_eq!(first["alive"], true);
        assert_eq!(value["processes"][1]["alive"], false);
        assert_eq!(value["jobs"]["ready"], 1);
        assert_eq!(value["jobs"]["finished"], 100);
        assert_eq!(value["jobs"]["queues"][0]["queue"], "default");
        assert_eq!(value["jobs"]["queues"][0]["ready"], 1);
        assert_eq!(value["jobs"]["queues"][0]["claimed"], 3);
        assert_eq!(value["alive_threshold_secs"], 300.0);
        assert_eq!(value["now"], "2026-11-26T12:00:00.000Z");
    }

    #[test]
    fn abandoned_executions_of_live_processes_are_listed_in_text_and_json() {
        let execution = |job_id| AbandonedExecution {
            job_id,
            kind: "report".into(),
            attempt: 2,
            timeout_secs: 300.0,
            timed_out_at: Some(now().and_utc()),
        };
        let mut busy = process(1, "busy", TimeDelta::seconds(1));
        busy.metadata.abandoned = Some(AbandonedExecutions::new(vec![execution(41), execution(42)]));
        let mut gone = process(2, "gone", TimeDelta::hours(1));
        gone.metadata.abandoned = Some(AbandonedExecutions::new(vec![execution(7)]));
        let idle = process(3, "idle", TimeDelta::seconds(1));
        let processes = vec![busy, gone, idle];
        let totals = JobCounts::default();
        let view = view(&processes, &totals, &[], 60);
        let text = render_table(&view);
        assert!(text.contains("Abandoned executions (ran past their timeout, handler still running): 2\n"), "{text}");
        assert!(text.contains("PROCESS  JOB  KIND    ATTEMPT  TIMEOUT  TIMED OUT AT"), "{text}");
        assert!(text.contains("      1   41  report        2       5m  2026-11-26T12:00:00.000Z"), "{text}");
        assert!(!text.contains("   7  report"), "a dead process's list is stale: {text}");
        let value = render_json(&view);
        assert_eq!(value["processes"][0]["abandoned"]["count"], 2);
        assert_eq!(value["processes"][0]["abandoned"]["executions"][1]["job_id"], 42);
        assert_eq!(value["processes"][2]["abandoned"]["count"], 0);
        assert_eq!(
            AbandonedExecutions::new((0..60).map(execution).collect()).executions.len(),
            AbandonedExecutions::LISTED
        );
    }

    #[test]
    fn unservable_names_kinds_without_a_live_handler_and_queues_nobody_works() {
        let mut web = process(1, "web", TimeDelta::seconds(1));
        web.metadata.details = details(&["mail", "report"], &["mailers", "default"]);
        let mut gone = process(2, "gone", TimeDelta::hours(1));
        gone.metadata.details = details(&["image"], &["*"]);
        let waiting =
            |kind: &str, queue: &str, ready| Waiting { kind: kind.into(), queue: queue.into(), ready, scheduled: 1 };
        let rows = [waiting("mail", "mailers", 2), waiting("report", "reports", 3), waiting("image", "default", 4)];
        let found = unservable(&[web, gone], &rows, now(), Duration::from_secs(60));
        assert_eq!(
            found.iter().map(|u| (u.kind.as_str(), u.queue.as_str(), u.jobs, u.reason)).collect::<Vec<_>>(),
            [
                ("report", "reports", 4, "no live process with a handler for this kind works this queue"),
                ("image", "default", 5, "no live process has a handler for this kind"),
            ]
        );
    }
}
