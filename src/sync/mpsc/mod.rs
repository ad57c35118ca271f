//! `mpsc`: tokio's bounded channel, modelled as an executor.
//!
//! The code a receiving context runs between two `recv` calls holds the
//! channel's pseudo-lock (its class: the channel's creation site, or a
//! name), so the locks it takes, and the sends it makes into other bounded
//! channels, record "channel → L". A `send` or `reserve` on a bounded channel
//! made while holding `H` records "H → channel": the channel can be full,
//! and then the sender waits for the receiver. This finds a lock held across
//! a send whose consumer needs that lock, and two services each sending into
//! the other's full inbox. An unbounded send never waits and records
//! nothing; the unbounded receiver only begins a new section of its context
//! for each value it delivers (see `crate::oneshot`).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
#[cfg(feature = "detect")]
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

pub use tokio::sync::mpsc::error;

mod unbounded;
pub use unbounded::{unbounded_channel, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};

use self::error::{SendError, TryRecvError, TrySendError};
use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{wait_polled, FirstPollWait, Holding, LockMeta};
use crate::lockdep::Acquire;
use crate::sync::Held;
use crate::vocab::Access;

/// A channel's identity, shared by its halves. Without the `detect` feature
/// it is empty, and the halves are tokio's with nothing to clone.
#[cfg(feature = "detect")]
type SharedMeta = Arc<ChannelMeta>;
#[cfg(not(feature = "detect"))]
type SharedMeta = ChannelMeta;

/// A channel's pseudo-lock (its receiving section and full sends) and the
/// class of its messages (what `recv` waits for, what a send signals),
/// found at first use.
#[cfg(feature = "detect")]
pub(super) struct ChannelMeta {
    lock: LockMeta,
    messages: std::sync::OnceLock<crate::vocab::ClassId>,
}

#[cfg(not(feature = "detect"))]
#[derive(Clone, Copy)]
pub(super) struct ChannelMeta {
    lock: LockMeta,
}

impl std::ops::Deref for ChannelMeta {
    type Target = LockMeta;

    fn deref(&self) -> &LockMeta {
        &self.lock
    }
}

impl ChannelMeta {
    fn new(lock: LockMeta) -> ChannelMeta {
        ChannelMeta {
            lock,
            #[cfg(feature = "detect")]
            messages: std::sync::OnceLock::new(),
        }
    }

    /// Waiting for (or signalling) this channel's messages at `site`.
    fn messages(&self, access: Access, site: &'static Location<'static>) -> Acquire {
        let want = self.lock.want(access, site);
        #[cfg(feature = "detect")]
        let class = *self
            .messages
            .get_or_init(|| class::messages_of(want.lock.class));
        #[cfg(not(feature = "detect"))]
        let class = want.lock.class;
        Acquire {
            lock: crate::vocab::LockRef {
                class,
                instance: want.lock.instance,
            },
            ..want
        }
    }

    /// The calling context sends a message at `site`: it signals the
    /// channel's messages.
    fn signal(&self, site: &'static Location<'static>) {
        if let Some(engine) = crate::lockdep::engine() {
            let want = self.messages(Access::Signal, site);
            let channel = self.lock.lock_ref().class;
            engine.signal(want.lock, want.created, site.into(), false, Some(channel));
        }
    }
}

/// A bounded channel of capacity `buffer`, as `tokio::sync::mpsc::channel`,
/// whose class is the caller's source location.
///
/// # Panics
///
/// If `buffer` is 0, as tokio's.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (tx, mut rx) = async_lockdep::mpsc::channel::<u32>(8);
/// tx.send(1).await.unwrap();
/// assert_eq!(rx.recv().await, Some(1));
/// # }
/// ```
#[track_caller]
pub fn channel<T>(buffer: usize) -> (Sender<T>, Receiver<T>) {
    let class = class::for_site_typed(
        Location::caller(),
        ClassKind::Channel,
        Some(std::any::type_name::<T>()),
    );
    with_class_id(class, buffer)
}

