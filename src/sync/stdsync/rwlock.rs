//! `RwLock`: `std::sync::RwLock` that tells the detector what it does.

use std::fmt;
use std::panic::Location;
use std::sync::{LockResult, TryLockResult};

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::LockMeta;
use crate::sync::blocking::{map_poison, map_try, take_or_wait, taken, taken_now};
use crate::sync::Held;
use crate::vocab::Access;

/// A reader-writer lock that blocks the thread, a drop-in for
/// [`std::sync::RwLock`] whose acquisitions join the async locks' graph.
///
/// std does not promise that a read gets past a queued writer (on Linux it
/// does not), so reads are recorded as tokio's: a read waiting on a read
/// deadlocks once a writer queues, and is reported as such.
///
/// # Examples
///
/// ```
/// use async_lockdep::stdsync::RwLock;
///
/// let config = RwLock::new(1);
/// assert_eq!(*config.read().unwrap(), 1);
/// *config.write().unwrap() = 2;
/// ```
// Without the `detect` feature `meta` is empty and the lock is std's.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct RwLock<T: ?Sized> {
    meta: LockMeta,
    inner: std::sync::RwLock<T>,
}

/// A shared hold of an [`RwLock`], released when dropped.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: std::sync::RwLockReadGuard<'a, T>,
}

/// An exclusive hold of an [`RwLock`], released when dropped.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: std::sync::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock whose class is the caller's source location,
    /// `const` as std's: the class is interned at first use.
    #[track_caller]
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::StdRwLock,
                std::any::type_name::<RwLock<T>>,
            ),
            inner: std::sync::RwLock::new(value),
        }
    }

    /// A new unlocked lock of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> RwLock<T> {
        let class = class::named(name, ClassKind::StdRwLock, Location::caller());
        RwLock {
            meta: LockMeta::new(class),
            inner: std::sync::RwLock::new(value),
        }
    }

    /// Consumes the lock, returning the data; an error if it is poisoned.
    pub fn into_inner(self) -> LockResult<T> {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, blocking the thread; the dependencies are
    /// recorded before blocking.
    ///
    /// # Errors
    ///
    /// As std's: poisoned (with the guard) if a writer panicked.
    #[track_caller]
    #[inline]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        if self.meta.engine().is_none() {
            // Detection off: std's call alone, small enough to be inlined.
            return map_poison(self.inner.read(), |inner| RwLockReadGuard {
                _held: Held::new(None),
                inner,
            });
        }
        self.read_recorded(Location::caller())
    }

    /// [`Self::read`] with detection on.
    #[inline(never)]
    fn read_recorded(
        &self,
        site: &'static Location<'static>,
    ) -> LockResult<RwLockReadGuard<'_, T>> {
        let (result, held) = take_or_wait(
            &self.meta,
            Access::Read,
            site,
            || taken_now(self.inner.try_read()),
            || self.inner.read(),
        );
        map_poison(result, |inner| RwLockReadGuard { _held: held, inner })
    }

    /// Locks for writing, blocking the thread; the dependencies are
    /// recorded before blocking.
    ///
    /// # Errors
    ///
    /// As std's: poisoned (with the guard) if a writer panicked.
    #[track_caller]
    #[inline]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        if self.meta.engine().is_none() {
            // Detection off: std's call alone, small enough to be inlined.
            return map_poison(self.inner.write(), |inner| RwLockWriteGuard {
                _held: Held::new(None),
                inner,
            });
        }
        self.write_recorded(Location::caller())
    }

    /// [`Self::write`] with detection on.
    #[inline(never)]
    fn write_recorded(
        &self,
        site: &'static Location<'static>,
    ) -> LockResult<RwLockWriteGuard<'_, T>> {
        let (result, held) = take_or_wait(
            &self.meta,
            Access::Write,
            site,
            || taken_now(self.inner.try_write()),
            || self.inner.write(),
        );
        map_poison(result, |inner| RwLockWriteGuard { _held: held, inner })
    }

    /// Reads if possible without blocking; records no dependency.
    ///
    /// # Errors
    ///
    /// As std's: `WouldBlock` or `Poisoned` (with the guard).
    #[track_caller]
    pub fn try_read(&self) -> TryLockResult<RwLockReadGuard<'_, T>> {
        let site = Location::caller();
        map_try(self.inner.try_read(), |inner| RwLockReadGuard {
            _held: taken(&self.meta, Access::Read, site),
            inner,
        })
    }

    /// Writes if possible without blocking; records no dependency.
    ///
    /// # Errors
    ///
    /// As std's: `WouldBlock` or `Poisoned` (with the guard).
    #[track_caller]
    pub fn try_write(&self) -> TryLockResult<RwLockWriteGuard<'_, T>> {
        let site = Location::caller();
        map_try(self.inner.try_write(), |inner| RwLockWriteGuard {
            _held: taken(&self.meta, Access::Write, site),
            inner,
        })
    }

    /// Whether the lock is poisoned, as std's.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Clears the poisoned state, as std's.
    pub fn clear_poison(&self) {
        self.inner.clear_poison();
    }

    /// A mutable reference to the data, with no locking; an error if the
    /// lock is poisoned.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
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

/// As std's: `RwLock { data: .., poisoned: .., .. }`.
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
