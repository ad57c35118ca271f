//! `Acquiring`: the one future every waiting acquisition goes through.
//!
//! It makes tokio's own acquire future at its first poll, in place (moving
//! it would copy all of its large state), and polls it first. Whether
//! detection is on is read once, when the acquisition is asked for
//! ([`track`]). Off: that is all, inline; the guard is built with no record
//! and nothing is asked of the detector, not even what is wanted. On (out
//! of line, `poll_tracked`): ready at once, the lock was free, and the
//! dependencies are checked and the lock marked held in one visit
//! (`Holding::lock_now`); pending, the task is about to wait, so the
//! dependencies and the wait are recorded now (`Waiting::start`), before the
//! task can hang. Polling tokio's future first keeps tokio's behaviour,
//! cooperative budget included, and adds a single thin layer: the guard is
//! built here too (`make`), with no `async` block or `map` around it.
//!
//! tokio's future is dropped as soon as it is ready, so that dropping a
//! finished `Acquiring` is a check, inline (see `PinnedDrop`).

use std::future::Future;

use crate::lockdep::hooks::{Engine, Holding, LockMeta};
use crate::lockdep::Acquire;

/// The engine and what is wanted (from `want`, called only then), if
/// detection is on: read once, when an acquisition is asked for.
#[inline]
pub(crate) fn track(
    meta: &LockMeta,
    want: impl FnOnce(&LockMeta) -> Acquire,
) -> Option<(Engine, Acquire)> {
    meta.engine().map(|engine| (engine, want(meta)))
}

#[cfg(not(feature = "detect"))]
pub(crate) use passthrough::Acquiring;
#[cfg(feature = "detect")]
pub(crate) use tracked::Acquiring;

/// The acquisition future with the detector's hooks.
#[cfg(feature = "detect")]
mod tracked {
    use super::*;
    use crate::lockdep::hooks::Waiting;
    use pin_project::{pin_project, pinned_drop};
    use std::mem::ManuallyDrop;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    #[pin_project(project = AcquiringProj, PinnedDrop)]
    pub(crate) struct Acquiring<C, F, M, S> {
        /// Makes tokio's future; taken at the first poll.
        start: Option<C>,
        /// tokio's future, from the first poll until it is ready. Dropped by
        /// hand (`PinnedDrop`), so that dropping the finished future is a check
        /// rather than tokio's drop glue.
        #[pin]
        inner: ManuallyDrop<Option<F>>,
        /// What the detector is told; `None` if detection was off.
        track: Option<Track<S>>,
        /// Builds the wrapper's guard from tokio's and the record of holding it.
        make: Option<M>,
    }

    /// The detector's side of an acquisition made while detection is on.
    struct Track<S> {
        /// Taken at the first poll, which records the wait or the hold.
        detector: Option<Engine>,
        waiting: Option<Waiting>,
        want: Acquire,
        /// Whether the output means "acquired" (a closed semaphore fails); a
        /// closure type, so the call is inlined.
        succeeded: S,
    }

    impl<C, F: Future, M> Acquiring<C, F, M, fn(&F::Output) -> bool> {
        // The bounds on the constructors let closures infer their arguments.
        /// Tracks the acquisition that `start` makes tokio's future of (which
        /// may wait), with `track` (if detection is on); `make` builds the
        /// output from tokio's output and the holding record.
        #[inline]
        pub(crate) fn new<O>(
            track: Option<(Engine, Acquire)>,
            start: C,
            make: M,
        ) -> Acquiring<C, F, M, impl Fn(&F::Output) -> bool>
        where
            C: FnOnce() -> F,
            M: FnOnce(F::Output, Option<Holding>) -> O,
        {
            Acquiring::fallible(track, start, |_: &F::Output| true, make)
        }
    }

    impl<C, F: Future, M, S: Fn(&F::Output) -> bool> Acquiring<C, F, M, S> {
        /// As [`Acquiring::new`], for an acquisition that can fail.
        #[inline]
        pub(crate) fn fallible<O>(
            track: Option<(Engine, Acquire)>,
            start: C,
            succeeded: S,
            make: M,
        ) -> Self
        where
            C: FnOnce() -> F,
            M: FnOnce(F::Output, Option<Holding>) -> O,
        {
            Acquiring {
                start: Some(start),
                inner: ManuallyDrop::new(None),
                track: track.map(|(detector, want)| Track {
                    detector: Some(detector),
                    waiting: None,
                    want,
                    succeeded,
                }),
                make: Some(make),
            }
        }
    }

    /// tokio's future in `inner` (if made, and not finished), pinned where it is.
    #[inline(always)]
    fn pinned<F>(inner: Pin<&mut ManuallyDrop<Option<F>>>) -> Pin<&mut Option<F>> {
        // SAFETY: `ManuallyDrop` is a transparent wrapper: its content is pinned
        // as it is, and never moved out (`drop` drops it in place).
        unsafe { inner.map_unchecked_mut(|inner| &mut **inner) }
    }

    #[pinned_drop]
    impl<C, F, M, S> PinnedDrop for Acquiring<C, F, M, S> {
        #[inline(always)]
        fn drop(self: Pin<&mut Self>) {
            let mut this = self.project();
            if this.inner.is_some() {
                drop_inner(pinned(this.inner.as_mut()));
            }
        }
    }

