//! Messages shared between the actors. Each is named for what it asks; its result type sits
//! next to it.

use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::store::ProcessId;

/// Supervisor → every child: the process id to work for; `None` while the process is fenced
/// (it could not prove it is alive) or not yet registered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetProcess(pub Option<ProcessId>);

/// Supervisor → child: when did your loop last make progress? A child that does not answer
/// in time, or whose answer is too old, is stuck and gets restarted.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Instant")]
pub struct Ping;

/// Supervisor → child: stop now (restart or final shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopChild;

/// Supervisor → worker: stop claiming new jobs (drain).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopClaiming;

/// Supervisor → worker: resume claiming after a fence was lifted.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ResumeClaiming;

/// Heartbeat → supervisor: the process row was gone (pruned while alive) and the process has
/// registered again under a new id.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ProcessReplaced {
    /// The id it had.
    pub old: Option<ProcessId>,
    /// The new id.
    pub new: ProcessId,
}

/// Heartbeat → supervisor: no heartbeat could be written for longer than the alive threshold;
/// others may already consider this process dead, so stop claiming.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Fenced {
    /// How long since the last successful heartbeat.
    pub silent_for: Duration,
}

/// Supervisor → heartbeat: deregister the process (release its claims, delete its row).
/// Answers the number of claims released, or the error text.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<usize, String>")]
pub struct Deregister;

/// Anyone → supervisor: the current process id, if registered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Option<ProcessId>")]
pub struct CurrentProcess;

/// Anyone → supervisor: drain and stop. `immediate` skips the drain (SIGQUIT).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown {
    /// Skip waiting for running jobs.
    pub immediate: bool,
}

/// What a shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Jobs still running when the shutdown timeout expired.
    pub abandoned: usize,
    /// Claims returned to ready by deregistration.
    pub released: usize,
    /// Whether the process row was deleted.
    pub deregistered: bool,
}
