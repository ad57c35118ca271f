//! Executors as workqueues. A work queue, and a spawned task, is a class like
//! a lock's: while its work runs, the worker holds the executor's pseudo-lock;
//! waiting for it (flush, destroy, join) is like waiting for a lock. A queue
//! that never had work submitted adds no dependency when flushed or destroyed.
//!
//! - `queue.rs`: [`WorkQueue`], its items and errors.
//! - `lazy.rs`: [`LazyWorkQueue`], created on first use by racing callers.
//! - `spawn.rs`: [`spawn`] and [`JoinHandle`].

mod lazy;
mod queue;
mod spawn;

pub use lazy::LazyWorkQueue;
pub use queue::{FlushError, WorkError, WorkHandle, WorkQueue, WorkQueueBuilder};
pub use spawn::{spawn, spawn_named, JoinHandle};
