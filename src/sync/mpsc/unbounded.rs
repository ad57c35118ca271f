//! The unbounded channel: tokio's sender (a send never waits, so it records
//! nothing) and a receiver that begins a new *section* of its context each
//! time it delivers a value: a reply sent while handling that value depends
//! only on what the handler waits for from then on (see `crate::oneshot`).

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::task::{Context, Poll};

use super::error::{SendError, TryRecvError};
use crate::lockdep::class::ClassKind;
use crate::lockdep::hooks::{wait_polled, Event};

/// An unbounded channel, as `tokio::sync::mpsc::unbounded_channel`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, mut rx) = async_lockdep::mpsc::unbounded_channel::<u32>();
/// tx.send(1).unwrap();
/// assert_eq!(rx.recv().await, Some(1));
/// # }
/// ```
#[track_caller]
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let messages = Event::new(
        ClassKind::Messages,
        Some(std::any::type_name::<T>()),
        None,
        Location::caller(),
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        UnboundedSender {
            inner: tx,
            messages,
        },
        UnboundedReceiver {
            inner: rx,
            messages,
        },
    )
}

/// The sending half of an unbounded channel, as
/// `tokio::sync::mpsc::UnboundedSender`.
pub struct UnboundedSender<T> {
    inner: tokio::sync::mpsc::UnboundedSender<T>,
    messages: Event,
}

/// A sender that does not keep the channel open, as
/// `tokio::sync::mpsc::WeakUnboundedSender`.
pub struct WeakUnboundedSender<T> {
    inner: tokio::sync::mpsc::WeakUnboundedSender<T>,
    messages: Event,
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        UnboundedSender {
            inner: self.inner.clone(),
            messages: self.messages,
        }
    }
}

impl<T> Clone for WeakUnboundedSender<T> {
    fn clone(&self) -> Self {
        WeakUnboundedSender {
            inner: self.inner.clone(),
            messages: self.messages,
        }
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> fmt::Debug for WeakUnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> UnboundedSender<T> {
    /// Sends `value` without waiting; signals the channel's messages.
    ///
    /// # Errors
    ///
    /// If the receiver is gone, with the value back.
    #[track_caller]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.messages.signal(Location::caller());
        self.inner.send(value)
    }

    /// Completes when the receiver is dropped or closed.
    pub fn closed(&self) -> impl Future<Output = ()> + '_ {
        self.inner.closed()
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Whether both senders send into one channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.inner.same_channel(&other.inner)
    }

    /// A sender that does not keep the channel open.
    pub fn downgrade(&self) -> WeakUnboundedSender<T> {
        WeakUnboundedSender {
            inner: self.inner.downgrade(),
            messages: self.messages,
        }
    }

    /// The number of senders.
    pub fn strong_count(&self) -> usize {
        self.inner.strong_count()
    }

    /// The number of weak senders.
    pub fn weak_count(&self) -> usize {
        self.inner.weak_count()
    }
}

impl<T> WeakUnboundedSender<T> {
    /// A sender, if the channel is still open.
    pub fn upgrade(&self) -> Option<UnboundedSender<T>> {
        self.inner.upgrade().map(|inner| UnboundedSender {
            inner,
            messages: self.messages,
        })
    }

    /// The number of senders.
    pub fn strong_count(&self) -> usize {
        self.inner.strong_count()
    }

    /// The number of weak senders.
    pub fn weak_count(&self) -> usize {
        self.inner.weak_count()
    }
}

/// The receiving half of an unbounded channel, as
/// `tokio::sync::mpsc::UnboundedReceiver`. Each value it delivers begins a
/// new section of the receiving context.
pub struct UnboundedReceiver<T> {
    inner: tokio::sync::mpsc::UnboundedReceiver<T>,
    messages: Event,
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// A value was delivered: the calling context begins a new section.
#[inline]
fn delivered() {
    if let Some(engine) = crate::lockdep::engine() {
        engine.begin_section();
    }
}

impl<T> UnboundedReceiver<T> {
    /// Receives the next value, waiting for one; `None` once closed and
    /// empty. Awaiting it while holding `H` records `H → messages` (a sender
    /// that needs `H` before it sends can deadlock with it).
    ///
    /// # Cancel safety
    ///
    /// As tokio's: no value is lost if the future is dropped.
    #[track_caller]
    pub fn recv(&mut self) -> impl Future<Output = Option<T>> + '_ {
        let want = self.messages.want_at(Location::caller());
        async move {
            let inner = &mut self.inner;
            let value = wait_polled(want, |cx| inner.poll_recv(cx)).await;
            if value.is_some() {
                delivered();
            }
            value
        }
    }

    /// Receives up to `limit` values into `buffer`, waiting for at least one;
    /// returns how many (0 once closed and empty).
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    #[track_caller]
    pub fn recv_many<'a>(
        &'a mut self,
        buffer: &'a mut Vec<T>,
        limit: usize,
    ) -> impl Future<Output = usize> + 'a {
        let want = self.messages.want_at(Location::caller());
        async move {
            let inner = &mut self.inner;
            let n = wait_polled(want, |cx| inner.poll_recv_many(cx, buffer, limit)).await;
            if n > 0 {
                delivered();
            }
            n
        }
    }

    /// Receives a value if one is there now.
    ///
    /// # Errors
    ///
    /// `Empty` or `Disconnected`.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let value = self.inner.try_recv()?;
        delivered();
        Ok(value)
    }

    /// Receives from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<T> {
        self.messages.record_wait();
        let value = self.inner.blocking_recv();
        if value.is_some() {
            delivered();
        }
        value
    }

    /// [`UnboundedReceiver::recv_many`] from synchronous code.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        let n = self.inner.blocking_recv_many(buffer, limit);
        if n > 0 {
            delivered();
        }
        n
    }

    /// Closes the channel: sends fail from now on, buffered values can still
    /// be received.
    pub fn close(&mut self) {
        self.inner.close()
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Whether no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The number of buffered values.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Polls for the next value, as tokio's.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let polled = self.inner.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            delivered();
        }
        polled
    }

    /// Polls for up to `limit` values, as tokio's.
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut Vec<T>,
        limit: usize,
    ) -> Poll<usize> {
        let polled = self.inner.poll_recv_many(cx, buffer, limit);
        if let Poll::Ready(n) = polled {
            if n > 0 {
                delivered();
            }
        }
        polled
    }

    /// The number of senders.
    pub fn sender_strong_count(&self) -> usize {
        self.inner.sender_strong_count()
    }

    /// The number of weak senders.
    pub fn sender_weak_count(&self) -> usize {
        self.inner.sender_weak_count()
    }
}
