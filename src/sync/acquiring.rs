//! `Acquiring`: the one future every waiting acquisition goes through.
//!
//! It wraps tokio's own acquire future and polls it first. Ready at once: the
//! lock was free, and the dependencies are checked and the lock marked held
//! in one visit (`Holding::lock_now`). Pending: the task is about to wait, so
//! the dependencies and the wait are recorded now (`Waiting::start`), before
//! the task can hang. Polling tokio's future first keeps tokio's behaviour,
//! cooperative budget included, and adds no layer of `async` state.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::state::{Acquire, DetectorRef, Holding, Waiting};

#[pin_project]
pub(crate) struct Acquiring<'d, F: Future> {
    #[pin]
    inner: F,
    detector: Option<DetectorRef<'d>>,
    waiting: Option<Waiting<'d>>,
    want: Acquire,
    /// Whether the output means "acquired" (a closed semaphore fails).
    succeeded: fn(&F::Output) -> bool,
}

impl<'d, F: Future> Acquiring<'d, F> {
    /// Tracks `inner`, an acquisition of `want` that may wait.
    #[inline]
    pub(crate) fn new(detector: Option<DetectorRef<'d>>, want: Acquire, inner: F) -> Self {
        Acquiring {
            inner,
            detector,
            waiting: None,
            want,
            succeeded: |_| true,
        }
    }

    /// As [`Acquiring::new`], for an acquisition that can fail.
    #[inline]
    pub(crate) fn fallible(
        detector: Option<DetectorRef<'d>>,
        want: Acquire,
        inner: F,
        succeeded: fn(&F::Output) -> bool,
    ) -> Self {
        Acquiring {
            inner,
            detector,
            waiting: None,
            want,
            succeeded,
        }
    }
}

impl<'d, F: Future> Future for Acquiring<'d, F> {
    type Output = (F::Output, Option<Holding<'d>>);

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Ready(output) => {
                let held = if !(this.succeeded)(&output) {
                    None // dropping `waiting` ends the wait
                } else if let Some(waiting) = this.waiting.take() {
                    waiting.acquired()
                } else {
                    this.detector
                        .take()
                        .map(|d| Holding::lock_now(d, *this.want))
                };
                *this.waiting = None;
                Poll::Ready((output, held))
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
