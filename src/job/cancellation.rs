//! The cancellation token of an execution: how a handler hears that nobody waits for its result
//! any more (a timeout, an operator's cancel, a drain that ran out of time).

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Why an execution's [`Cancellation`] fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// The handler ran past [`Job::TIMEOUT`](super::Job::TIMEOUT): the job is recorded as failed (and retried while
    /// attempts remain) whatever the handler returns now.
    Timeout,
    /// An operator cancelled the job (`solidq jobs cancel`,
    /// [`Store::cancel_job`](crate::Store::cancel_job)): it ends as cancelled whatever the
    /// handler returns.
    Cancelled,
    /// The process is shutting down and its drain timeout passed: the claim goes back to ready
    /// and whatever the handler returns now is dropped.
    Shutdown,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Timeout => "timeout",
            CancelReason::Cancelled => "cancelled",
            CancelReason::Shutdown => "shutdown",
        })
    }
}

/// Tells a running handler that nobody waits for its result any more: its job timed out, was
/// cancelled by an operator, or its process is shutting down. Each execution has its own,
/// in [`JobMeta::cancellation`](super::JobMeta::cancellation); clones share it.
///
/// The runtime never interrupts a handler: a handler that ignores its token runs to its end,
/// and its job still ends as the reason says. A handler that watches it can stop early:
/// check [`Cancellation::is_cancelled`] between steps of blocking work, or select on
/// [`Cancellation::cancelled`] in an async handler:
///
/// ```
/// use std::time::Duration;
/// use actix::prelude::*;
/// use futures_util::future::{select, Either};
/// use serde::{Deserialize, Serialize};
/// use solidq::{Job, JobError, Perform};
///
/// #[derive(Serialize, Deserialize)]
/// struct Export { rows: u64 }
/// impl Job for Export {
///     const KIND: &'static str = "export";
///     const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
/// }
///
/// struct Exporter;
/// impl Actor for Exporter { type Context = Context<Self>; }
/// impl Handler<Perform<Export>> for Exporter {
///     type Result = ResponseFuture<Result<(), JobError>>;
///     fn handle(&mut self, msg: Perform<Export>, _: &mut Context<Self>) -> Self::Result {
///         let cancellation = msg.meta.cancellation.clone();
///         Box::pin(async move {
///             let work = Box::pin(actix_rt::time::sleep(Duration::from_millis(msg.job.rows)));
///             match select(work, Box::pin(cancellation.cancelled())).await {
///                 Either::Left(_) => Ok(()),
///                 // Timed out or cancelled: what we return now is not what the job becomes.
///                 Either::Right(_) => Err(JobError::new(format!(
///                     "stopped: {}", cancellation.reason().map(|r| r.to_string()).unwrap_or_default()
///                 ))),
///             }
///         })
///     }
/// }
///
/// let token = solidq::Cancellation::new();
/// assert!(!token.is_cancelled());
/// token.cancel(solidq::CancelReason::Cancelled);
/// assert_eq!(token.reason(), Some(solidq::CancelReason::Cancelled));
/// ```
#[derive(Clone, Default)]
pub struct Cancellation(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    reason: OnceLock<CancelReason>,
    fired: tokio::sync::Notify,
}

impl Cancellation {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token with `reason`, waking every [`Cancellation::cancelled`]. The first
    /// reason stays: returns whether this call fired it.
    pub fn cancel(&self, reason: CancelReason) -> bool {
        let fired = self.0.reason.set(reason).is_ok();
        if fired {
            self.0.fired.notify_waiters();
        }
        fired
    }

    /// Whether the token fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.reason.get().is_some()
    }

    /// Why the token fired, if it did.
    pub fn reason(&self) -> Option<CancelReason> {
        self.0.reason.get().copied()
    }

    /// Resolves once the token fires (at once if it already has).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.fired.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a fire between the check and the wait wakes it.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cancellation").field(&self.reason()).finish()
    }
}

/// Two tokens are equal when they are the same token (clones of one another).
impl PartialEq for Cancellation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancellation {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_token_fires_once_for_every_clone_and_keeps_its_first_reason() {
        let token = Cancellation::new();
        let clone = token.clone();
        assert_eq!((token.is_cancelled(), token.reason()), (false, None));
        assert!(clone.cancel(CancelReason::Timeout));
        assert!(!token.cancel(CancelReason::Cancelled), "the first reason stays");
        assert_eq!(token.reason(), Some(CancelReason::Timeout));
        assert!(token.is_cancelled());
        assert_eq!(token, clone);
        assert_ne!(token, Cancellation::new());
        assert_eq!(format!("{token:?}"), "Cancellation(Some(Timeout))");
    }

    #[actix_rt::test]
    async fn cancelled_resolves_when_the_token_fires_and_at_once_after() {
        let token = Cancellation::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let token = token.clone();
                actix_rt::spawn(async move { token.cancelled().await })
            })
            .collect();
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "nothing fired yet");
        token.cancel(CancelReason::Cancelled);
        for waiter in waiters {
            actix_rt::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        }
        actix_rt::time::timeout(Duration::from_millis(10), token.cancelled()).await.unwrap();
    }
}
