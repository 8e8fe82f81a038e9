//! The seam through which every store operation can be seen: metrics, tracing and logs hang
//! off [`Observer`].

use std::time::Duration;

/// One finished store operation, as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct StoreEvent {
    /// What was done, e.g. `"claiming jobs"` (the action named in errors).
    pub operation: &'static str,
    /// How long it took, waiting for a connection included.
    pub elapsed: Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Sees every store operation as it finishes: one seam for metrics, tracing and logs.
///
/// Called on the thread that ran the operation, after its transaction ended and before the
/// caller gets the result; a slow observer delays the caller.
pub trait Observer: Send + Sync {
    /// One operation finished.
    fn finished(&self, event: &StoreEvent);
}
