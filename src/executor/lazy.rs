//! `LazyWorkQueue`: a work queue created on first use, by whoever gets there
//! first, with the racy creation of the kernel's direct-I/O completion queue.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::executor::queue::WorkQueue;
use crate::lockdep::class::{self, ClassKind};
use crate::vocab::ClassId;

/// A [`WorkQueue`] created on first use.
///
/// Racers each build a complete queue; one wins a compare-and-swap and the
/// others destroy theirs at once — possibly while holding locks, as the
/// kernel's `sb_init_dio_done_wq` does under the inode lock. The losers'
/// queues never ran work, so destroying them records no dependency: no false
/// positive. Once the winner has run work that takes a lock `L`, a flush
/// while holding `L` is reported as it must be.
///
/// All queues built here share the class of the `LazyWorkQueue` (its
/// creation site, or its name via [`LazyWorkQueue::with_class`]).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// static DIO: std::sync::OnceLock<async_lockdep::LazyWorkQueue> = std::sync::OnceLock::new();
/// let dio = DIO.get_or_init(|| async_lockdep::LazyWorkQueue::new("dio"));
/// assert!(dio.get().is_none());
/// let queue = dio.get_or_create().await;
/// queue.queue(async { /* complete the I/O */ });
/// queue.flush().await.unwrap();
/// # }
/// ```
pub struct LazyWorkQueue {
    name: Cow<'static, str>,
    class: ClassId,
    max_concurrency: usize,
    queue: OnceLock<WorkQueue>,
    created: AtomicUsize,
    destroyed: AtomicUsize,
}

impl fmt::Debug for LazyWorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyWorkQueue")
            .field("name", &self.name)
            .field("queue", &self.queue.get())
            .field("created", &self.created())
            .field("losers_destroyed", &self.losers_destroyed())
            .finish()
    }
}

impl LazyWorkQueue {
    /// A lazy queue named `name`, of the class of the caller's location.
    /// Needs no runtime: nothing is spawned until first use.
    #[track_caller]
    pub fn new(name: impl Into<Cow<'static, str>>) -> LazyWorkQueue {
        let class = class::for_site(Location::caller(), ClassKind::WorkQueue);
        LazyWorkQueue::from_class(class, name.into())
    }

    /// A lazy queue named `name` whose class is `class`.
    #[track_caller]
    pub fn with_class(
        class: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
    ) -> LazyWorkQueue {
        let class = class::named(class, ClassKind::WorkQueue, Location::caller());
        LazyWorkQueue::from_class(class, name.into())
    }

    fn from_class(class: ClassId, name: Cow<'static, str>) -> LazyWorkQueue {
        LazyWorkQueue {
            name,
            class,
            max_concurrency: 1,
            queue: OnceLock::new(),
            created: AtomicUsize::new(0),
            destroyed: AtomicUsize::new(0),
        }
    }

    /// How many items may run at once in the queue once created (default 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// The queue, if it was created.
    pub fn get(&self) -> Option<&WorkQueue> {
        self.queue.get()
    }

    /// The queue, creating it if needed. Every caller that finds no queue
    /// builds one; the first to install it wins and the others destroy theirs.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, when it has to create the queue.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a loser's queue dropped mid-destroy stops by itself.
    #[track_caller]
    pub fn get_or_create(&self) -> impl Future<Output = &WorkQueue> + '_ {
        let site = Location::caller();
        async move {
            if let Some(queue) = self.queue.get() {
                return queue;
            }
            let mine =
                WorkQueue::with_class_id(self.class, self.name.clone(), self.max_concurrency);
            self.created.fetch_add(1, Ordering::Relaxed);
            // Building a queue may sleep in the kernel (alloc_workqueue); let
            // other racers run here too, so the race is as wide as it is there.
            tokio::task::yield_now().await;
            if let Err(loser) = self.queue.set(mine) {
                self.destroyed.fetch_add(1, Ordering::Relaxed);
                // Never used: destroying it records no dependency.
                let _ = loser.destroy_at(site).await;
            }
            match self.queue.get() {
                Some(queue) => queue,
                None => unreachable!("async-lockdep: OnceLock empty after a set"),
            }
        }
    }

    /// How many queues were built (winner included).
    pub fn created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }

    /// How many racing losers built a queue and destroyed it.
    pub fn losers_destroyed(&self) -> usize {
        self.destroyed.load(Ordering::Relaxed)
    }
}
