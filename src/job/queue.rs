//! The [`Queue`] handle: enqueue jobs from anywhere in the application.

use std::sync::Arc;

use chrono::Utc;

use super::{EnqueueError, EnqueueOptions, Job};
use crate::metrics::Metrics;
use crate::model::{Enqueued, JobId, NewJob};
use crate::store::{EnqueueConnection, SharedStore, Store, StoreError, StoreResult};

/// A cloneable handle for enqueueing jobs.
///
/// The async methods run the insert on a blocking pool (they need a running actix System or
/// tokio runtime); the `_blocking` ones run on the calling thread; [`Queue::enqueue_in`] uses the
/// caller's own diesel connection and transaction.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Ping { n: u32 }
/// # impl solidq::Job for Ping { const KIND: &'static str = "ping"; }
/// # async fn demo(queue: solidq::Queue) -> Result<(), solidq::EnqueueError> {
/// let id = queue.enqueue(Ping { n: 1 }).await?;
/// let ids = queue.enqueue_all(vec![Ping { n: 2 }, Ping { n: 3 }]).await?;
/// assert_eq!(ids.len(), 2);
/// # let _ = id; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Queue {
    pub(super) store: SharedStore,
    /// Where enqueued jobs are counted (a runtime's queues count into its metrics).
    metrics: Option<Arc<Metrics>>,
    /// What runs the jobs an enqueue made ready before it returns: the inline mode of
    /// [`crate::testing::TestQueue`]. `None` (every other queue) costs nothing.
    inline: Option<Arc<dyn InlineRunner>>,
}

/// Runs jobs at once in the caller of an enqueue (the inline mode of
/// [`crate::testing::TestQueue`]).
pub(crate) trait InlineRunner: Send + Sync {
    /// Before an enqueue writes anything: refuses it when inline runs are nested too deep.
    fn admit(&self) -> Result<(), EnqueueError>;
    /// After an enqueue committed: runs every ready job (the ones just enqueued, and those
    /// their runs make ready) until none is left; resolves with the first failure among them.
    fn run_ready(&self) -> futures_util::future::BoxFuture<'static, Result<(), EnqueueError>>;
}

impl Queue {
    /// A queue writing through `store`.
    pub fn new(store: SharedStore) -> Queue {
        Queue { store, metrics: None, inline: None }
    }

    /// The same queue, running what it enqueues at once through `runner`.
    pub(crate) fn running_inline(mut self, runner: Arc<dyn InlineRunner>) -> Queue {
        self.inline = Some(runner);
        self
    }