/// A bounded channel whose class is `name` (every channel named alike shares
/// it). See [`channel`].
///
/// # Panics
///
/// If `buffer` is 0, as tokio's.
#[track_caller]
pub fn channel_with_class<T>(
    name: impl Into<Cow<'static, str>>,
    buffer: usize,
) -> (Sender<T>, Receiver<T>) {
    let class = class::named(name, ClassKind::Channel, Location::caller());
    with_class_id(class, buffer)
}

#[track_caller]
fn with_class_id<T>(class: crate::vocab::ClassId, buffer: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(buffer);
    let meta = SharedMeta::from(ChannelMeta::new(LockMeta::new(class)));
    (
        Sender {
            inner: tx,
            meta: SharedMeta::clone(&meta),
        },
        Receiver {
            inner: rx,
            meta,
            section: Held::new(None),
            drain: Drain::new(),
        },
    )
}

/// The hold of a reserved slot of a channel of `capacity`: held (as
/// [`Access::Send`]) by the context that reserved it until it is used or
/// given back, when it is the channel's whole capacity (1). Every send into
/// the channel then waits for it. In a larger channel one slot blocks
/// nobody while the receiver drains: not held (a slot taken, then a lock,
/// beside a sender holding that lock, is tokio's advice, not a hazard).
fn slot(
    meta: &ChannelMeta,
    capacity: usize,
    site: &'static Location<'static>,
    movable: bool,
) -> Held {
    if capacity != 1 {
        return Held::new(None);
    }
    Held::new(crate::lockdep::engine().map(|engine| {
        let want = meta.want(Access::Send, site);
        Holding::try_acquired(engine, if movable { want.movable() } else { want })
    }))
}

/// Room for one value reserved in a bounded channel, as
/// `tokio::sync::mpsc::Permit`. While it lives, in a channel of capacity 1,
/// the context that reserved it holds the channel's whole capacity: every
/// send into it waits for this slot.
pub struct Permit<'a, T> {
    inner: tokio::sync::mpsc::Permit<'a, T>,
    meta: &'a ChannelMeta,
    held: Held,
}

impl<T> Permit<'_, T> {
    /// Sends `value` in the reserved room, without waiting; signals the
    /// channel's messages.
    #[track_caller]
    pub fn send(self, value: T) {
        self.meta.signal(Location::caller());
        let Permit {
            inner, held: _slot, ..
        } = self;
        inner.send(value); // the slot is released after it, at the end
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Room for several values reserved in a bounded channel, as
/// `tokio::sync::mpsc::PermitIterator`: yields one [`Permit`] per value.
/// The room not yet taken is held as one slot while the iterator lives.
pub struct PermitIterator<'a, T> {
    inner: tokio::sync::mpsc::PermitIterator<'a, T>,
    meta: &'a ChannelMeta,
    site: &'static Location<'static>,
    /// The channel's capacity (see `slot`).
    capacity: usize,
    held: Held,
}

impl<'a, T> Iterator for PermitIterator<'a, T> {
    type Item = Permit<'a, T>;

    fn next(&mut self) -> Option<Permit<'a, T>> {
        let inner = self.inner.next()?;
        let held = slot(self.meta, self.capacity, self.site, false);
        if self.inner.len() == 0 {
            self.held = Held::new(None);
        }
        Some(Permit {
            inner,
            meta: self.meta,
            held,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T> ExactSizeIterator for PermitIterator<'_, T> {}
impl<T> std::iter::FusedIterator for PermitIterator<'_, T> {}

impl<T> fmt::Debug for PermitIterator<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Room for one value reserved in a bounded channel, owning its sender, as
/// `tokio::sync::mpsc::OwnedPermit`: `send` and `release` give back this
/// crate's [`Sender`]. Held as [`Permit`] is, and may move to another task.
pub struct OwnedPermit<T> {
    inner: tokio::sync::mpsc::OwnedPermit<T>,
    meta: SharedMeta,
    held: Held,
}

impl<T> OwnedPermit<T> {
    /// Sends `value` in the reserved room; signals the channel's messages.
    /// Gives the sender back.
    #[track_caller]
    pub fn send(self, value: T) -> Sender<T> {
        self.meta.signal(Location::caller());
        let OwnedPermit {
            inner,
            meta,
            held: _slot,
        } = self;
        Sender {
            inner: inner.send(value),
            meta,
        }
    }

    /// Gives the reserved room back, and the sender.
    pub fn release(self) -> Sender<T> {
        let OwnedPermit {
            inner,
            meta,
            held: _slot,
        } = self;
        Sender {
            inner: inner.release(),
            meta,
        }
    }

    /// Whether both permits are for one channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.inner.same_channel(&other.inner)
    }

    /// Whether this permit and `sender` are for one channel.
    pub fn same_channel_as_sender(&self, sender: &Sender<T>) -> bool {
        self.inner.same_channel_as_sender(&sender.inner)
    }
}

impl<T> fmt::Debug for OwnedPermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// The sending half of a bounded channel, as `tokio::sync::mpsc::Sender`.
pub struct Sender<T> {
    inner: tokio::sync::mpsc::Sender<T>,
    meta: SharedMeta,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
            meta: SharedMeta::clone(&self.meta),
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.inner.capacity())
            .field("max_capacity", &self.inner.max_capacity())
            .finish()
    }
}

