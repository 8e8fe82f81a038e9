//! Heartbeat: registers the process, stamps `last_heartbeat_at` every heartbeat interval,
//! keeps the session-liveness connection up, and deregisters on shutdown.
//!
//! The process's abandoned executions (handlers that ran past their timeout and still run, see
//! [`Abandoned`]) go into the `abandoned` key of the row's metadata, for `solidq status`: the
//! beat rewrites the metadata in the same statement when the list changed, and a list that
//! changes brings the next beat forward (checked every [`ABANDONED_CHECK_INTERVAL`], without
//! a statement while nothing changed).
//!
//! Two self-fencing rules keep a process from working under a claim others consider dead:
//! - the heartbeat finds the row gone (pruned while alive): register again as a new process;
//! - no heartbeat could be written for longer than the alive threshold: tell the supervisor to
//!   stop claiming (running jobs go on). Once the database answers: if the row is gone, another
//!   watchdog reaped it and handed its claims back, so register as a new process; if the row is
//!   still there, nobody reaped it (reaping deletes the row in the same transaction that hands
//!   the claims back), so resume under the same identity.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use slog::{error, info, o, warn, Logger};

use super::{answer_the_supervisor, blocking, Backoff, SetProcess};
use crate::events::Event;
use crate::liveness;
use crate::metrics::Telemetry;
use crate::model::{NewProcess, ProcessDetails, ProcessId, ProcessMetadata};
use crate::registry::Abandoned;
use crate::store::{Beat, SharedStore, StoreError};

/// How often the session-liveness connection is checked (PostgreSQL), so that after a database
/// restart a live process re-takes its lock long before a watchdog could confirm it dead.
pub const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How often the heartbeat looks whether the abandoned executions changed.
pub const ABANDONED_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Heartbeat → supervisor (a notification the heartbeat sends up, declared here so that the
/// heartbeat does not depend on its supervisor): the process works under `id` from now on: it registered (at start,
/// or again after its row was reaped while it was alive), or its row survived a loss of
/// contact.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ProcessReplaced {
    /// The id of the process row.
    pub id: ProcessId,
}

/// Heartbeat → supervisor: no heartbeat could be written for longer than the alive threshold;
/// others may already consider this process dead, so it stops claiming until the database
/// confirms its row.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LostContact {
    /// How long since the last successful heartbeat.
    pub silent_for: Duration,
}

/// Supervisor → heartbeat: deregister the process (release its claims, delete its row).
/// Answers the number of claims released, or the error text.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<usize, String>")]
pub struct Deregister;

/// Default time between heartbeats (`SOLIDQ_HEARTBEAT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of the heartbeat.
#[derive(Clone)]
pub struct HeartbeatSettings {
    /// Time between heartbeats.
    pub interval: Duration,
    /// After this long without a successful heartbeat, the process fences itself.
    pub alive_threshold: Duration,
    /// Worker groups etc., written into the process metadata.
    pub details: ProcessDetails,
}

/// The heartbeat actor.
pub struct Heartbeat {
    settings: HeartbeatSettings,
    store: SharedStore,
    supervisor: Recipient<ProcessReplaced>,
    fence: Recipient<LostContact>,
    logger: Logger,
    process: Option<ProcessId>,
    last_ok: Instant,
    fenced: bool,
    in_progress: bool,
    session_check_in_progress: bool,
    deregistered: bool,
    errors: Backoff,
    last_progress: Instant,
    /// The executions abandoned after a timeout, and the version of their list in the row.
    abandoned: Abandoned,
    written: Option<u64>,
    /// Told of each tick and beat (liveness, readiness, the heartbeat age) and of fencing.
    telemetry: Telemetry,
}

