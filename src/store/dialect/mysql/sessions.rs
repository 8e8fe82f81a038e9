//! Session liveness through named locks (`GET_LOCK`) on a dedicated connection per process.

use diesel::QueryResult;

use crate::model::ProcessId;
use crate::store::connection::DbConnection;
use crate::store::dialect::SessionLiveness;
use crate::store::error::StoreResult;

/// The dedicated session connections of the processes a store registered.
pub(super) struct Sessions {
    url: String,
}

impl Sessions {
    /// No sessions yet; new ones connect to `url`.
    pub(super) fn new(url: String) -> Self {
        Sessions { url }
    }
}

impl SessionLiveness for Sessions {
    fn register(&self, insert: &mut dyn FnMut(&mut DbConnection) -> QueryResult<ProcessId>) -> StoreResult<ProcessId> {
        let _ = (insert, &self.url);
        todo!()
    }

    fn keep(&self, process: ProcessId) -> StoreResult<bool> {
        let _ = process;
        todo!()
    }

    fn gone(&self, conn: &mut DbConnection, candidates: &[ProcessId]) -> QueryResult<Vec<ProcessId>> {
        let _ = (conn, candidates);
        todo!()
    }

    fn release(&self, process: ProcessId) {
        let _ = process;
    }

    fn session_id(&self, process: ProcessId) -> Option<i32> {
        let _ = process;
        None
    }
}
