//! Runtime (being written).
/// Runtime.
pub struct Runtime;
/// Handle.
pub struct RuntimeHandle;
