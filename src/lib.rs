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
//! let _default = tracing::subscriber::set_default(
//!     tracing_subscriber::registry().with(detector.layer()),
//! );
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
//! In tests, [`test_guard`] does the set-up and fails the test on a report.
//!
//! # Which installation to use
//!
//! A lock (or queue, or task) reports to the detector of the **current**
//! `tracing` dispatcher when there is one, and otherwise to the detector that
//! was current **when it was created**. So a detector installed with
//! [`Detector::set_default`] (or [`test_guard`]) in the body of a
//! `#[tokio::test(flavor = "multi_thread")]` sees everything created in that
//! body even on worker threads (which have no default dispatcher), and in
//! tasks started with [`spawn`] (which carries the dispatcher along); a
//! static lock shared by several tests reports to each test's own detector.
//! A lock, queue or task created on a thread with no detector in its
//! dispatcher (a worker thread, inside a plain `tokio::spawn` task) binds to
//! the detector the creating task last reported to — the one of the locks
//! that task uses. For a whole program, install the detector globally
//! ([`Detector::install_global`]) and none of this matters.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]

mod detector;
mod executor;
mod graph;
mod layer;
mod lockdep;
mod report;
mod sync;
mod vocab;

pub use detector::{test_guard, Detector, DetectorBuilder, Status, TestGuard};
pub use executor::{
    spawn, spawn_named, FlushError, JoinHandle, LazyWorkQueue, WorkError, WorkHandle, WorkQueue,
    WorkQueueBuilder,
};
pub use layer::DetectorLayer;
pub use lockdep::class::{ClassKind, LockClass, MAX_NESTING_LEVEL};
pub use lockdep::context::{own_context, OwnContext};
pub use report::{Dependency, LongWait, Report, ReportKind};
pub use sync::{
    AcquireError, MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard, OwnedRwLockReadGuard,
    OwnedRwLockWriteGuard, OwnedSemaphorePermit, RwLock, RwLockMappedWriteGuard, RwLockReadGuard,
    RwLockWriteGuard, Semaphore, SemaphorePermit, TryAcquireError, TryLockError,
};
pub use vocab::{Access, ContextId};

/// Internals exposed for the crate's own benches and model tests only; not
/// part of the API and not covered by semver.
#[doc(hidden)]
pub mod __private {
    pub use crate::graph::{Graph, Insert, Node, XorShift};
}
