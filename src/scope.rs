//! `own_context`: a future with a context of its own, for futures that run
//! concurrently inside one task (`join!`, `select!`, `FuturesUnordered`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::context::{in_scope, new_scope};

/// Gives `future` a lock context of its own.
///
/// A context is a task by default, so futures joined inside one task share
/// one: a lock held by one of them orders the locks the others take, and one
/// waiting for a lock another holds looks like a self-deadlock. Wrap each
/// joined future that takes locks in `own_context` to make them separate
/// contexts, as if they were spawned. Locks held by the enclosing task are
/// not seen from inside (as for a spawned task).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let _lockdep = async_lockdep::test_guard();
/// use async_lockdep::{own_context, Mutex};
///
/// let cache = Mutex::new(0);
/// let (a, b) = tokio::join!(
///     own_context(async { *cache.lock().await += 1 }),
///     own_context(async { *cache.lock().await += 1 }),
/// );
/// # }
/// ```
pub fn own_context<F: Future>(future: F) -> OwnContext<F> {
    OwnContext {
        future,
        scope: new_scope(),
    }
}

/// The future returned by [`own_context`].
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct OwnContext<F> {
    #[pin]
    future: F,
    scope: u64,
}

impl<F: Future> Future for OwnContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        in_scope(*this.scope, || this.future.poll(cx))
    }
}
