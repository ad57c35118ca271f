//! `oneshot`: tokio's one-value channel, whose reply is an *event*.
//!
//! Awaiting the [`Receiver`] while holding `H` records `H → reply` (the
//! reply's class is where [`channel`] was called, or a name). Sending the
//! reply records `reply → L` for every lock `L` the sending context waited
//! for since its section began: the start of its task, or the `recv` of
//! [`crate::mpsc`] that delivered the message it is handling (which usually
//! carried this [`Sender`]). So "hold `state`, send a request, await the
//! reply" plus "the actor locks `state` before replying" is the cycle
//! `state → reply → state`, reported the first time both halves are seen,
//! whether or not the deadlock happens.
//!
//! Only awaiting a reply waits: `try_recv` and dropping either half record
//! nothing. A `Receiver` awaited with `.await` cannot know its own line:
//! reports show where the channel was created.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use tokio::sync::oneshot::error;

use self::error::{RecvError, TryRecvError};
use crate::lockdep::hooks::{event_of, Event, FirstPollWait};

/// A one-value channel, as `tokio::sync::oneshot::channel`; its reply's
/// class is the caller's source location.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, rx) = async_lockdep::oneshot::channel();
/// tokio::spawn(async move { tx.send(7).unwrap() });
/// assert_eq!(rx.await, Ok(7));
/// # }
/// ```
#[track_caller]
#[inline]
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    with_event(event_of::<T>(None, Location::caller()))
}

/// The halves of a new channel whose reply is `event`.
#[inline]
fn with_event<T>(event: Event) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (
        Sender { inner: tx, event },
        Receiver {
            inner: rx,
            waiting: Waiting::new(event),
        },
    )
}

/// A one-value channel whose reply's class is `name` (every channel named
/// alike shares it). See [`channel`].
#[track_caller]
pub fn channel_with_class<T>(
    name: impl Into<std::borrow::Cow<'static, str>>,
) -> (Sender<T>, Receiver<T>) {
    with_event(event_of::<T>(Some(name.into()), Location::caller()))
}

/// Sends the value of a [`channel`], as `tokio::sync::oneshot::Sender`.
pub struct Sender<T> {
    inner: tokio::sync::oneshot::Sender<T>,
    event: Event,
}

/// Receives the value of a [`channel`], as `tokio::sync::oneshot::Receiver`:
/// a future of the value.
pub struct Receiver<T> {
    inner: tokio::sync::oneshot::Receiver<T>,
    /// What the detector keeps for the wait, boxed: only channels made while
    /// detection is on have it, and one made while it is off stays as small
    /// (and as cheap to move) as tokio's.
    waiting: Option<Box<Waiting>>,
}

/// A reply's wait: its event, its adaptor, and where the making context
/// stood in its sends (checked at the first poll: a request sent into the
/// context's own channel).
struct Waiting {
    event: Event,
    wait: FirstPollWait,
    #[cfg(feature = "detect")]
    origin: Option<(crate::vocab::ContextId, u64)>,
}

impl Waiting {
    /// The wait for `event`, if it is recorded (made while detection is on).
    #[inline]
    fn new(event: Event) -> Option<Box<Waiting>> {
        event.want()?;
        Some(Box::new(Waiting {
            event,
            wait: FirstPollWait::default(),
            #[cfg(feature = "detect")]
            origin: crate::lockdep::engine().map(|engine| engine.send_mark()),
        }))
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> Sender<T> {
    /// Sends `value`: the reply's event. Records `reply → L` for the waits
    /// `L` the calling context made since its section began.
    ///
    /// # Errors
    ///
    /// If the receiver is gone, with the value back.
    #[track_caller]
    #[inline]
    pub fn send(self, value: T) -> Result<(), T> {
        self.event.signal(Location::caller());
        self.inner.send(value)
    }

    /// Waits until the receiver is dropped or closed. Records nothing.
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    pub async fn closed(&mut self) {
        self.inner.closed().await
    }

    /// Whether the receiver is dropped or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Polls for the receiver to be dropped or closed, as tokio's.
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_closed(cx)
    }
}

impl<T> Receiver<T> {
    /// Closes the channel: the sender's `send` fails from now on.
    pub fn close(&mut self) {
        self.inner.close()
    }

    /// Takes the value if it was sent; records nothing (it cannot wait).
    ///
    /// # Errors
    ///
    /// `Empty` if not sent yet, `Closed` if the sender is gone.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.inner.try_recv()
    }

    /// Receives from synchronous code, blocking the thread. Records as
    /// awaiting the receiver.
    ///
    /// # Errors
    ///
    /// If the sender is gone without sending.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        if let Some(waiting) = &self.waiting {
            waiting.event.record_wait();
        }
        self.inner.blocking_recv()
    }

    /// Whether the value was received or the channel closed and empty.
    pub fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }

    /// Whether no value is there to receive now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    /// Records `H → reply` for the held locks `H` at the first poll; while
    /// pending, the wait is seen by the deadlock-now check.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        let Some(waiting) = this.waiting.as_deref_mut() else {
            return Pin::new(inner).poll(cx);
        };
        let Some(want) = waiting.event.want() else {
            return Pin::new(inner).poll(cx);
        };
        // The wait the deadlock-now check sees: for the channel the request
        // carrying this reply went into (its receiver answers it), else for
        // the reply itself (whose signaller is not known).
        #[allow(unused_mut)]
        let mut live = want;
        #[cfg(feature = "detect")]
        if let Some(origin) = waiting.origin.take() {
            let engine = crate::lockdep::engine();
            if let Some((engine, channel)) =
                engine.and_then(|e| Some((e, e.reply_channel(origin)?)))
            {
                engine.check_reply_from_own_channel(channel, want);
                live = crate::lockdep::Acquire {
                    lock: channel,
                    ..want
                };
                // The reply comes from whoever handles the request: held
                // locks wait for that channel's handler too (`H → channel`),
                // which its handler's `channel → L` closes into a cycle when
                // it needs `H` — whatever reply class it answers with.
                let _ = engine.record_wait_dependencies_deferring(live, false);
            }
        }
        waiting
            .wait
            .poll_as(|| (want, live), || Pin::new(inner).poll(cx))
    }
}
