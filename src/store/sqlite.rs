//! SQLite backend (placeholder, being written).
use std::path::Path;
use super::StoreResult;
/// SQLite store.
pub struct SqliteStore;
impl SqliteStore {
    /// Opens the database file.
    pub fn open(_path: &Path, _pool_size: u32) -> StoreResult<Self> { todo!() }
}
