//! Queue handle (being written).
/// Queue.
pub struct Queue;