    /// The one path of every async enqueue: runs `write` on the blocking pool; in inline mode
    /// it is refused first when inline runs are nested too deep, and what it made ready runs
    /// before this returns.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T, EnqueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        if let Some(inline) = &self.inline {
            inline.admit()?;
        }
        let written = crate::actors::blocking(&self.store, write).await?;
        if let Some(inline) = &self.inline {
            inline.run_ready().await?;
        }
        Ok(written)
    }

    /// The same queue, counting the jobs it enqueues into `metrics`
    /// (`solidq_jobs_enqueued_total`).
    pub fn counting_into(mut self, metrics: Arc<Metrics>) -> Queue {
        self.metrics = Some(metrics);
        self
    }

    /// Counts `jobs` as enqueued.
    pub(super) fn count(&self, jobs: &[NewJob]) {
        if let Some(metrics) = &self.metrics {
            metrics.jobs_enqueued(jobs.iter().map(|job| (job.queue.as_str(), job.kind.as_str())));
        }
    }

    /// Enqueues `job` with its defaults.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<JobId, EnqueueError> {
        self.enqueue_with(job, EnqueueOptions::new()).await
    }

    /// Enqueues `job` with `opts` (queue, priority, run at / run in, attempts).
    pub async fn enqueue_with<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<JobId, EnqueueError> {
        let new = NewJob::from_job(&job, opts)?;
        first_id(self.insert(vec![new]).await?)
    }

    /// Enqueues `job` with `opts` and tells whether it was inserted or a job holding its
    /// unique key ([`Job::unique_key`], [`EnqueueOptions::unique_key`]) already existed, whose
    /// id comes back instead.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Report { day: u32 }
    /// # impl solidq::Job for Report { const KIND: &'static str = "report"; }
    /// # async fn demo(queue: solidq::Queue) -> Result<(), solidq::EnqueueError> {
    /// let opts = || solidq::EnqueueOptions::new().unique_key("report:2026-11-27");
    /// let first = queue.enqueue_unique(Report { day: 27 }, opts()).await?;
    /// let again = queue.enqueue_unique(Report { day: 27 }, opts()).await?;
    /// assert!(first.is_new() && !again.is_new() && first.id() == again.id());
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_unique<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<Enqueued, EnqueueError> {
        let new = NewJob::from_job(&job, opts)?;
        let counted = new.clone();
        let mut enqueued = self.write(move |s| s.enqueue_reporting(&[new], Utc::now().naive_utc())).await?;
        if matches!(enqueued.first(), Some(Enqueued::New(_))) {
            self.count(std::slice::from_ref(&counted));
        }
        enqueued.pop().ok_or_else(|| {
            EnqueueError::Store(StoreError::Connection {
                action: "enqueueing a job",
                message: "the database returned no id for the inserted job".into(),
            })
        })
    }

    /// Enqueues all `jobs` with one INSERT, in one transaction; ids in the order given.
    pub async fn enqueue_all<J: Job>(&self, jobs: impl IntoIterator<Item = J>) -> Result<Vec<JobId>, EnqueueError> {
        let new =
            jobs.into_iter().map(|j| NewJob::from_job(&j, EnqueueOptions::new())).collect::<Result<Vec<_>, _>>()?;
        self.insert(new).await
    }

    /// Enqueues prepared jobs (any mix of kinds) in one transaction.
    pub async fn enqueue_new(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, EnqueueError> {
        self.insert(jobs).await
    }

    /// Blocking form of [`Queue::enqueue_new`], for threads outside any runtime.
    ///
    /// In the inline mode of [`crate::testing::TestQueue`] it only writes the jobs: they run
    /// right after the job that enqueued them (a blocking handler), or at the next async
    /// enqueue or drain.
    pub fn enqueue_new_blocking(&self, jobs: &[NewJob]) -> Result<Vec<JobId>, EnqueueError> {
        let ids = self.store.enqueue(jobs, Utc::now().naive_utc())?;
        self.count(jobs);
        Ok(ids)
    }

    /// Enqueues `job` on the caller's diesel connection, inside the caller's transaction: the
    /// job exists only if that transaction commits.
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Welcome { user: i64 }
    /// # impl solidq::Job for Welcome { const KIND: &'static str = "welcome"; }
    /// # fn demo(conn: &mut diesel::SqliteConnection) -> Result<(), Box<dyn std::error::Error>> {
    /// conn.transaction::<_, Box<dyn std::error::Error>, _>(|conn| {
    ///     diesel::sql_query("INSERT INTO users (id) VALUES (7)").execute(conn)?;
    ///     solidq::Queue::enqueue_in(conn, &Welcome { user: 7 }, solidq::EnqueueOptions::new())?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn enqueue_in<C: EnqueueConnection, J: Job>(
        conn: &mut C,
        job: &J,
        opts: EnqueueOptions,
    ) -> Result<JobId, EnqueueError> {
        let new = NewJob::from_job(job, opts)?;
        first_id(conn.enqueue_jobs(std::slice::from_ref(&new), Utc::now().naive_utc())?)
    }

    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, EnqueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, jobs) = self.write(move |s| s.enqueue(&jobs, Utc::now().naive_utc()).map(|ids| (ids, jobs))).await?;
        self.count(&jobs);
        Ok(ids)
    }
}

/// The id of the single job just inserted.
fn first_id(ids: Vec<JobId>) -> Result<JobId, EnqueueError> {
    ids.first().copied().ok_or_else(|| {
        EnqueueError::Store(StoreError::Connection {
            action: "enqueueing a job",
            message: "the database returned no id for the inserted job".into(),
        })
    })
}
