//! Lockdep for async Rust.
//!
//! `async-lockdep` learns, while a program or its test suite runs, in which
//! order tasks take locks and wait for spawned work, and reports any order
//! that *can* deadlock — even when this run did not. It is the Linux kernel's
//! lockdep, for tokio:
//!
//! - a **lock class** is where a lock was created (or an explicit name);
//!   dependencies "`B` was waited for while `A` was held" connect classes,
//!   so two tests that lock different instances in opposite orders still
//!   form a cycle;
//! - a **context** is a tokio task (or a thread outside any task), with its
//!   own list of held locks;
//! - the first time a dependency closes a cycle, a [`Report`] shows both
//!   orders, where each lock was created and taken, by which task, in which
//!   `tracing` spans.
//!
//! # Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tracing_subscriber::prelude::*;
//!
//! let detector = async_lockdep::Detector::new();
//! tracing_subscriber::registry().with(detector.layer()).init();
//!
//! let accounts = async_lockdep::Mutex::with_class("accounts", ());
//! let ledger = async_lockdep::Mutex::with_class("ledger", ());
//! {
//!     let _a = accounts.lock().await;
//!     let _l = ledger.lock().await;
//! }
//! {
//!     let _l = ledger.lock().await;
//!     let _a = accounts.lock().await;
//! }
//! assert_eq!(detector.reports().len(), 1);
//! println!("{}", detector.reports()[0]);
//! # }
//! ```
//!
//! In tests, [`test_guard`] turns detection on and fails the test on a
//! report that belongs to it.
//!
//! # A drop-in for `tokio::sync`
//!
//! [`sync`] has every item of `tokio::sync`, with the same signatures: the
//! locks, semaphores and bounded channels are this crate's, the rest is
//! tokio's. Swapping one `use` line is enough:
//!
//! ```
//! use async_lockdep::sync::{oneshot, Mutex, Notify}; // was tokio::sync
//! ```
//!
//! # One engine per process
//!
//! As in the kernel's lockdep, one engine per process keeps the classes, the
//! dependency graph, the validated chains, the held locks of every context
//! and the waits in progress. Every lock, queue and task of this crate
//! reports to it directly from any thread — a lock created inside a plain
//! `tokio::spawn` on a worker thread included — so dependencies learned by
//! unrelated code paths (two tests of one binary, a handler and a background
//! job) join into one cycle.
//!
//! Detection is off until turned on, and then stays on: adding
//! [`Detector::layer`] to a subscriber, [`test_guard`],
//! [`Detector::install_global`], [`Detector::enable`], or the environment
//! variable `ASYNC_LOCKDEP=1`. `ASYNC_LOCKDEP=0` keeps it off. While off, a
//! wrapper costs one relaxed atomic load and tokio's own lock.
//!
//! The layer gives reports their `tracing` span context (it keeps each
//! thread's stack of entered spans) and receives each report as an `ERROR`
//! event at target `async_lockdep`. Each report is also printed to stderr
//! once, the moment it is found (`ASYNC_LOCKDEP_PRINT=0` turns that off).
//!
//! # Layout
//!
//! Along lockdep's pipeline, each module using only those before it:
//! `vocab` (shared small types), `graph` (the class graph, pure), `report`,
//! `lockdep` (the engine: classes, contexts, held locks, chain cache,
//! validation, waits), `layer`, `detector`, then the wrappers (`sync`) and
//! executors (`executor`).
#![cfg_attr(not(feature = "detect"), allow(dead_code))]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]

mod detector;
mod executor;
mod graph;
mod layer;
mod lockdep;
mod native;
mod report;
pub mod sync;
mod vocab;

pub use detector::{test_guard, Detector, DetectorBuilder, Status, TestGuard};
pub use executor::{
    spawn, spawn_named, FlushError, JoinHandle, LazyWorkQueue, WorkError, WorkHandle, WorkQueue,
    WorkQueueBuilder,
};
pub use layer::DetectorLayer;
pub use lockdep::class::MAX_NESTING_LEVEL;
pub use lockdep::context::{own_context, OwnContext};
pub use lockdep::store::RunStore;
pub use report::{Dependency, LongWait, Report, ReportKind};
pub use sync::{mpsc, oneshot};
pub use sync::{
    AcquireError, MappedMutexGuard, Mutex, MutexGuard, OwnedMappedMutexGuard, OwnedMutexGuard,
    OwnedRwLockMappedWriteGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, OwnedSemaphorePermit,
    RwLock, RwLockMappedWriteGuard, RwLockReadGuard, RwLockWriteGuard, Semaphore, SemaphorePermit,
    TryAcquireError, TryLockError,
};
pub use vocab::{Access, ClassKind, ContextId, LockClass, Site};

/// std's blocking locks in the same graph as the async ones: a drop-in for
/// `std::sync::{Mutex, RwLock}` with std's API (poisoning included), plus
/// `with_class`.
///
/// A blocking acquisition records its dependencies before the thread
/// blocks, in the context of the task (or thread) that blocks: a task that
/// holds an async lock and takes a std mutex, and code that holds that
/// mutex and waits for the async lock, form a cycle like any other. Taking
/// a mutex the context already holds is a certain self-deadlock, reported
/// before the thread hangs. The guards are `!Send`, as std's.
///
/// ```
/// # let _lockdep = async_lockdep::test_guard();
/// use async_lockdep::stdsync::Mutex;
///
/// static HITS: Mutex<u64> = Mutex::new(0); // `const`, as std's
/// let cache = Mutex::with_class("cache", Vec::<u8>::new());
/// *HITS.lock().unwrap() += 1;
/// cache.lock().unwrap().push(1);
/// ```
pub mod stdsync {
    pub use crate::sync::stdsync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
    pub use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
}

/// parking_lot's blocking locks in the same graph as the async ones (cargo
/// feature `parking_lot`): `Mutex` and `RwLock` with parking_lot's API
/// (`lock`, `try_lock -> Option`, `read`, `read_recursive`, `write`,
/// `try_read`, `try_write`, `get_mut`, `into_inner`), plus `with_class`.
///
/// Recorded as [`stdsync`]'s are, except `read_recursive`, which does not
/// wait behind queued writers: it records no dependency into the lock, so
/// it is never part of a reported cycle (one that waits for a writer that
/// holds the lock is not seen).
///
/// ```
/// use async_lockdep::parkinglot::{Mutex, RwLock};
///
/// let paused = Mutex::with_class("paused", false);
/// let table = RwLock::new(vec![1]);
/// let _outer = table.read();
/// let _inner = table.read_recursive(); // fine even with a writer queued
/// *paused.lock() = true;
/// ```
#[cfg(feature = "parking_lot")]
pub mod parkinglot {
    pub use crate::sync::parkinglot::{
        Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
}

/// Internals exposed for the crate's own benches and model tests only; not
/// part of the API and not covered by semver.
#[doc(hidden)]
pub mod __private {
    pub use crate::graph::{Graph, Insert, Node};
}
