//! The [`RecurringTasks`] handle: add, remove and list dynamic recurring tasks at runtime.

use chrono::Utc;

use super::RecurringTask;
use crate::store::{RecurringTaskRow, Removed, SharedStore, StoreError};

/// A cloneable handle on the recurring tasks of a database: dynamic tasks are added and
/// removed here (static ones come from `SOLIDQ_RECURRING` and
/// [`Runtime::recurring`](crate::Runtime::recurring)). The schedulers of every process on the
/// database pick changes up at their next reload of the task list (within 5 s).
///
/// The async methods run on a blocking pool (they need a running actix System or tokio
/// runtime); the `_blocking` ones run on the calling thread.
///
/// ```no_run
/// use solidq::recurring::RecurringTask;
/// # async fn demo(runtime: &solidq::RuntimeHandle) -> Result<(), Box<dyn std::error::Error>> {
/// let tasks = runtime.recurring_tasks();
/// let digest = RecurringTask::new("digest-42", "0 8 * * MON-FRI", "mailer.digest")?
///     .arguments(serde_json::json!({"user_id": 42}))
///     .time_zone("America/New_York")?;
/// tasks.add(digest).await?;
/// for row in tasks.list().await? {
///     println!("{} {} last run {:?}", row.key, row.schedule, row.last_run_at);
/// }
/// tasks.remove("digest-42").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RecurringTasks {
    store: SharedStore,
}

impl RecurringTasks {
    /// A handle writing through `store`.
    pub fn new(store: SharedStore) -> RecurringTasks {
        RecurringTasks { store }
    }

    /// Adds `task` as a dynamic task, or replaces the task with its key.
    pub async fn add(&self, task: RecurringTask) -> Result<(), StoreError> {
        crate::actors::blocking(&self.store, move |s| s.add_recurring_task(&task, Utc::now().naive_utc())).await
    }

    /// Removes the dynamic task `key`; says whether it was there, or is static (and stays).
    pub async fn remove(&self, key: &str) -> Result<Removed, StoreError> {
        let key = key.to_string();
        crate::actors::blocking(&self.store, move |s| s.remove_recurring_task(&key)).await
    }

    /// Every task, static and dynamic, ordered by key, with its last run.
    pub async fn list(&self) -> Result<Vec<RecurringTaskRow>, StoreError> {
        crate::actors::blocking(&self.store, |s| s.recurring_tasks()).await
    }

    /// Blocking form of [`RecurringTasks::add`].
    pub fn add_blocking(&self, task: &RecurringTask) -> Result<(), StoreError> {
        self.store.add_recurring_task(task, Utc::now().naive_utc())
    }

    /// Blocking form of [`RecurringTasks::remove`].
    pub fn remove_blocking(&self, key: &str) -> Result<Removed, StoreError> {
        self.store.remove_recurring_task(key)
    }

    /// Blocking form of [`RecurringTasks::list`].
    pub fn list_blocking(&self) -> Result<Vec<RecurringTaskRow>, StoreError> {
        self.store.recurring_tasks()
    }
}