/// A wait for room in a channel: "held → channel" is recorded at the first
/// poll whether or not it waits; the wait itself (for the deadlock-now
/// check) only if it does.
#[pin_project]
struct SendWait<F> {
    #[pin]
    inner: F,
    want: Option<Acquire>,
    wait: FirstPollWait,
}

impl<F: Future> Future for SendWait<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match *this.want {
            Some(want) => this.wait.poll(|| want, || this.inner.poll(cx)),
            None => this.inner.poll(cx),
        }
    }
}

impl<T> Sender<T> {
    fn wait<F: Future>(&self, site: &'static Location<'static>, inner: F) -> SendWait<F> {
        self.meta.signal(site);
        let want = crate::lockdep::engine().map(|_| self.meta.want(Access::Send, site));
        SendWait {
            inner,
            want,
            wait: FirstPollWait::default(),
        }
    }

    /// Sends `value`, waiting for room if the channel is full. Records
    /// "channel waited for while holding `H`" for every held `H`, full or
    /// not.
    ///
    /// # Errors
    ///
    /// If the receiver is gone, with the value back.
    ///
    /// # Cancel safety
    ///
    /// As tokio's: dropping the future loses the place in the queue, and the
    /// value.
    #[track_caller]
    pub fn send(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + '_ {
        self.wait(Location::caller(), self.inner.send(value))
    }

