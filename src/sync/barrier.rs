//! `Barrier`: tokio's barrier, whose release is an *event*.
//!
//! Each arrival both signals and waits: arriving records `barrier → L` for
//! every lock `L` the arriving context waited for since its section began
//! and no longer holds (the others cannot be released before this one
//! arrives), and waiting while holding `H` records `H → barrier`. A task
//! that holds `H` at the barrier while another took `H` before it arrived
//! is a cycle; a task holding its own lock across the barrier is not.

use std::fmt;
use std::future::Future;
use std::panic::Location;

pub use tokio::sync::BarrierWaitResult;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{FirstPollWait, LockMeta};
use crate::vocab::Access;

/// A barrier for `n` tasks, as `tokio::sync::Barrier`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// let barrier = Arc::new(async_lockdep::sync::Barrier::new(2));
/// let b = barrier.clone();
/// let other = tokio::spawn(async move { b.wait().await });
/// barrier.wait().await;
/// other.await.unwrap();
/// # }
/// ```
pub struct Barrier {
    meta: LockMeta,
    inner: tokio::sync::Barrier,
}

impl Barrier {
    /// A barrier that releases its waiters once `n` have arrived (0 counts
    /// as 1, as tokio's); its class is the caller's source location.
    #[track_caller]
    pub fn new(n: usize) -> Barrier {
        let class = class::for_site(Location::caller(), ClassKind::Barrier);
        Barrier {
            meta: LockMeta::new(class),
            inner: tokio::sync::Barrier::new(n),
        }
    }

    /// A barrier for `n` tasks of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, n: usize) -> Barrier {
        let class = class::named(name, ClassKind::Barrier, Location::caller());
        Barrier {
            meta: LockMeta::new(class),
            inner: tokio::sync::Barrier::new(n),
        }
    }

    /// Arrives and waits for the others. Records `barrier → L` for the
    /// calling context's waits since its section began, and `H → barrier`
    /// for the locks `H` it holds while it waits.
    ///
    /// # Cancel safety
    ///
    /// As tokio's: not cancel safe (a dropped wait still counts as arrived).
    #[track_caller]
    pub fn wait(&self) -> impl Future<Output = BarrierWaitResult> + '_ {
        let site = Location::caller();
        async move {
            let mut wait = FirstPollWait::default();
            if let Some(engine) = self.meta.engine() {
                let want = self.meta.want(Access::Signal, site);
                engine.signal(want.lock, want.created, site.into(), true, None);
            }
            let mut inner = std::pin::pin!(self.inner.wait());
            let passed = std::future::poll_fn(|cx| {
                let meta = &self.meta;
                wait.poll(
                    || meta.want(Access::Event, site),
                    || inner.as_mut().poll(cx),
                )
            })
            .await;
            // Every participant arrived: what each waited for before is over
            // for all of them, in every run (the barrier orders it). What it
            // signals from now on (its next arrival) depends only on what it
            // waits for from now on.
            if let Some(engine) = self.meta.engine() {
                engine.begin_section();
            }
            passed
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