impl Heartbeat {
    /// A heartbeat for `process` (`None`: register at start) that writes `abandoned` into the
    /// process row.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: HeartbeatSettings,
        store: SharedStore,
        supervisor: Recipient<ProcessReplaced>,
        fence: Recipient<LostContact>,
        process: Option<ProcessId>,
        abandoned: Abandoned,
        logger: &Logger,
    ) -> Self {
        let retry_max = settings.interval.min(Duration::from_secs(5));
        Heartbeat {
            settings,
            store,
            supervisor,
            fence,
            logger: logger.new(o!("actor" => "heartbeat")),
            process,
            last_ok: Instant::now(),
            fenced: false,
            in_progress: false,
            session_check_in_progress: false,
            deregistered: false,
            errors: Backoff::new(Duration::from_millis(250), retry_max),
            last_progress: Instant::now(),
            abandoned,
            written: None,
            telemetry: Telemetry::default(),
        }
    }

    /// Reports ticks, beats and fencing to `telemetry`.
    pub(crate) fn reporting_to(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Fences the process (it stops claiming) and says so.
    fn fence(&mut self, silent_for: Duration) {
        self.fenced = true;
        self.telemetry.metrics.set_fenced(true);
        self.telemetry.events.emit(Event::ProcessFenced { process: self.process, silent_for });
        self.fence.do_send(LostContact { silent_for });
    }

    /// The row this process writes about itself, with a fresh unique name (at most 255 bytes,
    /// as MySQL's `VARCHAR(255)` column holds).
    pub fn describe(details: &ProcessDetails) -> NewProcess {
        let hostname = liveness::hostname();
        let pid = std::process::id() as i32;
        NewProcess {
            kind: "Runtime".into(),
            name: format!("runtime-{}-{pid}-{:08x}", truncated(&hostname, MAX_HOSTNAME_IN_NAME), fastrand::u32(..)),
            pid,
            hostname,
            metadata: liveness::process_metadata(details.clone()),
        }
    }

    /// The row's metadata with the abandoned executions as they are now (the key only while
    /// there are some), and the version of their list.
    fn metadata(&self) -> (u64, ProcessMetadata) {
        let mut metadata = liveness::process_metadata(self.settings.details.clone());
        let (version, abandoned) = self.abandoned.snapshot();
        metadata.abandoned = (abandoned.count > 0).then_some(abandoned);
        (version, metadata)
    }

    /// The abandoned executions changed since the row was written: beat now.
    fn check_abandoned(&mut self, ctx: &mut Context<Self>) {
        if self.process.is_some() && self.written != Some(self.abandoned.version()) {
            self.beat(ctx);
        }
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.in_progress {
            return;
        }
        self.last_progress = Instant::now();
        self.telemetry.metrics.heartbeat_ticked(self.settings.interval);
        if self.deregistered {
            return;
        }
        self.in_progress = true;
        let process = self.process;
        let (version, metadata) = match self.written == Some(self.abandoned.version()) {
            true => (self.written, None),
            false => {
                let (version, metadata) = self.metadata();
                (Some(version), Some(metadata))
            }
        };
        let call = blocking(&self.store, move |s| match process {
            Some(id) => s.beat_with_metadata(id, Utc::now().naive_utc(), metadata.as_ref()),
            None => Ok(Beat::Missing),
        });
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            act.in_progress = false;
            act.last_progress = Instant::now();
            match result {
                Ok(Beat::Stamped) => {
                    act.written = version;
                    act.beat_ok();
                    if let Some(id) = act.process {
                        act.telemetry.metrics.heartbeat_written(id);
                    }
                    if std::mem::take(&mut act.fenced) {
                        if let Some(id) = act.process {
                            info!(act.logger, "database answers and the process row survived: resuming"; "process_id" => id);
                            act.supervisor.do_send(ProcessReplaced { id });
                        }
                    }
                }
                Ok(Beat::Missing) => act.register(ctx),
                Err(StoreError::DatabaseGone(reason)) => act.database_gone(&reason),
                Err(err) => act.beat_failed(&err.to_string(), ctx),
            }
        }));
    }

    /// The database file was deleted or replaced under this process: nothing it writes can be
    /// kept, so it stops claiming at once and says so (beats continue, to keep saying so).
    fn database_gone(&mut self, reason: &str) {
        self.errors.fail();
        if self.errors.should_log() {
            error!(self.logger, "the database is gone; this process is fenced and writes nothing"; "reason" => reason,
                "process_id" => self.process);
        }
        if !self.fenced {
            self.fence(self.last_ok.elapsed());
        }
    }

    fn beat_ok(&mut self) {
        self.last_ok = Instant::now();
        let failures = self.errors.succeed();
        if failures > 0 {
            info!(self.logger, "heartbeat written again"; "failed_attempts" => failures);
        }
    }

    fn beat_failed(&mut self, err: &str, ctx: &mut Context<Self>) {
        let retry_in = self.errors.fail();
        let silent_for = self.last_ok.elapsed();
        if self.errors.should_log() {
            error!(self.logger, "heartbeat failed"; "error" => err, "failures" => self.errors.failures,
                "silent_for_ms" => silent_for.as_millis() as u64, "retry_in_ms" => retry_in.as_millis() as u64);
            self.telemetry
                .events
                .emit(Event::HeartbeatFailing { consecutive: self.errors.failures, error: err.to_string() });
        }
        if !self.fenced && silent_for > self.settings.alive_threshold {
            warn!(self.logger, "no heartbeat for longer than the alive threshold: fencing this process";
                "process_id" => self.process, "silent_for_ms" => silent_for.as_millis() as u64);
            self.fence(silent_for);
        }
        ctx.run_later(retry_in, |act, ctx| act.beat(ctx));
    }

    /// Registers a new identity: at start, or after the row was pruned.
    fn register(&mut self, ctx: &mut Context<Self>) {
        if self.deregistered {
            return;
        }
        self.in_progress = true;
        let old = self.process;
        let mut new = Self::describe(&self.settings.details);
        let (version, metadata) = self.metadata();
        new.metadata = metadata;
        let call =
            blocking(&self.store, move |s| s.register_process(&new, Utc::now().naive_utc()).map(|id| (id, new.name)));
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            act.in_progress = false;
            match result {
                Ok((id, name)) => {
                    match old {
                        Some(old) => {
                            warn!(act.logger, "registered again as a new process";
                            "old_process_id" => old, "process_id" => id, "name" => &name,
                            "reason" => "the row was deleted while this process was alive");
                            // Another watchdog judged it dead and took its claims.
                            let silent_for = act.last_ok.elapsed();
                            act.telemetry.events.emit(Event::ProcessFenced { process: Some(old), silent_for });
                        }
                        None => info!(act.logger, "process registered"; "process_id" => id, "name" => &name),
                    }
                    act.process = Some(id);
                    act.written = Some(version);
                    act.fenced = false;
                    act.beat_ok();
                    act.telemetry.metrics.heartbeat_written(id);
                    act.supervisor.do_send(ProcessReplaced { id });
                }
                Err(err) => act.beat_failed(&err.to_string(), ctx),
            }
        }));
    }

    fn check_session(&mut self, ctx: &mut Context<Self>) {
        let Some(process) = self.process.filter(|_| !self.fenced && !self.deregistered) else { return };
        if self.session_check_in_progress {
            return;
        }
        self.session_check_in_progress = true;
        let call = blocking(&self.store, move |s| s.keep_session(process));
        ctx.spawn(call.into_actor(self).map(|result, act, _| {
            act.session_check_in_progress = false;
            if let Ok(true) = result {
                warn!(act.logger, "session-liveness connection was lost and has been re-established");
            }
        }));
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.interval, |act, ctx| act.beat(ctx));
        ctx.run_interval(SESSION_CHECK_INTERVAL, |act, ctx| act.check_session(ctx));
        ctx.run_interval(ABANDONED_CHECK_INTERVAL, |act, ctx| act.check_abandoned(ctx));
        if self.process.is_none() {
            self.beat(ctx);
        }
    }
}

