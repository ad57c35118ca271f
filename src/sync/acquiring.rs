//! `Acquiring`: the one future every waiting acquisition goes through.
//!
//! It wraps tokio's own acquire future and polls it first. Ready at once: the
//! lock was free, and the dependencies are checked and the lock marked held
//! in one visit (`Holding::lock_now`). Pending: the task is about to wait, so
//! the dependencies and the wait are recorded now (`Waiting::start`), before
//! the task can hang. Polling tokio's future first keeps tokio's behaviour,
//! cooperative budget included, and adds a single thin layer: the guard is
//! built here too (`make`), with no `async` block or `map` around it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::lockdep::hooks::{Engine, Holding, Waiting};
use crate::lockdep::Acquire;

#[pin_project]
pub(crate) struct Acquiring<F: Future, M, S = fn(&<F as Future>::Output) -> bool> {
    #[pin]
    inner: F,
    detector: Option<Engine>,
    waiting: Option<Waiting>,
    want: Acquire,
    /// Whether the output means "acquired" (a closed semaphore fails); a
    /// closure type, so the call is inlined.
    succeeded: S,
    /// Builds the wrapper's guard from tokio's and the record of holding it.
    make: Option<M>,
}

impl<F: Future, M> Acquiring<F, M> {
    // The `M` bound on the constructors lets closures infer their arguments.
    /// Tracks `inner`, an acquisition of `want` that may wait; `make` builds
    /// the output from tokio's output and the holding record.
    #[inline]
    pub(crate) fn new<O>(
        detector: Option<Engine>,
        want: Acquire,
        inner: F,
        make: M,
    ) -> Acquiring<F, M, impl Fn(&F::Output) -> bool>
    where
        M: FnOnce(F::Output, Option<Holding>) -> O,
    {
        Acquiring::fallible(detector, want, inner, |_: &F::Output| true, make)
    }
}

impl<F: Future, M, S: Fn(&F::Output) -> bool> Acquiring<F, M, S> {
    /// As [`Acquiring::new`], for an acquisition that can fail.
    #[inline]
    pub(crate) fn fallible<O>(
        detector: Option<Engine>,
        want: Acquire,
        inner: F,
        succeeded: S,
        make: M,
    ) -> Self
    where
        M: FnOnce(F::Output, Option<Holding>) -> O,
    {
        Acquiring {
            inner,
            detector,
            waiting: None,
            want,
            succeeded,
            make: Some(make),
        }
    }
}

impl<F, M, S, O> Future for Acquiring<F, M, S>
where
    F: Future,
    M: FnOnce(F::Output, Option<Holding>) -> O,
    S: Fn(&F::Output) -> bool,
{
    type Output = O;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Ready(output) => {
                let held = if !(this.succeeded)(&output) {
                    None
                } else if let Some(waiting) = this.waiting.take() {
                    waiting.acquired()
                } else {
                    this.detector
                        .take()
                        .map(|d| Holding::lock_now(d, *this.want))
                };
                *this.waiting = None; // a failed wait ends here
                match this.make.take() {
                    Some(make) => Poll::Ready(make(output, held)),
                    None => Poll::Pending, // polled after completion: never ready again
                }
            }
            Poll::Pending => {
                if let Some(detector) = this.detector.take() {
                    *this.waiting = Some(Waiting::start(detector, *this.want));
                }
                Poll::Pending
            }
        }
    }
}
