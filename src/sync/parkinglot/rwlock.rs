//! `RwLock`: `parking_lot::RwLock` that tells the detector what it does.

use std::fmt;
use std::panic::Location;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::LockMeta;
use crate::sync::blocking::{take_or_wait, taken};
use crate::sync::Held;
use crate::vocab::Access;

/// A reader-writer lock that blocks the thread, a drop-in for
/// [`parking_lot::RwLock`] whose acquisitions join the async locks' graph.
///
/// parking_lot's lock is fair: [`RwLock::read`] waits behind a queued
/// writer, so it is recorded as tokio's reads are (a read waiting on a read
/// deadlocks once a writer queues). [`RwLock::read_recursive`] does not
/// wait behind queued writers, only for a writer that holds the lock: it is
/// recorded as held, with no dependency into the lock (as `try_read`), so
/// it never closes a cycle; one that waits for a writer is not seen.
///
/// # Examples
///
/// ```
/// use async_lockdep::parkinglot::RwLock;
///
/// let config = RwLock::new(1);
/// assert_eq!(*config.read(), 1);
/// *config.write() = 2;
/// ```
// Without the `detect` feature `meta` is empty and the lock is parking_lot's.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct RwLock<T: ?Sized> {
    meta: LockMeta,
    inner: parking_lot::RwLock<T>,
}

/// A shared hold of an [`RwLock`], released when dropped.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: parking_lot::RwLockReadGuard<'a, T>,
}

/// An exclusive hold of an [`RwLock`], released when dropped.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: parking_lot::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock whose class is the caller's source location,
    /// `const` as parking_lot's: the class is interned at first use.
    #[track_caller]
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::ParkingLotRwLock,
                std::any::type_name::<RwLock<T>>,
            ),
            inner: parking_lot::RwLock::new(value),
        }
    }

    /// A new unlocked lock of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> RwLock<T> {
        let class = class::named(name, ClassKind::ParkingLotRwLock, Location::caller());
        RwLock {
            meta: LockMeta::new(class),
            inner: parking_lot::RwLock::new(value),
        }
    }

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, blocking the thread (behind a queued writer too);
    /// the dependencies are recorded before blocking.
    #[track_caller]
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        if self.meta.engine().is_none() {
            // Detection off: parking_lot's call alone, small enough to be
            // inlined.
            return RwLockReadGuard {
                _held: Held::new(None),
                inner: self.inner.read(),
            };
        }
        self.read_recorded(Location::caller())
    }

    /// [`Self::read`] with detection on.
    #[inline(never)]
    fn read_recorded(&self, site: &'static Location<'static>) -> RwLockReadGuard<'_, T> {
        let (inner, held) = take_or_wait(
            &self.meta,
            Access::Read,
            site,
            || self.inner.try_read(),
            || self.inner.read(),
        );
        RwLockReadGuard { _held: held, inner }
    }

    /// Locks for reading even if a writer is queued, as parking_lot's: it
    /// waits only while a writer holds the lock. Safe to nest in a read of
    /// the same lock; recorded as held, with no dependency into the lock.
    #[track_caller]
    pub fn read_recursive(&self) -> RwLockReadGuard<'_, T> {
        let site = Location::caller();
        let inner = self.inner.read_recursive();
        RwLockReadGuard {
            _held: taken(&self.meta, Access::Read, site),
            inner,
        }
    }

    /// Locks for writing, blocking the thread; the dependencies are
    /// recorded before blocking.
    #[track_caller]
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        if self.meta.engine().is_none() {
            // Detection off: parking_lot's call alone, small enough to be
            // inlined.
            return RwLockWriteGuard {
                _held: Held::new(None),
                inner: self.inner.write(),
            };
        }
        self.write_recorded(Location::caller())
    }

    /// [`Self::write`] with detection on.
    #[inline(never)]
    fn write_recorded(&self, site: &'static Location<'static>) -> RwLockWriteGuard<'_, T> {
        let (inner, held) = take_or_wait(
            &self.meta,
            Access::Write,
            site,
            || self.inner.try_write(),
            || self.inner.write(),
        );
        RwLockWriteGuard { _held: held, inner }
    }

    /// Reads if possible without blocking; records no dependency.
    #[track_caller]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let site = Location::caller();
        let inner = self.inner.try_read()?;
        Some(RwLockReadGuard {
            _held: taken(&self.meta, Access::Read, site),
            inner,
        })
    }

    /// Writes if possible without blocking; records no dependency.
    #[track_caller]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let site = Location::caller();
        let inner = self.inner.try_write()?;
        Some(RwLockWriteGuard {
            _held: taken(&self.meta, Access::Write, site),
            inner,
        })
    }

    /// Whether the lock is held (or being taken) in any mode, as
    /// parking_lot's.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Whether a writer holds the lock (or holds its place while it waits
    /// for the readers to leave), as parking_lot's.
    pub fn is_locked_exclusive(&self) -> bool {
        self.inner.is_locked_exclusive()
    }

    /// A mutable reference to the data; no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    #[track_caller]
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    #[track_caller]
    fn from(value: T) -> Self {
        RwLock::new(value)
    }
}

/// As parking_lot's: `RwLock { data: .. }`.
impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

deref_inner!(
    ref ['a, T: ?Sized] RwLockReadGuard<'a, T> => T,
    mut ['a, T: ?Sized] RwLockWriteGuard<'a, T> => T,
);
fmt_via_deref!(
    ['a, T: ?Sized] RwLockReadGuard<'a, T> => T,
    ['a, T: ?Sized] RwLockWriteGuard<'a, T> => T,
);