    /// Sends `value` if there is room now. It cannot wait, so it records no
    /// wait for room; sent, it signals the channel's messages (as every send).
    ///
    /// # Errors
    ///
    /// `Full` or `Closed`, with the value back.
    #[track_caller]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let sent = self.inner.try_send(value);
        if sent.is_ok() {
            self.meta.signal(Location::caller());
        }
        sent
    }

    /// Sends `value`, waiting at most `timeout` for room. Records no wait
    /// for room: a wait that gives up by itself cannot deadlock (holding a
    /// lock across it can only delay). It signals the channel's messages.
    ///
    /// # Errors
    ///
    /// `Timeout` or `Closed`, with the value back.
    #[track_caller]
    pub fn send_timeout(
        &self,
        value: T,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<(), error::SendTimeoutError<T>>> + '_ {
        self.meta.signal(Location::caller());
        self.inner.send_timeout(value, timeout)
    }

    /// Sends from synchronous code, blocking the thread while the channel is
    /// full. Records as [`Sender::send`].
    ///
    /// # Errors
    ///
    /// If the receiver is gone, with the value back.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        self.meta.signal(Location::caller());
        if let Some(engine) = crate::lockdep::engine() {
            engine.record_wait_dependencies(self.meta.want(Access::Send, Location::caller()));
        }
        self.inner.blocking_send(value)
    }

    /// Waits for room for one value and reserves it. Records as
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// If the receiver is gone.
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    #[track_caller]
    pub fn reserve(&self) -> impl Future<Output = Result<Permit<'_, T>, SendError<()>>> + '_ {
        let site = Location::caller();
        let wait = self.wait(site, self.inner.reserve());
        async move {
            let inner = wait.await?;
            Ok(Permit {
                inner,
                meta: &self.meta,
                held: slot(&self.meta, self.inner.max_capacity(), site, false),
            })
        }
    }

    /// Waits for room for `n` values and reserves it. Records as
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// If the receiver is gone, or `n` is more than the capacity.
    #[track_caller]
    pub fn reserve_many(
        &self,
        n: usize,
    ) -> impl Future<Output = Result<PermitIterator<'_, T>, SendError<()>>> + '_ {
        let site = Location::caller();
        let wait = self.wait(site, self.inner.reserve_many(n));
        async move {
            let inner = wait.await?;
            Ok(self.permits(inner, site))
        }
    }

    /// Our iterator over `inner`, holding its room as one slot.
    fn permits<'a>(
        &'a self,
        inner: tokio::sync::mpsc::PermitIterator<'a, T>,
        site: &'static Location<'static>,
    ) -> PermitIterator<'a, T> {
        let capacity = self.inner.max_capacity();
        let held = if inner.len() > 0 {
            slot(&self.meta, capacity, site, false)
        } else {
            Held::new(None)
        };
        PermitIterator {
            inner,
            meta: &self.meta,
            site,
            capacity,
            held,
        }
    }

    /// [`Sender::reserve`] with an owned permit (which gives back tokio's
    /// sender on `release`).
    ///
    /// # Errors
    ///
    /// If the receiver is gone.
    #[track_caller]
    pub fn reserve_owned(self) -> impl Future<Output = Result<OwnedPermit<T>, SendError<()>>> {
        let site = Location::caller();
        self.meta.signal(site);
        let want = crate::lockdep::engine().map(|_| self.meta.want(Access::Send, site));
        let meta = SharedMeta::clone(&self.meta);
        let capacity = self.inner.max_capacity();
        let wait = SendWait {
            inner: self.inner.reserve_owned(),
            want,
            wait: FirstPollWait::default(),
        };
        async move {
            let inner = wait.await?;
            let held = slot(&meta, capacity, site, true);
            Ok(OwnedPermit { inner, meta, held })
        }
    }

    /// Reserves room for one value if there is some now. It cannot wait, so
    /// it records no wait; the slot is held as [`Sender::reserve`]'s.
    ///
    /// # Errors
    ///
    /// `Full` or `Closed`.
    #[track_caller]
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        let inner = self.inner.try_reserve()?;
        Ok(Permit {
            inner,
            meta: &self.meta,
            held: slot(
                &self.meta,
                self.inner.max_capacity(),
                Location::caller(),
                false,
            ),
        })
    }

    /// Reserves room for `n` values if there is room now. It cannot wait, so
    /// it records no wait; the room is held as [`Sender::reserve_many`]'s.
    ///
    /// # Errors
    ///
    /// `Full` (also when `n` is more than the capacity) or `Closed`.
    #[track_caller]
    pub fn try_reserve_many(&self, n: usize) -> Result<PermitIterator<'_, T>, TrySendError<()>> {
        let inner = self.inner.try_reserve_many(n)?;
        Ok(self.permits(inner, Location::caller()))
    }

    /// [`Sender::try_reserve`] with an owned permit, held as
    /// [`Sender::reserve_owned`]'s.
    ///
    /// # Errors
    ///
    /// `Full` or `Closed`, with the sender back.
    #[track_caller]
    pub fn try_reserve_owned(self) -> Result<OwnedPermit<T>, TrySendError<Self>> {
        let meta = self.meta;
        let capacity = self.inner.max_capacity();
        match self.inner.try_reserve_owned() {
            Ok(inner) => {
                let held = slot(&meta, capacity, Location::caller(), true);
                Ok(OwnedPermit { inner, meta, held })
            }
            Err(TrySendError::Full(inner)) => Err(TrySendError::Full(Sender { inner, meta })),
            Err(TrySendError::Closed(inner)) => Err(TrySendError::Closed(Sender { inner, meta })),
        }
    }

    /// Completes when the receiver is dropped or closed.
    pub async fn closed(&self) {
        self.inner.closed().await;
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The room left now.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The channel's capacity.
    pub fn max_capacity(&self) -> usize {
        self.inner.max_capacity()
    }

    /// Whether `other` sends into the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        self.inner.same_channel(&other.inner)
    }

    /// A sender that does not keep the channel open.
    pub fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            inner: self.inner.downgrade(),
            meta: SharedMeta::clone(&self.meta),
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