impl Handler<SetProcess> for Heartbeat {
    type Result = ();
    fn handle(&mut self, msg: SetProcess, _: &mut Context<Self>) {
        if msg.0.is_some() {
            self.process = msg.0;
        }
    }
}

answer_the_supervisor!(Heartbeat, |this| this.last_progress);

impl Handler<Deregister> for Heartbeat {
    type Result = ResponseActFuture<Self, Result<usize, String>>;
    fn handle(&mut self, _: Deregister, _: &mut Context<Self>) -> Self::Result {
        self.deregistered = true;
        self.telemetry.metrics.deregistered();
        let process = self.process.take();
        let call = blocking(&self.store, move |s| match process {
            Some(id) => s.deregister(id, Utc::now().naive_utc()),
            None => Ok(0),
        });
        Box::pin(call.into_actor(self).map(move |result, act, _| {
            match &result {
                Ok(released) => {
                    info!(act.logger, "process deregistered"; "process_id" => process, "released" => released)
                }
                Err(err) => {
                    error!(act.logger, "deregistering failed; the watchdog of another process will release the claims";
                    "process_id" => process, "error" => %err)
                }
            }
            result.map_err(|e| e.to_string())
        }))
    }
}

/// Bytes of the hostname kept in a process name: the rest of the name takes at most 36 more.
const MAX_HOSTNAME_IN_NAME: usize = 200;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
