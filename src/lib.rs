//! solidq: a durable, database-backed job runtime for actix.
//!
//! Jobs live in SQL tables (SQLite by default, PostgreSQL in production). A supervisor actor
//! runs workers that claim ready jobs and hand them to the job-handler actors an application
//! registers, a dispatcher for scheduled jobs, a scheduler for [recurring tasks](recurring),
//! a heartbeat for the process row and a watchdog that hands the jobs of dead processes back.
//!
//! ```no_run
//! use actix::prelude::*;
//! use serde::{Deserialize, Serialize};
//! use solidq::{EnqueueOptions, Job, JobError, Perform, Runtime};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Resize { image: u32 }
//!
//! impl Job for Resize {
//!     const KIND: &'static str = "media.resize"; // stored with the job: keep it stable
//!     const QUEUE: &'static str = "media";
//! }
//!
//! // A blocking handler on a SyncArbiter; `register` takes async (`Context`) actors.
//! struct Resizer;
//! impl Actor for Resizer { type Context = SyncContext<Self>; }
//! impl Handler<Perform<Resize>> for Resizer {
//!     type Result = Result<(), JobError>;
//!     fn handle(&mut self, msg: Perform<Resize>, _: &mut SyncContext<Self>) -> Self::Result {
//!         if msg.job.image == 0 {
//!             return Err(JobError::permanent("image 0 does not exist"));
//!         }
//!         Ok(()) // a panic here fails this attempt with the panic message; the pool is replaced
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // SOLIDQ_DATABASE_URL, SOLIDQ_WORKERS, ...; applies migrations.
//!     let runtime = Runtime::from_env()?.register_sync::<Resize, _, _>(2, || Resizer);
//!     runtime.queue().enqueue_new_blocking(&[
//!         solidq::NewJob::from_job(&Resize { image: 7 }, EnqueueOptions::new().priority(-1))?,
//!     ])?;
//!     // Standalone: TERM/INT drain and exit 0, QUIT exits at once.
//!     runtime.run()?;
//!     Ok(())
//! }
//! ```
//!
//! # Where things are
//! The layers, bottom up; each uses only those below it. Two folders hold a handle one layer
//! up beside their types: `job/queue.rs` and `recurring/handle.rs`.
//!
//! | layer | modules |
//! | --- | --- |
//! | plain types | [`model`] (ids, jobs, claims, process rows, names, durations, URLs), [`recurring`] (tasks and schedules), [`lifecycle`] (what an outcome means), [`job`] (Job, Perform, JobError, Cancellation, EnqueueOptions) |
//! | storage, the only SQL | [`store`]: roles (`jobs/`, `processes`, `maintenance`, `inspect`, `manage`, `concurrency`, `recurring`, `metrics`, and for the dashboard `views/` (bounded, keyset-paged reads) and `bulk` (actions bounded by an upper id)) over `executions` and one `dialect/` per backend |
//! | telemetry | [`events`] (alert events, delivered off the hot path), [`metrics`] (this process's series, the exporter, `SOLIDQ_METRICS_BIND`; its SQL in `store/metrics.rs`), [`health`] (liveness and readiness) |
//! | periodic work | [`maintenance`]: dispatcher, watchdog, scheduler, blocked sweep, cleaner, tidier; each a service with `run_once` |
//! | actors | `actors/` (supervisor, worker, claim book, completer, heartbeat, periodic) and `registry/` (kind → handler actor, panics caught) |
//! | public API | [`Runtime`], [`testing`] (the test helpers: [`testing::TestQueue`]), the handles [`Queue`] (`job/queue.rs`) and [`RecurringTasks`] (`recurring/handle.rs`), [`config`], [`logging`] |
//! | surface | [`status`], `dashboard` (actix-web pages, `/metrics`, `/health/*`) behind the `dashboard` feature, and `cli` behind its feature (which turns `dashboard` on) |
//!
//! A job's path, by file: `job/queue.rs` ([`Queue::enqueue`]) → `store/jobs/enqueue.rs` (the
//! job row and its ready or scheduled execution, one transaction; `maintenance/dispatcher.rs`
//! later moves a due scheduled job to ready) → `actors/worker.rs` (claims up to its free slots,
//! `store/jobs/mod.rs`; the claims go into `actors/claim_book.rs`) → `registry/` (deserializes
//! the arguments and sends [`Perform`] to the handler actor) → `lifecycle.rs` (the outcome
//! becomes a transition: complete, retry, fail, release) → `actors/completer.rs` (writes a batch
//! of outcomes with their claim tokens) → `store/jobs/transitions.rs` (what each transition
//! writes). Meanwhile `actors/heartbeat.rs` stamps the process row and
//! `maintenance/watchdog.rs` hands back the jobs of processes that died.
#![warn(missing_docs)]

// In layer order, bottom up (see "Where things are" above).
pub mod model;

pub mod recurring;

pub mod lifecycle;

pub mod store;

pub mod events;
pub mod health;
pub mod metrics;

pub mod maintenance;

mod actors;
mod arbiters;
mod liveness;
mod registry;

pub mod config;
pub mod job;
pub mod logging;
mod runtime;
pub mod testing;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod status;

pub use config::Config;
pub use events::Event;
pub use health::Health;
pub use job::{
    BatchBuilder, CancelReason, Cancellation, EnqueueError, EnqueueOptions, EnqueuedBatch, ErrorAction, Job, JobError,
    JobMeta, Perform, Queue, Workflow, WorkflowIds,
};
pub use metrics::{Exporter, Metrics};
pub use model::{
    BatchId, ConcurrencyLimit, DatabaseUrl, Dependency, Enqueued, JobId, JobState, NewJob, OnConflict,
    OnDependencyFailure,
};
pub use recurring::{RecurringTask, RecurringTasks};
pub use runtime::{Runtime, RuntimeError, RuntimeHandle, ShutdownReport, DEFAULT_STUCK_AFTER};
pub use store::{DbConnection, EnqueueConnection, SharedStore, Store, StoreError};
