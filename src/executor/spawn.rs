//! `spawn` and `JoinHandle`: a spawned task is a one-item executor.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::instrument::WithSubscriber;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{FirstPollWait, Holding, LockMeta};
use crate::vocab::Access;

/// Spawns a task, as [`tokio::spawn`], whose class is the caller's location.
///
/// The task holds its class's pseudo-lock while it runs, so locks it takes
/// record "task → lock"; awaiting its [`JoinHandle`] while holding a lock `H`
/// records "H → task". A handle never awaited records nothing. The task also
/// runs with the caller's `tracing` dispatcher, so its spans and events go
/// to the caller's subscriber on any worker thread.
///
/// The class is the caller's location: a helper of your own that wraps
/// `spawn` should be `#[track_caller]` (or use [`spawn_named`]), or every
/// task it starts shares one class, and joining any of them while holding a
/// lock that any other took would look like a cycle.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = async_lockdep::spawn(async { 6 * 7 });
/// assert_eq!(handle.await.unwrap(), 42);
/// # }
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let site = Location::caller();
    spawn_with_class(class::for_site(site, ClassKind::Task), site, future)
}

/// [`spawn`] with a task class named `name` (tasks with one name share it).
#[track_caller]
pub fn spawn_named<F>(name: impl Into<Cow<'static, str>>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let site = Location::caller();
    spawn_with_class(class::named(name, ClassKind::Task, site), site, future)
}

fn spawn_with_class<F>(
    class: crate::vocab::ClassId,
    site: &'static Location<'static>,
    future: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let meta = LockMeta::new_at(class, site);
    let detector = meta.engine();
    let want = meta.want(Access::RunTask, site);
    let task = async move {
        let holding = detector.map(|d| Holding::try_acquired(d, want));
        let output = future.await;
        drop(holding);
        output
    };
    let inner = tokio::spawn(task.with_current_subscriber());
    JoinHandle {
        inner,
        meta,
        site,
        exact: false,
        wait: FirstPollWait::default(),
    }
}

/// An owned permission to join a task started with [`spawn`], as
/// `tokio::task::JoinHandle`.
///
/// The first poll records "held lock → task" for the locks the awaiting task
/// holds. A plain `.await` cannot know its own line: the report says so and
/// names the spawn site instead (`Access::Await`); await
/// [`JoinHandle::join`] to record the exact line of the wait.
pub struct JoinHandle<T> {
    inner: tokio::task::JoinHandle<T>,
    meta: LockMeta,
    site: &'static Location<'static>,
    /// Whether `site` is the line of the wait (`join()`), not the spawn.
    exact: bool,
    wait: FirstPollWait,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.inner.id())
            .field("spawned_at", &self.site)
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// Aborts the task, as tokio's `abort`.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The task's id.
    pub fn id(&self) -> tokio::task::Id {
        self.inner.id()
    }

    /// A handle that can abort the task without joining it.
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.inner.abort_handle()
    }

    /// Awaits the task, recording this line as where it was waited for.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as awaiting tokio's handle.
    #[track_caller]
    pub fn join(mut self) -> Self {
        self.site = Location::caller();
        self.exact = true;
        self
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let access = if self.exact {
            Access::Join
        } else {
            Access::Await
        };
        let this = &mut *self;
        let (meta, site) = (&this.meta, this.site);
        this.wait.poll(
            || meta.want(access, site),
            || Pin::new(&mut this.inner).poll(cx),
        )
    }
}
