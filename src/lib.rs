//! solidq: a durable, database-backed job runtime for actix.
//!
//! Jobs live in SQL tables (SQLite by default, PostgreSQL in production). A supervisor actor
//! runs workers that claim ready jobs and hand them to the job-handler actors an application
//! registers, a dispatcher for scheduled jobs, a heartbeat for the process row and a watchdog
//! that hands the jobs of dead processes back.
#![warn(missing_docs)]

pub mod actors;
pub mod cli;
pub mod config;
pub mod job;
pub mod liveness;
pub mod logging;
pub mod queue;
pub mod registry;
pub mod runtime;
pub mod store;

pub use config::Config;
pub use job::{EnqueueError, EnqueueOptions, Job, JobError, JobMeta, NewJob, Perform};
pub use queue::Queue;
pub use runtime::{Runtime, RuntimeHandle};
