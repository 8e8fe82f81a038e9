//! Table definitions.
