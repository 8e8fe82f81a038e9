//! The executions of this process that ran past their timeout and whose handler has not
//! returned yet: kept until it does, and written into the process row by the heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{AbandonedExecution, AbandonedExecutions, ClaimToken};

#[derive(Default)]
struct AbandonedState {
    executions: BTreeMap<ClaimToken, AbandonedExecution>,
    /// Bumped on every change, so that the heartbeat writes the list only when it changed.
    version: u64,
}

/// The executions of this process that ran past their timeout and whose handler has not
/// returned yet. The heartbeat writes them into the process row for `solidq status`.
#[derive(Clone, Default)]
pub struct Abandoned(Arc<Mutex<AbandonedState>>);

impl Abandoned {
    fn state(&self) -> std::sync::MutexGuard<'_, AbandonedState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The execution of claim `token` (attempt `attempt` of a job of `kind`) ran past `timeout`.
    pub fn add(&self, token: ClaimToken, kind: &str, attempt: i32, timeout: Duration) {
        let mut state = self.state();
        let entry = AbandonedExecution {
            job_id: token.job_id,
            kind: kind.to_string(),
            attempt,
            timeout_secs: timeout.as_secs_f64(),
            timed_out_at: Some(DateTime::<Utc>::from(std::time::SystemTime::now())),
        };
        state.executions.insert(token, entry);
        state.version += 1;
    }

    /// The abandoned execution of claim `token` returned.
    pub fn remove(&self, token: ClaimToken) {
        let mut state = self.state();
        if state.executions.remove(&token).is_some() {
            state.version += 1;
        }
    }

    /// Changes so far: a different number means a different list.
    pub fn version(&self) -> u64 {
        self.state().version
    }

    /// The list as it is now, with its version.
    pub fn snapshot(&self) -> (u64, AbandonedExecutions) {
        let state = self.state();
        (state.version, AbandonedExecutions::new(state.executions.values().cloned().collect()))
    }
}
