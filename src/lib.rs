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
#![warn(missing_docs)]

// The layers, bottom up: `model` and `recurring` (plain types), `lifecycle` (what an outcome means), `store`
// (all SQL), `maintenance` (periodic services over the store), the actors, the public API
// (`job`, `queue`, `runtime`), and the surface on top (`status`, and `cli` behind its feature).
pub mod model;

pub mod recurring;

pub mod lifecycle;

pub mod store;

pub mod maintenance;

mod actors;
mod arbiters;
mod liveness;
mod registry;

pub mod config;
pub mod job;
pub mod logging;
mod queue;
mod runtime;

#[cfg(feature = "cli")]
pub mod cli;
pub mod status;

pub use config::Config;
pub use job::{CancelReason, Cancellation, EnqueueError, EnqueueOptions, ErrorAction, Job, JobError, JobMeta, Perform};
pub use model::{ConcurrencyLimit, DatabaseUrl, Enqueued, JobId, JobState, NewJob, OnConflict};
pub use queue::Queue;
pub use recurring::RecurringTask;
pub use recurring::RecurringTasks;
pub use runtime::{Runtime, RuntimeError, RuntimeHandle, ShutdownReport, DEFAULT_STUCK_AFTER};
pub use store::{DbConnection, EnqueueConnection, SharedStore, Store, StoreError};
