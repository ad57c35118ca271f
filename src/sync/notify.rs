//! `Notify`: tokio's notification, whose notifications are *events*.
//!
//! Awaiting [`Notify::notified`] while holding `H` records `H → notify` (the
//! class: where the `Notify` was created, or a name); `notify_one`,
//! `notify_last` and `notify_waiters` record `notify → L` for every lock
//! `L` the notifying context waited for since its section began (see
//! `crate::oneshot`).

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{FirstPollWait, LockMeta};
use crate::vocab::Access;

/// Notifies one task or all waiting tasks, as `tokio::sync::Notify`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// let notify = Arc::new(async_lockdep::sync::Notify::new());
/// let n = notify.clone();
/// tokio::spawn(async move { n.notify_one() });
/// notify.notified().await;
/// # }
/// ```
pub struct Notify {
    meta: LockMeta,
    inner: tokio::sync::Notify,
}

/// The future of [`Notify::notified`], as `tokio::sync::futures::Notified`.
#[pin_project]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Notified<'a> {
    #[pin]
    inner: tokio::sync::futures::Notified<'a>,
    meta: &'a LockMeta,
    wait: FirstPollWait,
}

impl Notify {
    /// A new `Notify` whose class is the caller's source location.
    #[track_caller]
    pub fn new() -> Notify {
        let class = class::for_site(Location::caller(), ClassKind::Notify);
        Notify {
            meta: LockMeta::new(class),
            inner: tokio::sync::Notify::new(),
        }
    }

    /// A new `Notify` usable in a `static`; its class is the caller's
    /// source location, fixed at first use.
    #[track_caller]
    pub const fn const_new() -> Notify {
        Notify {
            meta: LockMeta::lazy(Location::caller(), ClassKind::Notify, || "Notify"),
            inner: tokio::sync::Notify::const_new(),
        }
    }

    /// A new `Notify` of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>) -> Notify {
        let class = class::named(name, ClassKind::Notify, Location::caller());
        Notify {
            meta: LockMeta::new(class),
            inner: tokio::sync::Notify::new(),
        }
    }

    /// Waits for a notification. Awaiting it while holding `H` records
    /// `H → notify` (at the first poll; the line of the `.await` is not
    /// known: reports show where the `Notify` was made).
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    #[inline]
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            inner: self.inner.notified(),
            meta: &self.meta,
            wait: FirstPollWait::default(),
        }
    }

    /// [`Notify::notified`] holding the `Notify` by its `Arc`, as tokio's.
    ///
    /// # Cancel safety
    ///
    /// As tokio's.
    pub fn notified_owned(self: Arc<Self>) -> OwnedNotified {
        let notified: Notified<'_> = self.notified();
        // SAFETY: `notified` borrows the `Notify` inside the `Arc`'s
        // allocation, which does not move and which `OwnedNotified` keeps
        // alive in its `notify` field; that field is declared after
        // `notified`, so it is dropped after it, and the `'static` lifetime
        // never leaves `OwnedNotified`.
        let notified: Notified<'static> = unsafe { std::mem::transmute(notified) };
        OwnedNotified {
            notified: Box::pin(notified),
            _notify: self,
        }
    }

    /// Notifies one waiting task, or stores a permit. Records
    /// `notify → L` for the calling context's waits since its section began.
    #[track_caller]
    #[inline]
    pub fn notify_one(&self) {
        self.signal(Location::caller());
        self.inner.notify_one()
    }

    /// As [`Notify::notify_one`], waking the most recent waiter.
    #[track_caller]
    pub fn notify_last(&self) {
        self.signal(Location::caller());
        self.inner.notify_last()
    }

    /// Notifies every task waiting now. Records as [`Notify::notify_one`].
    #[track_caller]
    pub fn notify_waiters(&self) {
        self.signal(Location::caller());
        self.inner.notify_waiters()
    }

    #[inline]
    fn signal(&self, site: &'static Location<'static>) {
        if let Some(engine) = self.meta.engine() {
            let want = self.meta.want(Access::Signal, site);
            engine.signal(want.lock, want.created, site, false, None);
        }
    }
}

impl Default for Notify {
    #[track_caller]
    fn default() -> Notify {
        Notify::new()
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// The future of [`Notify::notified_owned`], as
/// `tokio::sync::futures::OwnedNotified`.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct OwnedNotified {
    /// Borrows from `_notify` (see `Notify::notified_owned`): dropped first.
    notified: Pin<Box<Notified<'static>>>,
    _notify: Arc<Notify>,
}

impl OwnedNotified {
    /// Registers as a waiter without waiting, as tokio's.
    pub fn enable(mut self: Pin<&mut Self>) -> bool {
        self.notified.as_mut().enable()
    }
}

impl Future for OwnedNotified {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.notified.as_mut().poll(cx)
    }
}

impl fmt::Debug for OwnedNotified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedNotified").finish_non_exhaustive()
    }
}

impl Notified<'_> {
    /// Registers as a waiter without waiting, as tokio's.
    pub fn enable(self: Pin<&mut Self>) -> bool {
        self.project().inner.enable()
    }
}

impl Future for Notified<'_> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let meta = *this.meta;
        let inner = this.inner;
        match meta.engine() {
            Some(_) => this.wait.poll(
                || {
                    let want = meta.want(Access::Event, Location::caller());
                    crate::lockdep::Acquire {
                        site: want.created,
                        ..want
                    }
                },
                || inner.poll(cx),
            ),
            None => inner.poll(cx),
        }
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