    /// Drops tokio's future (an acquisition given up before it finished).
    #[inline(never)]
    fn drop_inner<F>(mut inner: Pin<&mut Option<F>>) {
        inner.set(None);
    }

    impl<C, F, M, S, O> Future for Acquiring<C, F, M, S>
    where
        C: FnOnce() -> F,
        F: Future,
        M: FnOnce(F::Output, Option<Holding>) -> O,
        S: Fn(&F::Output) -> bool,
    {
        type Output = O;

        /// Detection off: tokio's poll and the output, inline. On: out of line.
        #[inline(always)]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
            let mut this = self.project();
            if this.track.is_some() {
                return poll_tracked(this, cx);
            }
            if let Some(start) = this.start.take() {
                pinned(this.inner.as_mut()).set(Some(start()));
            }
            let Some(inner) = pinned(this.inner.as_mut()).as_pin_mut() else {
                finished();
            };
            let output = ready!(inner.poll(cx));
            pinned(this.inner.as_mut()).set(None);
            let make = this.make.take().unwrap_or_else(|| finished());
            Poll::Ready(make(output, None))
        }
    }

    /// [`Acquiring::poll`] with detection on. Ready at once: the dependencies
    /// are checked and the lock marked held in one visit; pending: the wait is
    /// recorded (once), before the task can hang.
    #[inline(never)]
    fn poll_tracked<C, F, M, S, O>(
        mut this: AcquiringProj<'_, C, F, M, S>,
        cx: &mut Context<'_>,
    ) -> Poll<O>
    where
        C: FnOnce() -> F,
        F: Future,
        M: FnOnce(F::Output, Option<Holding>) -> O,
        S: Fn(&F::Output) -> bool,
    {
        if let Some(start) = this.start.take() {
            pinned(this.inner.as_mut()).set(Some(start()));
        }
        let (Some(inner), Some(track)) = (
            pinned(this.inner.as_mut()).as_pin_mut(),
            this.track.as_mut(),
        ) else {
            finished();
        };
        match inner.poll(cx) {
            Poll::Ready(output) => {
                pinned(this.inner.as_mut()).set(None);
                let held = if !(track.succeeded)(&output) {
                    None
                } else if let Some(waiting) = track.waiting.take() {
                    waiting.acquired(track.want)
                } else {
                    track
                        .detector
                        .take()
                        .map(|d| Holding::lock_now(d, track.want))
                };
                track.waiting = None; // a failed wait ends here
                let make = this.make.take().unwrap_or_else(|| finished());
                Poll::Ready(make(output, held))
            }
            Poll::Pending => {
                if let Some(detector) = track.detector.take() {
                    track.waiting = Some(Waiting::start(detector, track.want));
                }
                Poll::Pending
            }
        }
    }
}

/// The `detect` feature is off: tokio's future, made at once, and the
/// guard's constructor, in a transparent pin-projected wrapper that inlines
/// into the caller (an `async` block here was a poll function of its own,
/// ≈ 32 instructions per acquisition under callgrind).
#[cfg(not(feature = "detect"))]
mod passthrough {
    use super::*;
    use pin_project::pin_project;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    /// tokio's acquisition future and what builds the wrapper's output.
    #[pin_project]
    pub(crate) struct Acquiring<F, M> {
        #[pin]
        inner: F,
        /// Copied out when tokio's future is ready (every constructor is a
        /// closure over references), so there is no "taken" flag to keep.
        make: M,
    }

    impl<F: Future, M> Acquiring<F, M> {
        // `new` and `fallible`, as the tracked future's constructors, so the
        // callers are the same in both builds. tokio's acquisition futures
        // do nothing until polled, so making one here changes nothing.
        #[inline(always)]
        pub(crate) fn new<C, O>(_track: Option<(Engine, Acquire)>, start: C, make: M) -> Self
        where
            C: FnOnce() -> F,
            M: FnOnce(F::Output, Option<Holding>) -> O,
        {
            Acquiring {
                inner: start(),
                make,
            }
        }

        #[inline(always)]
        pub(crate) fn fallible<C, S, O>(
            _track: Option<(Engine, Acquire)>,
            start: C,
            _succeeded: S,
            make: M,
        ) -> Self
        where
            C: FnOnce() -> F,
            S: Fn(&F::Output) -> bool,
            M: FnOnce(F::Output, Option<Holding>) -> O,
        {
            Acquiring::new(None, start, make)
        }
    }

    impl<F, M, O> Future for Acquiring<F, M>
    where
        F: Future,
        M: FnOnce(F::Output, Option<Holding>) -> O + Copy,
    {
        type Output = O;

        /// tokio's poll; a second poll after ready is tokio's to refuse.
        #[inline(always)]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
            let this = self.project();
            let output = ready!(this.inner.poll(cx));
            let make = *this.make;
            Poll::Ready(make(output, None))
        }
    }
}

/// Polled again after it was ready: tokio's own future, an `async fn`,
/// panics then too.
#[cold]
#[track_caller]
fn finished() -> ! {
    panic!("lock future polled after completion")
}
