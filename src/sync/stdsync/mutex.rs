//! `Mutex`: `std::sync::Mutex` that tells the detector what it does.

use std::fmt;
use std::panic::Location;
use std::sync::{LockResult, TryLockResult};

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::LockMeta;
use crate::sync::blocking::{map_poison, map_try, take_or_wait, taken, taken_now};
use crate::sync::Held;
use crate::vocab::Access;

/// A mutual exclusion lock that blocks the thread, a drop-in for
/// [`std::sync::Mutex`] whose acquisitions join the async locks' graph.
///
/// Its lock class is the place where it was created, unless named with
/// [`Mutex::with_class`]. [`Mutex::lock`] records its dependencies before
/// blocking, so taking it while the context holds it (std's mutex is not
/// re-entrant) is reported before the thread hangs. Poisoning is std's:
/// a poisoned lock is held all the same, and the guard inside the
/// [`PoisonError`](std::sync::PoisonError) is this module's.
///
/// # Examples
///
/// ```
/// use async_lockdep::stdsync::Mutex;
///
/// let count = Mutex::new(0);
/// *count.lock().unwrap() += 1;
/// assert_eq!(*count.lock().unwrap(), 1);
/// ```
// Without the `detect` feature `meta` is empty and the mutex is std's.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct Mutex<T: ?Sized> {
    meta: LockMeta,
    inner: std::sync::Mutex<T>,
}

/// A handle to a held [`Mutex`]; the lock is released when it is dropped.
/// As std's, it cannot be sent to another thread.
#[clippy::has_significant_drop]
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized + 'a> {
    /// The detector's record of the hold: released when dropped, first.
    _held: Held,
    inner: std::sync::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex whose class is the caller's source location,
    /// `const` as std's (usable in a `static`): the class is interned at
    /// first use.
    #[track_caller]
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::StdMutex,
                std::any::type_name::<Mutex<T>>,
            ),
            inner: std::sync::Mutex::new(value),
        }
    }

    /// A new unlocked mutex of the class `name`: all mutexes with one name
    /// share a class, wherever they are created.
    ///
    /// ```
    /// let journal = async_lockdep::stdsync::Mutex::with_class("journal", Vec::<u8>::new());
    /// ```
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> Mutex<T> {
        let class = class::named(name, ClassKind::StdMutex, Location::caller());
        Mutex {
            meta: LockMeta::new(class),
            inner: std::sync::Mutex::new(value),
        }
    }

    /// Consumes the mutex, returning the data; an error if it is poisoned,
    /// as std's.
    pub fn into_inner(self) -> LockResult<T> {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, blocking the thread until it is free.
    ///
    /// Records "this mutex waited for while holding `H`" for every lock `H`
    /// (async or blocking) the calling context holds, before blocking.
    ///
    /// # Errors
    ///
    /// As std's: if a holder panicked, the lock is poisoned, and the error
    /// carries the guard (the lock is held).
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        if self.meta.engine().is_none() {
            // Detection off: std's call alone, small enough to be inlined.
            return map_poison(self.inner.lock(), |inner| MutexGuard {
                _held: Held::new(None),
                inner,
            });
        }
        self.lock_recorded(Location::caller())
    }

    /// [`Self::lock`] with detection on.
    #[inline(never)]
    fn lock_recorded(&self, site: &'static Location<'static>) -> LockResult<MutexGuard<'_, T>> {
        let (result, held) = take_or_wait(
            &self.meta,
            Access::Lock,
            site,
            || taken_now(self.inner.try_lock()),
            || self.inner.lock(),
        );
        map_poison(result, |inner| MutexGuard { _held: held, inner })
    }

    /// Locks the mutex if it is free, without blocking. Records no
    /// dependency (it cannot wait), but the lock is held after.
    ///
    /// # Errors
    ///
    /// As std's: `WouldBlock` if it is locked, `Poisoned` (with the guard)
    /// if a holder panicked.
    #[track_caller]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        let site = Location::caller();
        map_try(self.inner.try_lock(), |inner| MutexGuard {
            _held: taken(&self.meta, Access::Lock, site),
            inner,
        })
    }

    /// Whether the mutex is poisoned, as std's.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Clears the poisoned state, as std's.
    pub fn clear_poison(&self) {
        self.inner.clear_poison();
    }

    /// A mutable reference to the data; no locking needed, `&mut` proves
    /// no guard exists. An error if the mutex is poisoned, as std's.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
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

/// As std's: `Mutex { data: .., poisoned: .., .. }`.
impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

deref_inner!(mut ['a, T: ?Sized] MutexGuard<'a, T> => T);
fmt_via_deref!(['a, T: ?Sized] MutexGuard<'a, T> => T);
