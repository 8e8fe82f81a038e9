//! Batches: jobs enqueued together, with callbacks enqueued once when the last of them ends.

use chrono::Utc;

use super::{EnqueueError, EnqueueOptions, Job, Queue};
use crate::model::{BatchId, Enqueued, JobId, NewJob};
use crate::store::composition::{self, BatchInfo, NewBatch};
use crate::store::DbConnection;

/// A batch being built: its callbacks, then [`BatchBuilder::enqueue`]. Start one with
/// [`Queue::batch`].
///
/// Each callback is an ordinary job, enqueued exactly once, in the same transaction as the
/// outcome of the batch's last job to end: `on_success` when every job finished,
/// `on_failure` when at least one failed for good, was discarded or was cancelled, and
/// `on_finish` in both cases. A callback finds its batch (counts, member ids) with
/// [`Queue::batch_of`] on its own job id. A running member may add jobs to its batch with
/// [`Queue::add_to_batch`]: the batch stays open while one of its jobs has not ended.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Resize { image: u32 }
/// # impl solidq::Job for Resize { const KIND: &'static str = "resize"; }
/// # #[derive(Serialize, Deserialize)] struct NotifyAlbum { album: u32 }
/// # impl solidq::Job for NotifyAlbum { const KIND: &'static str = "album.notify"; }
/// # async fn demo(queue: solidq::Queue) -> Result<(), solidq::EnqueueError> {
/// let batch = queue
///     .batch()
///     .description("album 7")
///     .on_success(NotifyAlbum { album: 7 })
///     .enqueue((1..=3).map(|image| Resize { image }))
///     .await?;
/// assert_eq!(batch.jobs.len(), 3);
/// # Ok(()) }
/// ```
#[must_use = "a batch is enqueued by .enqueue(jobs)"]
pub struct BatchBuilder {
    queue: Queue,
    batch: NewBatch,
    /// The first callback that could not be built: reported by `enqueue`.
    problem: Option<EnqueueError>,
}

/// A batch just enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedBatch {
    /// The batch's id (`solidq batches show ID`).
    pub id: BatchId,
    /// The ids of its jobs, in the order given (a unique job whose key was held gives the
    /// holder's id, and is not a member).
    pub jobs: Vec<JobId>,
}

impl BatchBuilder {
    pub(crate) fn new(queue: Queue) -> BatchBuilder {
        BatchBuilder { queue, batch: NewBatch::default(), problem: None }
    }

    /// Free text shown by `solidq batches`.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.batch.description = Some(text.into());
        self
    }

    fn callback<J: Job>(&mut self, job: &J, opts: EnqueueOptions) -> Option<NewJob> {
        match NewJob::from_job(job, opts) {
            Ok(job) => Some(job),
            Err(err) => {
                self.problem.get_or_insert(err);
                None
            }
        }
    }

    /// Enqueue `job` when every job of the batch finished.
    pub fn on_success<J: Job>(mut self, job: J) -> Self {
        self.batch.on_success = self.callback(&job, EnqueueOptions::new());
        self
    }

    /// Enqueue `job` when every job of the batch ended, however.
    pub fn on_finish<J: Job>(mut self, job: J) -> Self {
        self.batch.on_finish = self.callback(&job, EnqueueOptions::new());
        self
    }

    /// Enqueue `job` when every job of the batch ended and at least one failed for good, was
    /// discarded or was cancelled.
    pub fn on_failure<J: Job>(mut self, job: J) -> Self {
        self.batch.on_failure = self.callback(&job, EnqueueOptions::new());
        self
    }

    /// The batch as the store takes it, after the checks of its callbacks.
    pub fn into_new_batch(self) -> Result<NewBatch, EnqueueError> {
        match self.problem {
            Some(problem) => Err(problem),
            None => Ok(self.batch),
        }
    }

    /// Enqueues the batch with `jobs`, in one transaction. An empty batch ends at once (its
    /// success and finish callbacks are enqueued).
    pub async fn enqueue<J: Job>(self, jobs: impl IntoIterator<Item = J>) -> Result<EnqueuedBatch, EnqueueError> {
        let jobs =
            jobs.into_iter().map(|job| NewJob::from_job(&job, EnqueueOptions::new())).collect::<Result<Vec<_>, _>>()?;
        self.enqueue_new(jobs).await
    }

    /// Enqueues the batch with prepared jobs (any mix of kinds and options).
    pub async fn enqueue_new(self, jobs: Vec<NewJob>) -> Result<EnqueuedBatch, EnqueueError> {
        let queue = self.queue.clone();
        let batch = self.into_new_batch()?;
        let counted = jobs.clone();
        let (id, enqueued) =
            queue.write(move |store| store.enqueue_batch(&batch, &jobs, Utc::now().naive_utc())).await?;
        queue.count(&counted);
        Ok(EnqueuedBatch { id, jobs: enqueued.into_iter().map(Enqueued::id).collect() })
    }

    /// Enqueues the batch on the application's own connection, inside its transaction: the
    /// batch and its jobs exist only if that transaction commits. Needs solidq's
    /// [`DbConnection`] (`store::connection::app_pool` gives a pool of them).
    pub fn enqueue_in(self, conn: &mut DbConnection, jobs: Vec<NewJob>) -> Result<EnqueuedBatch, EnqueueError> {
        let batch = self.into_new_batch()?;
        let (id, enqueued) = composition::enqueue_batch_in(conn, &batch, &jobs, Utc::now().naive_utc())?;
        Ok(EnqueuedBatch { id, jobs: enqueued.into_iter().map(Enqueued::id).collect() })
    }
}

impl Queue {
    /// Starts a batch: see [`BatchBuilder`].
    pub fn batch(&self) -> BatchBuilder {
        BatchBuilder::new(self.clone())
    }

    /// Adds `jobs` to batch `batch` while it is open (one of its jobs has not ended; a member
    /// adding jobs to its own batch always can). Refused, naming why, once the batch ended.
    pub async fn add_to_batch<J: Job>(
        &self,
        batch: BatchId,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<JobId>, EnqueueError> {
        let jobs =
            jobs.into_iter().map(|job| NewJob::from_job(&job, EnqueueOptions::new())).collect::<Result<Vec<_>, _>>()?;
        let counted = jobs.clone();
        let added = self.write(move |store| store.add_to_batch(batch, &jobs, Utc::now().naive_utc())).await?;
        self.count(&counted);
        Ok(added.into_iter().map(Enqueued::id).collect())
    }

    /// The batch job `job` belongs to, or whose callback it is: a callback reads its batch's
    /// counts with `queue.batch_of(meta.id)`.
    pub async fn batch_of(&self, job: JobId) -> Result<Option<BatchInfo>, EnqueueError> {
        Ok(crate::actors::blocking(&self.store, move |store| store.batch_of_job(job)).await?)
    }

    /// The ids of batch `batch`'s jobs (its callbacks not included).
    pub async fn batch_jobs(&self, batch: BatchId) -> Result<Vec<JobId>, EnqueueError> {
        Ok(crate::actors::blocking(&self.store, move |store| store.batch_job_ids(batch)).await?)
    }
}
