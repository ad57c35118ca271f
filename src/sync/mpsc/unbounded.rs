//! The unbounded channel: tokio's sender (a send never waits, so it records
//! no wait) and a receiver that begins a new *section* of its context each
//! time it delivers a value: a reply sent while handling that value depends
//! only on what the handler waits for from then on (see `crate::oneshot`).
//! Between two `recv` calls the receiving context holds the channel's
//! pseudo-lock, as a bounded receiver does: nothing waits for it in the
//! class graph (a send never waits), but the deadlock-now check finds who
//! handles a request whose reply is awaited (a caller holding `state` while
//! awaiting the reply of an actor that waits for `state`).

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::task::{Context, Poll};

use super::error::{SendError, TryRecvError};
use super::{Receiving, Sections};
use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{wait_polled, Event, Holding};
use crate::sync::Held;
use crate::vocab::{Access, ClassId};

/// An unbounded channel's identity: its messages (an event) and the class
/// of its pseudo-lock (the receiving section), which shares their instance.
#[derive(Clone, Copy, Debug)]
struct Meta {
    messages: Event,
    channel: ClassId,
}

impl Meta {
    #[track_caller]
    fn new<T>() -> Meta {
        let site = Location::caller();
        let type_name = Some(std::any::type_name::<T>());
        let messages = Event::new(ClassKind::Messages, type_name, None, site);
        let channel = if messages.want().is_some() {
            class::for_site_typed(site, ClassKind::Channel, type_name)
        } else {
            ClassId::default()
        };
        Meta { messages, channel }
    }

    /// The calling context sends at `site`.
    fn signal(&self, site: &'static Location<'static>) {
        self.messages.signal_into(self.channel, site);
    }
}

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
    let meta = Meta::new::<T>();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        UnboundedSender { inner: tx, meta },
        UnboundedReceiver {
            inner: rx,
            meta,
            section: Held::new(None),
        },
    )
}

/// The sending half of an unbounded channel, as
/// `tokio::sync::mpsc::UnboundedSender`.
pub struct UnboundedSender<T> {
    inner: tokio::sync::mpsc::UnboundedSender<T>,
    meta: Meta,
}

/// A sender that does not keep the channel open, as
/// `tokio::sync::mpsc::WeakUnboundedSender`.
pub struct WeakUnboundedSender<T> {
    inner: tokio::sync::mpsc::WeakUnboundedSender<T>,
    meta: Meta,
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        UnboundedSender {
            inner: self.inner.clone(),
            meta: self.meta,
        }
    }
}

impl<T> Clone for WeakUnboundedSender<T> {
    fn clone(&self) -> Self {
        WeakUnboundedSender {
            inner: self.inner.clone(),
            meta: self.meta,
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
        self.meta.signal(Location::caller());
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
            meta: self.meta,
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
            meta: self.meta,
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
    meta: Meta,
    /// The receiving section in progress: the pseudo-lock, held.
    section: Held,
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T> Sections for UnboundedReceiver<T> {
    #[inline]
    fn end_section(&mut self) {
        self.section = Held::new(None);
    }

    fn hold_section(&mut self, site: &'static Location<'static>) {
        if let (Some(engine), Some(want)) = (
            crate::lockdep::engine(),
            self.meta
                .messages
                .sibling(self.meta.channel, Access::Receive, site),
        ) {
            self.section = Held::new(Some(Holding::try_acquired(engine, want)));
        }
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
        let site = Location::caller();
        let want = self.meta.messages.want_at(site);
        self.end_section();
        let mut receiving = Receiving::new(self, site);
        async move {
            let inner = &mut receiving.receiver.inner;
            let value = wait_polled(want, |cx| inner.poll_recv(cx)).await;
            if value.is_some() {
                receiving.delivered();
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
        let site = Location::caller();
        let want = self.meta.messages.want_at(site);
        self.end_section();
        async move {
            let inner = &mut self.inner;
            let n = wait_polled(want, |cx| inner.poll_recv_many(cx, buffer, limit)).await;
            if n > 0 {
                self.received(site);
            }
            n
        }
    }

    /// Receives a value if one is there now.
    ///
    /// # Errors
    ///
    /// `Empty` or `Disconnected`.
    #[track_caller]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.end_section();
        let value = self.inner.try_recv()?;
        self.received(Location::caller());
        Ok(value)
    }

    /// Receives from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<T> {
        self.end_section();
        self.meta.messages.record_wait();
        let value = self.inner.blocking_recv();
        if value.is_some() {
            self.received(Location::caller());
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
        self.end_section();
        let n = self.inner.blocking_recv_many(buffer, limit);
        if n > 0 {
            self.received(Location::caller());
        }
        n
    }

    /// Closes the channel: sends fail from now on, buffered values can still
    /// be received.
    pub fn close(&mut self) {
        self.end_section();
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
    #[track_caller]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.end_section();
        let polled = self.inner.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.received(Location::caller());
        }
        polled
    }

    /// Polls for up to `limit` values, as tokio's.
    #[track_caller]
    pub fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut Vec<T>,
        limit: usize,
    ) -> Poll<usize> {
        self.end_section();
        let polled = self.inner.poll_recv_many(cx, buffer, limit);
        if let Poll::Ready(n) = polled {
            if n > 0 {
                self.received(Location::caller());
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