/// A sender that does not keep the channel open, as tokio's `WeakSender`.
pub struct WeakSender<T> {
    inner: tokio::sync::mpsc::WeakSender<T>,
    meta: SharedMeta,
}

impl<T> Clone for WeakSender<T> {
    fn clone(&self) -> Self {
        WeakSender {
            inner: self.inner.clone(),
            meta: SharedMeta::clone(&self.meta),
        }
    }
}

impl<T> fmt::Debug for WeakSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSender").finish_non_exhaustive()
    }
}

impl<T> WeakSender<T> {
    /// A sender, if the channel is still open.
    pub fn upgrade(&self) -> Option<Sender<T>> {
        self.inner.upgrade().map(|inner| Sender {
            inner,
            meta: SharedMeta::clone(&self.meta),
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

/// The receiving half of a bounded channel, as `tokio::sync::mpsc::Receiver`.
///
/// Between two `recv` calls (and after the last one, until the receiver is
/// closed or dropped), the context that received holds the channel's
/// pseudo-lock: locks it takes and bounded sends it makes record
/// "channel → L".
pub struct Receiver<T> {
    inner: tokio::sync::mpsc::Receiver<T>,
    meta: SharedMeta,
    /// The receiving section in progress: the pseudo-lock, held.
    section: Held,
    /// Which context drains it, and when it was made.
    drain: Drain,
}

/// Who drains a receiver: the context of its last `recv`, and the one that
/// made it. The first `recv` of a context that did not make the receiver
/// records the waits it made while owning it without draining it (see
/// `Engine::first_drain`).
#[cfg(feature = "detect")]
struct Drain {
    made: Option<crate::vocab::ContextId>,
    by: Option<crate::vocab::ContextId>,
}

#[cfg(feature = "detect")]
impl Drain {
    fn new() -> Drain {
        let made = crate::lockdep::engine().map(|_| crate::vocab::ContextId::current());
        Drain { made, by: made }
    }
}

/// Who drains a receiver: nothing kept, compiled out.
#[cfg(not(feature = "detect"))]
struct Drain;

#[cfg(not(feature = "detect"))]
impl Drain {
    fn new() -> Drain {
        Drain
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.inner.len())
            .finish_non_exhaustive()
    }
}

/// A receiver with a receiving section (bounded or unbounded): the
/// channel's pseudo-lock, held by the context between two `recv` calls.
trait Sections {
    /// Ends the receiving section in progress, if any.
    fn end_section(&mut self);

    /// Holds the channel's pseudo-lock (the receiving section) from `site`.
    fn hold_section(&mut self, site: &'static Location<'static>);

    /// A value was delivered at `site`: a new section begins. What the
    /// context signals from now on (a reply to the message received)
    /// depends only on what it waits for from now on.
    fn received(&mut self, site: &'static Location<'static>) {
        self.end_section();
        if let Some(engine) = crate::lockdep::engine() {
            engine.begin_section();
        }
        self.hold_section(site);
    }
}

/// A `recv` in progress, its section ended by the caller: the task is parked
/// in the channel (it is draining it). The section comes back if the `recv`
/// is dropped without a value (a `select!` branch that lost, a timeout): the
/// task runs other code then, not draining.
struct Receiving<'a, R: Sections> {
    receiver: &'a mut R,
    site: &'static Location<'static>,
    /// The section to restore if no value comes.
    restore: bool,
}

impl<'a, R: Sections> Receiving<'a, R> {
    fn new(receiver: &'a mut R, site: &'static Location<'static>) -> Self {
        Receiving {
            receiver,
            site,
            restore: true,
        }
    }

    fn delivered(&mut self) {
        self.restore = false;
        self.receiver.received(self.site);
    }
}

impl<R: Sections> Drop for Receiving<'_, R> {
    fn drop(&mut self) {
        if self.restore {
            self.receiver.hold_section(self.site);
        }
    }
}

impl<T> Sections for Receiver<T> {
    fn end_section(&mut self) {
        self.section = Held::new(None);
    }

