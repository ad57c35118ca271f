//! Lock wrappers. Each mirrors its tokio counterpart and calls the same
//! detector hooks (`state::Holding`, `state::Waiting`): none keeps its own
//! bookkeeping.
//!
//! - `mutex.rs`: [`Mutex`] and its guards.

mod mutex;

pub use mutex::{MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard, TryLockError};
