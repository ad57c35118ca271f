//! `Mutex`: `parking_lot::Mutex` that tells the detector what it does.

use std::fmt;
use std::panic::Location;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::LockMeta;
use crate::sync::blocking::{take_or_wait, taken};
use crate::sync::Held;
use crate::vocab::Access;

/// A mutual exclusion lock that blocks the thread, a drop-in for
/// [`parking_lot::Mutex`] whose acquisitions join the async locks' graph.
///
/// Its lock class is the place where it was created, unless named with
/// [`Mutex::with_class`]. [`Mutex::lock`] records its dependencies before
/// blocking, so taking it while the context holds it (it is not
/// re-entrant) is reported before the thread hangs.
///
/// # Examples
///
/// ```
/// use async_lockdep::parkinglot::Mutex;
///
/// let count = Mutex::new(0);
/// *count.lock() += 1;
/// assert_eq!(*count.lock(), 1);
/// ```
// Without the `detect` feature `meta` is empty and the mutex is parking_lot's.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct Mutex<T: ?Sized> {
    meta: LockMeta,
    inner: parking_lot::Mutex<T>,
}

/// A handle to a held [`Mutex`]; the lock is released when it is dropped.
/// As parking_lot's, it cannot be sent to another thread.
#[clippy::has_significant_drop]
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: parking_lot::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex whose class is the caller's source location,
    /// `const` as parking_lot's: the class is interned at first use.
    #[track_caller]
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::ParkingLotMutex,
                std::any::type_name::<Mutex<T>>,
            ),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// A new unlocked mutex of the class `name`: all mutexes with one name
    /// share a class, wherever they are created.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> Mutex<T> {
        let class = class::named(name, ClassKind::ParkingLotMutex, Location::caller());
        Mutex {
            meta: LockMeta::new(class),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, blocking the thread until it is free; the
    /// dependencies are recorded before blocking.
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self.meta.engine().is_none() {
            // Detection off: parking_lot's call alone, small enough to be
            // inlined.
            return MutexGuard {
                _held: Held::new(None),
                inner: self.inner.lock(),
            };
        }
        self.lock_recorded(Location::caller())
    }

    /// [`Self::lock`] with detection on.
    #[inline(never)]
    fn lock_recorded(&self, site: &'static Location<'static>) -> MutexGuard<'_, T> {
        let (inner, held) = take_or_wait(
            &self.meta,
            Access::Lock,
            site,
            || self.inner.try_lock(),
            || self.inner.lock(),
        );
        MutexGuard { _held: held, inner }
    }

    /// Locks the mutex if it is free, without blocking. Records no
    /// dependency (it cannot wait), but the lock is held after.
    #[track_caller]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let site = Location::caller();
        let inner = self.inner.try_lock()?;
        Some(MutexGuard {
            _held: taken(&self.meta, Access::Lock, site),
            inner,
        })
    }

    /// Whether the mutex is locked now, as parking_lot's.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// A mutable reference to the data; no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    #[track_caller]
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    #[track_caller]
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

/// As parking_lot's: `Mutex { data: .. }`.
impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

deref_inner!(mut ['a, T: ?Sized] MutexGuard<'a, T> => T);
fmt_via_deref!(['a, T: ?Sized] MutexGuard<'a, T> => T);