    /// A thread (a test body, a `block_on`) draining a channel it made
    /// itself drives whatever sends into it, in lockstep: its sends into
    /// bounded channels are not waits of this section.
    fn hold_section(&mut self, site: &'static Location<'static>) {
        let Some(engine) = crate::lockdep::engine() else {
            return;
        };
        let holding = Holding::try_acquired(engine, self.meta.want(Access::Receive, site));
        #[cfg(feature = "detect")]
        if let Some(made @ crate::vocab::ContextId::Thread(_)) = self.drain.made {
            if crate::vocab::ContextId::current() == made {
                holding.drives();
            }
        }
        self.section = Held::new(Some(holding));
    }
}

impl<T> Receiver<T> {
    /// Receives the next value, waiting for one. Ends the receiving section
    /// of the previous value first.
    ///
    /// # Cancel safety
    ///
    /// As tokio's: no value is lost if the future is dropped.
    #[track_caller]
    pub fn recv(&mut self) -> impl Future<Output = Option<T>> + '_ {
        let site = Location::caller();
        let want = crate::lockdep::engine().map(|_| self.meta.messages(Access::Event, site));
        self.start_draining(site);
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

    /// A `recv` at `site` begins: ends the receiving section of the
    /// previous value (see [`Receiving`]). The first one of a context
    /// records the waits it made while owning the receiver, not draining it.
    fn start_draining(&mut self, site: &'static Location<'static>) {
        let had = self.section.holds();
        self.end_section();
        #[cfg(feature = "detect")]
        if let Some(engine) = crate::lockdep::engine() {
            let context = crate::vocab::ContextId::current();
            if self.drain.by != Some(context) {
                self.drain.by = Some(context);
                if !had && self.drain.made != Some(context) {
                    engine.first_drain(self.meta.want(Access::Receive, site));
                }
            }
        }
        #[cfg(not(feature = "detect"))]
        let _ = (had, site);
    }

    /// Receives up to `limit` values into `buffer`, waiting for at least one;
    /// counts as a `recv`. Returns how many were received (0 once closed).
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
        self.start_draining(site);
        let want = crate::lockdep::engine().map(|_| self.meta.messages(Access::Event, site));
        async move {
            let inner = &mut self.inner;
            let n = wait_polled(want, |cx| inner.poll_recv_many(cx, buffer, limit)).await;
            if n > 0 {
                self.received(site);
            }
            n
        }
    }

    /// Receives a value if one is there now; counts as a `recv`.
    ///
    /// # Errors
    ///
    /// `Empty` or `Disconnected`.
    #[track_caller]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let site = Location::caller();
        self.start_draining(site);
        let value = self.inner.try_recv()?;
        self.received(site);
        Ok(value)
    }

    /// Receives from synchronous code, blocking the thread; counts as a
    /// `recv`.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_recv(&mut self) -> Option<T> {
        let site = Location::caller();
        self.start_draining(site);
        if let Some(engine) = crate::lockdep::engine() {
            engine.record_wait_dependencies(self.meta.messages(Access::Event, site).blocking());
        }
        let value = self.inner.blocking_recv();
        if value.is_some() {
            self.received(site);
        }
        value
    }

    /// Polls for the next value, as tokio's `poll_recv`; counts as a `recv`.
    #[track_caller]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let site = Location::caller();
        self.start_draining(site);
        let polled = self.inner.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.received(site);
        }
        polled
    }

    /// Closes the channel: senders fail from now on, buffered values can
    /// still be received. Ends the receiving section.
    pub fn close(&mut self) {
        self.end_section();
        self.inner.close();
    }

    /// Whether the channel is closed (by `close`, or all senders gone).
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

    /// The room left now.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The channel's capacity.
    pub fn max_capacity(&self) -> usize {
        self.inner.max_capacity()
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
