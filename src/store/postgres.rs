//! PostgreSQL backend (placeholder, being written).
use super::StoreResult;
/// PostgreSQL store.
pub struct PgStore;
impl PgStore {
    /// Connects.
    pub fn connect(_url: &str, _pool_size: u32) -> StoreResult<Self> { todo!() }
}
