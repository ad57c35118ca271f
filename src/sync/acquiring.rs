//! `Acquiring`: the one future every waiting acquisition goes through.
//!
//! It holds tokio's own acquire future, made when the acquisition is asked
//! for (tokio's are `async fn`s, which do nothing until polled), polls it
//! first, and builds the wrapper's guard from its output (`make`, a `Copy`
//! closure over references). Whether detection is on is read once, when
//! the acquisition is asked for ([`track`]). Off: that is all, inline, and
//! nothing is asked of the detector, not even what is wanted. On (out of
//! line, `poll_tracked`): ready at once, the lock was free, and the
//! dependencies are checked and the lock marked held in one visit
//! (`Holding::lock_now`); pending, the task is about to wait, so the
//! dependencies and the wait are recorded now (`Waiting::start`), before the
//! task can hang. Polling tokio's future first keeps tokio's behaviour,
//! cooperative budget included, and adds a single thin layer with no
//! `async` block or `map` around it.

use std::future::Future;

use crate::lockdep::hooks::{Holding, LockMeta};
use crate::lockdep::{Acquire, Engine};

/// The engine and what is wanted (from `want`, called only then), if
/// detection is on: read once, when an acquisition is asked for.
#[inline]
pub(crate) fn track(
    meta: &LockMeta,
    want: impl FnOnce(&LockMeta) -> Acquire,
) -> Option<(&'static Engine, Acquire)> {
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
    pub(crate) struct Acquiring<F, M, S> {
        /// tokio's future, made when the acquisition is asked for (tokio's
        /// acquisition futures do nothing until polled). Dropped in place
        /// as soon as it is ready (`Track::Finished`), so that dropping the
        /// finished acquisition is a check, inline, not tokio's drop glue.
        #[pin]
        inner: ManuallyDrop<F>,
        /// Builds the wrapper's output from tokio's and the record of the
        /// hold; copied out when tokio's future is ready (every constructor
        /// is a closure over references), so it needs no "taken" flag.
        make: M,
        /// Whether the output means "acquired" (a closed semaphore fails); a
        /// closure type, so the call is inlined.
        succeeded: S,
        /// What the detector knows of this acquisition.
        track: Track,
    }

    /// The detector's side of an acquisition.
    enum Track {
        /// Detection was off when the acquisition was asked for.
        Off,
        /// Not polled yet: the first poll records the hold or the wait.
        Fresh(&'static Engine, Acquire),
        /// Pending: the wait is recorded.
        Waiting(Waiting, Acquire),
        /// Ready (or failed): tokio's future is dropped, nothing more to
        /// record.
        Finished,
    }

    impl<F: Future, M> Acquiring<F, M, fn(&F::Output) -> bool> {
        // The bounds on the constructors let closures infer their arguments.
        /// Tracks the acquisition that `start` makes tokio's future of (which
        /// may wait), with `track` (if detection is on); `make` builds the
        /// output from tokio's output and the holding record.
        #[inline]
        pub(crate) fn new<C, O>(
            track: Option<(&'static Engine, Acquire)>,
            start: C,
            make: M,
        ) -> Acquiring<F, M, impl Fn(&F::Output) -> bool + Copy>
        where
            C: FnOnce() -> F,
            M: FnOnce(F::Output, Option<Holding>) -> O + Copy,
        {
            Acquiring::fallible(track, start, |_: &F::Output| true, make)
        }
    }

    impl<F: Future, M, S: Fn(&F::Output) -> bool> Acquiring<F, M, S> {
        /// As [`Acquiring::new`], for an acquisition that can fail.
        #[inline]
        pub(crate) fn fallible<C, O>(
            track: Option<(&'static Engine, Acquire)>,
            start: C,
            succeeded: S,
            make: M,
        ) -> Self
        where
            C: FnOnce() -> F,
            M: FnOnce(F::Output, Option<Holding>) -> O + Copy,
        {
            Acquiring {
                inner: ManuallyDrop::new(start()),
                make,
                succeeded,
                track: match track {
                    None => Track::Off,
                    Some((engine, want)) => Track::Fresh(engine, want),
                },
            }
        }
    }

    /// tokio's future in `inner`, pinned where it is.
    #[inline(always)]
    fn pinned<F>(inner: Pin<&mut ManuallyDrop<F>>) -> Pin<&mut F> {
        // SAFETY: `ManuallyDrop` is a transparent wrapper: its content is
        // pinned as it is, and never moved out (it is dropped in place).
        unsafe { inner.map_unchecked_mut(|inner| &mut **inner) }
    }

    /// The acquisition is ready: drops tokio's future in place, now.
    #[inline(always)]
    fn finish<F>(inner: Pin<&mut ManuallyDrop<F>>, track: &mut Track) {
        // `Finished` first: if the drop panicked, `PinnedDrop` must not drop
        // it again.
        *track = Track::Finished;
        // SAFETY: called once, when tokio's future is ready; `Finished`
        // keeps it from being polled or dropped again. Dropping in place
        // keeps the pinning guarantee.
        unsafe { ManuallyDrop::drop(inner.get_unchecked_mut()) };
    }

    #[pinned_drop]
    impl<F, M, S> PinnedDrop for Acquiring<F, M, S> {
        #[inline(always)]
        fn drop(self: Pin<&mut Self>) {
            let this = self.project();
            if !matches!(this.track, Track::Finished) {
                drop_inner(this.inner);
            }
        }
    }

    /// Drops tokio's future (an acquisition given up before it finished).
    #[inline(never)]
    fn drop_inner<F>(inner: Pin<&mut ManuallyDrop<F>>) {
        // SAFETY: not finished, so not dropped yet; the acquisition is being
        // dropped, so it is never used again.
        unsafe { ManuallyDrop::drop(inner.get_unchecked_mut()) };
    }

    impl<F, M, S, O> Future for Acquiring<F, M, S>
    where
        F: Future,
        M: FnOnce(F::Output, Option<Holding>) -> O + Copy,
        S: Fn(&F::Output) -> bool,
    {
        type Output = O;

        /// Detection off: tokio's poll and the output, inline. On: out of
        /// line. A poll after ready is tokio's to refuse (its futures are
        /// `async fn`s, which panic then).
        #[inline(always)]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
            let mut this = self.project();
            if !matches!(this.track, Track::Off) {
                return poll_tracked(this, cx);
            }
            let output = ready!(pinned(this.inner.as_mut()).poll(cx));
            finish(this.inner, this.track);
            let make = *this.make;
            Poll::Ready(make(output, None))
        }
    }

    /// [`Acquiring::poll`] with detection on. Ready at once: the dependencies
    /// are checked and the lock marked held in one visit; pending: the wait is
    /// recorded (once), before the task can hang.
    #[inline(never)]
    fn poll_tracked<F, M, S, O>(
        mut this: AcquiringProj<'_, F, M, S>,
        cx: &mut Context<'_>,
    ) -> Poll<O>
    where
        F: Future,
        M: FnOnce(F::Output, Option<Holding>) -> O + Copy,
        S: Fn(&F::Output) -> bool,
    {
        if matches!(this.track, Track::Finished) {
            finished();
        }
        if let Track::Waiting(waiting, _) = &*this.track {
            waiting.poll_doom(cx.waker()); // panics if told to give up
        }
        match pinned(this.inner.as_mut()).poll(cx) {
            Poll::Ready(output) => {
                let held = match this.track {
                    Track::Fresh(engine, want) if (this.succeeded)(&output) => {
                        let (engine, want) = (*engine, *want);
                        finish(this.inner, this.track);
                        Some(Holding::lock_now(engine, want))
                    }
                    Track::Waiting(..) => {
                        // A failed wait ends here too (its `Waiting` is dropped).
                        let track = std::mem::replace(this.track, Track::Finished);
                        finish(this.inner, this.track);
                        match track {
                            Track::Waiting(waiting, want) if (this.succeeded)(&output) => {
                                waiting.acquired(want)
                            }
                            _ => None,
                        }
                    }
                    _ => {
                        finish(this.inner, this.track);
                        None
                    }
                };
                let make = *this.make;
                Poll::Ready(make(output, held))
            }
            Poll::Pending => {
                if let Track::Fresh(engine, want) = *this.track {
                    let waiting = Waiting::start_doomable(engine, want);
                    waiting.poll_doom(cx.waker()); // keeps the waker if needed
                    *this.track = Track::Waiting(waiting, want);
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
        pub(crate) fn new<C, O>(
            _track: Option<(&'static Engine, Acquire)>,
            start: C,
            make: M,
        ) -> Self
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
            _track: Option<(&'static Engine, Acquire)>,
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
#[cfg(feature = "detect")]
#[cold]
#[track_caller]
fn finished() -> ! {
    panic!("lock future polled after completion")
}
