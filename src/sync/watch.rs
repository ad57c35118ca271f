//! `watch`: tokio's single-value channel, whose changes are *events*.
//!
//! Awaiting [`Receiver::changed`] (or [`Receiver::wait_for`]) while holding
//! `H` records `H → watch`; every send (`send`, `send_modify`,
//! `send_if_modified`, `send_replace`) records `watch → L` for every lock
//! `L` the sending context waited for since its section began (see
//! `crate::oneshot`). A config watcher that holds `config` while awaiting a
//! change, against a publisher that locks `config` before it sends, is the
//! cycle `config → watch → config`. Reading (`borrow`) records nothing.

use std::fmt;
use std::future::Future;
use std::panic::Location;

pub use tokio::sync::watch::{error, Ref};

use crate::lockdep::class::ClassKind;
use crate::lockdep::hooks::{wait_polled, Event};

/// A watch channel holding `init`, as `tokio::sync::watch::channel`; its
/// class is the caller's source location.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, mut rx) = async_lockdep::sync::watch::channel(1);
/// tx.send(2).unwrap();
/// rx.changed().await.unwrap();
/// assert_eq!(*rx.borrow(), 2);
/// # }
/// ```
#[track_caller]
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let event = Event::new(
        ClassKind::Watch,
        Some(std::any::type_name::<T>()),
        None,
        Location::caller(),
    );
    let (tx, rx) = tokio::sync::watch::channel(init);
    (Sender { inner: tx, event }, Receiver { inner: rx, event })
}

/// A watch channel whose class is `name`. See [`channel`].
#[track_caller]
pub fn channel_with_class<T>(
    name: impl Into<std::borrow::Cow<'static, str>>,
    init: T,
) -> (Sender<T>, Receiver<T>) {
    let event = Event::new(
        ClassKind::Watch,
        Some(std::any::type_name::<T>()),
        Some(name.into()),
        Location::caller(),
    );
    let (tx, rx) = tokio::sync::watch::channel(init);
    (Sender { inner: tx, event }, Receiver { inner: rx, event })
}

/// Sends values to a watch channel, as `tokio::sync::watch::Sender`.
pub struct Sender<T> {
    inner: tokio::sync::watch::Sender<T>,
    event: Event,
}

/// Receives values of a watch channel, as `tokio::sync::watch::Receiver`.
pub struct Receiver<T> {
    inner: tokio::sync::watch::Receiver<T>,
    event: Event,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
            event: self.event,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            inner: self.inner.clone(),
            event: self.event,
        }
    }
}

impl<T: Default> Default for Sender<T> {
    #[track_caller]
    fn default() -> Self {
        Sender::new(T::default())
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
    /// A sender with no receiver yet, holding `init` (receivers come from
    /// [`Sender::subscribe`]); its class is the caller's source location.
    #[track_caller]
    pub fn new(init: T) -> Self {
        let event = Event::new(
            ClassKind::Watch,
            Some(std::any::type_name::<T>()),
            None,
            Location::caller(),
        );
        Sender {
            inner: tokio::sync::watch::Sender::new(init),
            event,
        }
    }

    /// Sends a new value, as tokio's; signals the change.
    ///
    /// # Errors
    ///
    /// If every receiver is gone, with the value back.
    #[track_caller]
    pub fn send(&self, value: T) -> Result<(), error::SendError<T>> {
        self.event.signal(Location::caller());
        self.inner.send(value)
    }

    /// Modifies the value in place and notifies the receivers; signals.
    #[track_caller]
    pub fn send_modify<F: FnOnce(&mut T)>(&self, modify: F) {
        self.event.signal(Location::caller());
        self.inner.send_modify(modify)
    }

    /// Modifies the value in place, notifying the receivers if `modify`
    /// returns true; signals then.
    #[track_caller]
    pub fn send_if_modified<F: FnOnce(&mut T) -> bool>(&self, modify: F) -> bool {
        let modified = self.inner.send_if_modified(modify);
        if modified {
            self.event.signal(Location::caller());
        }
        modified
    }

    /// Replaces the value, notifying the receivers, and returns the old one;
    /// signals.
    #[track_caller]
    pub fn send_replace(&self, value: T) -> T {
        self.event.signal(Location::caller());
        self.inner.send_replace(value)
    }

    /// The current value; records nothing.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.inner.borrow()
    }

    /// Whether every receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Completes when every receiver is gone. Records nothing.
    pub fn closed(&self) -> impl Future<Output = ()> + '_ {
        self.inner.closed()
    }

    /// A new receiver of this channel.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            inner: self.inner.subscribe(),
            event: self.event,
        }
    }

    /// The number of receivers.
    pub fn receiver_count(&self) -> usize {
        self.inner.receiver_count()
    }

    /// The number of senders.
    pub fn sender_count(&self) -> usize {
        self.inner.sender_count()
    }

    /// Whether both senders send to one channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.inner.same_channel(&other.inner)
    }
}

impl<T> Receiver<T> {
    /// The current value; records nothing.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.inner.borrow()
    }

    /// The current value, marked as seen; records nothing.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        self.inner.borrow_and_update()
    }

    /// Whether the value changed since it was last seen.
    ///
    /// # Errors
    ///
    /// If the sender is gone.
    pub fn has_changed(&self) -> Result<bool, error::RecvError> {
        self.inner.has_changed()
    }

    /// Whether the sender is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Marks the value as changed.
    pub fn mark_changed(&mut self) {
        self.inner.mark_changed()
    }

    /// Marks the value as seen.
    pub fn mark_unchanged(&mut self) {
        self.inner.mark_unchanged()
    }

    /// Waits for a change. Awaiting it while holding `H` records
    /// `H → watch` (at the first poll, at this line).
    ///
    /// # Errors
    ///
    /// If the sender is gone.
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    #[track_caller]
    pub fn changed(&mut self) -> impl Future<Output = Result<(), error::RecvError>> + '_ {
        let want = self.event.want_at(Location::caller());
        async move {
            let mut changed = std::pin::pin!(self.inner.changed());
            wait_polled(want, |cx| changed.as_mut().poll(cx)).await
        }
    }

    /// Waits for a value that satisfies `f`. Records as
    /// [`Receiver::changed`].
    ///
    /// # Errors
    ///
    /// If the sender is gone.
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    #[track_caller]
    pub fn wait_for<'a>(
        &'a mut self,
        f: impl FnMut(&T) -> bool + 'a,
    ) -> impl Future<Output = Result<Ref<'a, T>, error::RecvError>> + 'a {
        let want = self.event.want_at(Location::caller());
        async move {
            let mut waiting = std::pin::pin!(self.inner.wait_for(f));
            wait_polled(want, |cx| waiting.as_mut().poll(cx)).await
        }
    }

    /// Whether both receivers receive from one channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.inner.same_channel(&other.inner)
    }
}
