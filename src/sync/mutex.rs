//! `Mutex`: `tokio::sync::Mutex` that tells the detector what it does.

use std::fmt;

use std::future::Future;
use std::panic::Location;
use std::ptr;
use std::sync::Arc;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{acquired_without_waiting, BlockingWait, LockMeta};
use crate::lockdep::{Acquire, Engine};
use crate::sync::acquiring::{track, Acquiring};
use crate::sync::{erase_mut, Held, Origin, OwnedParts};
use crate::vocab::Access;

pub use tokio::sync::TryLockError;

/// An asynchronous mutex, a drop-in for [`tokio::sync::Mutex`] that reports
/// lock-order cycles to the installed [`crate::Detector`].
///
/// Its lock class is the place where it was created, unless named with
/// [`Mutex::with_class`]: all mutexes created at one line share a class, and
/// ordering rules are about classes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use async_lockdep::Mutex;
///
/// let count = Mutex::new(0);
/// *count.lock().await += 1;
/// assert_eq!(*count.lock().await, 1);
/// # }
/// ```
// Without the `detect` feature `meta` is empty and the mutex is tokio's.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct Mutex<T: ?Sized> {
    meta: LockMeta,
    inner: tokio::sync::Mutex<T>,
}

/// A handle to a held [`Mutex`]; the lock is released when it is dropped.
#[clippy::has_significant_drop]
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    held: Held,
    inner: tokio::sync::MutexGuard<'a, T>,
    lock: Origin<'a, Mutex<T>>,
}

/// An owned handle to a held [`Mutex`], from [`Mutex::lock_owned`]. It can be
/// moved to other tasks; the release is recorded for the task that locked.
///
/// As tokio's, it needs no `T: 'static`: it keeps tokio's guard with its
/// type erased next to the `Arc` of the mutex.
#[clippy::has_significant_drop]
pub struct OwnedMutexGuard<T: ?Sized> {
    /// The data, in the mutex of `parts`.
    data: *mut T,
    parts: OwnedParts<Mutex<T>>,
}

/// A guard for a part of the data of a [`Mutex`], from [`MutexGuard::map`].
/// It holds the lock (and its place in the detector) of the guard it was
/// made from.
#[clippy::has_significant_drop]
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MappedMutexGuard<'a, T: ?Sized> {
    held: Held,
    inner: tokio::sync::MappedMutexGuard<'a, T>,
}

/// An owned guard for a part `U` of the data of a [`Mutex<T>`], from
/// [`OwnedMutexGuard::map`]. It holds the lock (and its place in the
/// detector) of the guard it was made from.
#[clippy::has_significant_drop]
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct OwnedMappedMutexGuard<T: ?Sized, U: ?Sized = T> {
    /// The part, in the mutex of `parts`.
    data: *mut U,
    parts: OwnedParts<Mutex<T>>,
}

// SAFETY: as tokio's owned guards, which hold the same things: the `Arc` of
// the mutex (sendable and shareable when `T: Send`), a pointer to data that
// only the guard reaches (sent along with it when `T: Send`; shared through
// `&self` when `T: Sync`), tokio's guard of that mutex (`Send` when
// `T: Send`, `Sync` when `T: Send + Sync`), and the detector's record
// (`Send + Sync`, asserted in `sync/mod.rs`).
unsafe impl<T: ?Sized + Send> Send for OwnedMutexGuard<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedMutexGuard<T> {}
// SAFETY: as above, the data being the part `U`, reached through the guard.
unsafe impl<T: ?Sized + Send, U: ?Sized + Send> Send for OwnedMappedMutexGuard<T, U> {}
// SAFETY: as above.
unsafe impl<T, U> Sync for OwnedMappedMutexGuard<T, U>
where
    T: ?Sized + Send + Sync,
    U: ?Sized + Send + Sync,
{
}

impl<T> Mutex<T> {
    /// A new unlocked mutex whose class is the caller's source location.
    ///
    /// Every lock created at one source location shares one class: the
    /// fields of a `#[derive(Default)]` struct (the derive is their creation
    /// site), or the locks a helper `fn counter() -> Mutex<u64>` returns.
    /// Nesting two locks of one class is judged by the order of the
    /// instances: one fixed order (field `a` then field `b`, parent then
    /// child) is fine; orders that form a cycle are reported as recursive
    /// locking. Give locks with distinct roles their own class with
    /// `with_class`, and declare ordered nesting with `lock_nested`. In
    /// reports, an unnamed class shows its site and type
    /// (`` `src/metrics.rs:4:10` (Mutex<u64>) ``).
    #[track_caller]
    pub fn new(value: T) -> Mutex<T> {
        let class = class::for_site_typed(
            Location::caller(),
            ClassKind::Mutex,
            Some(std::any::type_name::<Mutex<T>>()),
        );
        let _ours = crate::native::Ours::making();
        Mutex {
            meta: LockMeta::new(class),
            inner: tokio::sync::Mutex::new(value),
        }
    }

    /// A new unlocked mutex of the class `name`: all mutexes with one name
    /// share a class, wherever they are created.
    ///
    /// ```
    /// let journal = async_lockdep::Mutex::with_class("journal", Vec::<u8>::new());
    /// ```
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> Mutex<T> {
        let class = class::named(name, ClassKind::Mutex, Location::caller());
        let _ours = crate::native::Ours::making();
        Mutex {
            meta: LockMeta::new(class),
            inner: tokio::sync::Mutex::new(value),
        }
    }

    /// A new unlocked mutex usable in a `static`, as tokio's `const_new`. Its
    /// class is the caller's location, interned at first use.
    ///
    /// ```
    /// static CACHE: async_lockdep::Mutex<Vec<u8>> = async_lockdep::Mutex::const_new(Vec::new());
    /// ```
    #[track_caller]
    pub const fn const_new(value: T) -> Mutex<T> {
        Mutex {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::Mutex,
                std::any::type_name::<Mutex<T>>,
            ),
            inner: tokio::sync::Mutex::const_new(value),
        }
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, waiting until it is free.
    ///
    /// Records "`L` waited for while holding `H`" for every lock `H` the
    /// calling task holds, before waiting, so a deadlock is reported even if
    /// this call then hangs.
    ///
    /// # Cancel safety
    ///
    /// As tokio's: dropping the future before it completes gives up the
    /// place in the queue, and nothing is recorded as held.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let m = async_lockdep::Mutex::new(1);
    /// let mut n = m.lock().await;
    /// *n = 2;
    /// # }
    /// ```
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> impl Future<Output = MutexGuard<'_, T>> + '_ {
        let site = Location::caller();
        self.lock_as(track(&self.meta, |meta| meta.want(Access::Lock, site)))
    }

    /// Locks the mutex as nesting level `level` of its class: lockdep's
    /// `mutex_lock_nested`, for code that nests two mutexes of one class in a
    /// fixed order (parent then child, lower id first).
    ///
    /// Each level is a class of its own, so `level 0 → level 1` is an ordinary
    /// dependency and the inverted order `1 → 0` is still reported. Levels
    /// above [`MAX_NESTING_LEVEL`](crate::MAX_NESTING_LEVEL) count as the
    /// highest.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let _lockdep = async_lockdep::test_guard();
    /// fn account(balance: i64) -> async_lockdep::Mutex<i64> {
    ///     async_lockdep::Mutex::new(balance) // one class for all accounts
    /// }
    /// let (a, b) = (account(10), account(0));
    /// // Always lock the lower account id first, and say so:
    /// let mut from = a.lock_nested(0).await;
    /// let mut to = b.lock_nested(1).await;
    /// *from -= 5;
    /// *to += 5;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    #[track_caller]
    pub fn lock_nested(&self, level: u8) -> impl Future<Output = MutexGuard<'_, T>> + '_ {
        let site = Location::caller();
        self.lock_as(track(&self.meta, |meta| {
            meta.want_nested(Access::Lock, site, level)
        }))
    }

    #[inline]
    fn lock_as(
        &self,
        track: Option<(&'static Engine, Acquire)>,
    ) -> impl Future<Output = MutexGuard<'_, T>> + '_ {
        let start = || self.inner.lock();
        let lock = Origin::new(self);
        Acquiring::new(track, start, move |inner, held| MutexGuard {
            held: Held::new(held),
            inner,
            lock,
        })
    }

    /// Locks the mutex from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: panics if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_lock(&self) -> MutexGuard<'_, T> {
        let want = self.meta.want(Access::Lock, Location::caller());
        let started = BlockingWait::start(self.meta.engine(), want);
        let inner = self.inner.blocking_lock();
        let held = Held::new(started.acquired());
        MutexGuard {
            held,
            inner,
            lock: Origin::new(self),
        }
    }

    /// Locks the mutex if it is free, without waiting. Records no dependency
    /// (it cannot wait, so it cannot deadlock), but the lock is held after.
    ///
    /// ```
    /// let m = async_lockdep::Mutex::new(1);
    /// let g = m.try_lock().unwrap();
    /// assert!(m.try_lock().is_err());
    /// # drop(g);
    /// ```
    #[track_caller]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        let want = self.meta.want(Access::Lock, Location::caller());
        let inner = self.inner.try_lock()?;
        let held = Held::new(acquired_without_waiting(self.meta.engine(), want));
        Ok(MutexGuard {
            held,
            inner,
            lock: Origin::new(self),
        })
    }

    /// A mutable reference to the data; no locking needed, `&mut` proves
    /// no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// [`Mutex::blocking_lock`] with an owned guard.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_lock_owned(self: Arc<Self>) -> OwnedMutexGuard<T> {
        let want = self.meta.want(Access::Lock, Location::caller()).movable();
        let started = BlockingWait::start(self.meta.engine(), want);
        let guard = self.inner.blocking_lock();
        let held = started.acquired();
        // SAFETY: the guard locks the mutex in `self`, which the owned guard
        // keeps after it.
        let (data, guard) = unsafe { erase_mut(guard) };
        let parts = OwnedParts::new(held, guard, self);
        OwnedMutexGuard { data, parts }
    }

    /// Locks the mutex and returns an owned guard, which can be moved to
    /// another task. See [`Mutex::lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`Mutex::lock`].
    #[track_caller]
    pub fn lock_owned(self: Arc<Self>) -> impl Future<Output = OwnedMutexGuard<T>> {
        let site = Location::caller();
        let track = track(&self.meta, |meta| meta.want(Access::Lock, site).movable());
        async move {
            let (guard, held) = Acquiring::new(track, || self.inner.lock(), |g, h| (g, h)).await;
            // SAFETY: the guard locks the mutex in `self`, which the owned
            // guard keeps after it.
            let (data, guard) = unsafe { erase_mut(guard) };
            let parts = OwnedParts::new(held, guard, self);
            OwnedMutexGuard { data, parts }
        }
    }

    /// [`Mutex::try_lock`] with an owned guard.
    #[track_caller]
    pub fn try_lock_owned(self: Arc<Self>) -> Result<OwnedMutexGuard<T>, TryLockError> {
        let want = self.meta.want(Access::Lock, Location::caller()).movable();
        let guard = self.inner.try_lock()?;
        // SAFETY: the guard locks the mutex in `self`, which the owned guard
        // keeps after it.
        let (data, guard) = unsafe { erase_mut(guard) };
        let held = acquired_without_waiting(self.meta.engine(), want);
        let parts = OwnedParts::new(held, guard, self);
        Ok(OwnedMutexGuard { data, parts })
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

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    /// As tokio's (the class is in reports, not here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Makes a guard for a part of the locked data; the lock stays held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let m = async_lockdep::Mutex::new((1, 2));
    /// let mut second = async_lockdep::MutexGuard::map(m.lock().await, |pair| &mut pair.1);
    /// *second += 1;
    /// drop(second);
    /// assert_eq!(*m.lock().await, (1, 3));
    /// # }
    /// ```
    pub fn map<U, F>(this: Self, f: F) -> MappedMutexGuard<'a, U>
    where
        U: ?Sized,
        F: FnOnce(&mut T) -> &mut U,
    {
        let MutexGuard { held, inner, .. } = this;
        MappedMutexGuard {
            held,
            inner: tokio::sync::MutexGuard::map(inner, f),
        }
    }

    /// As [`MutexGuard::map`], but `f` may decline, giving the guard back.
    pub fn try_map<U, F>(this: Self, f: F) -> Result<MappedMutexGuard<'a, U>, Self>
    where
        U: ?Sized,
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let MutexGuard { held, inner, lock } = this;
        match tokio::sync::MutexGuard::try_map(inner, f) {
            Ok(inner) => Ok(MappedMutexGuard { held, inner }),
            Err(inner) => Err(MutexGuard { held, inner, lock }),
        }
    }

    /// The mutex this guard holds, as tokio's `MutexGuard::mutex`.
    pub fn mutex(this: &Self) -> &'a Mutex<T> {
        #[cfg(feature = "detect")]
        return this.lock.get();
        #[cfg(not(feature = "detect"))]
        {
            let inner: *const tokio::sync::Mutex<T> = tokio::sync::MutexGuard::mutex(&this.inner);
            // SAFETY: without the `detect` feature `Mutex` is a transparent
            // wrapper of tokio's (its `meta` is empty), and every guard
            // locks the tokio mutex inside one of ours.
            unsafe { &*(inner as *const Mutex<T>) }
        }
    }
}

impl<'a, T: ?Sized> MappedMutexGuard<'a, T> {
    /// Makes a guard for a part of this part; the lock stays held.
    pub fn map<U, F>(this: Self, f: F) -> MappedMutexGuard<'a, U>
    where
        F: FnOnce(&mut T) -> &mut U,
    {
        let MappedMutexGuard { held, inner } = this;
        MappedMutexGuard {
            held,
            inner: tokio::sync::MappedMutexGuard::map(inner, f),
        }
    }

    /// As [`MappedMutexGuard::map`], but `f` may decline, giving the guard
    /// back.
    pub fn try_map<U, F>(this: Self, f: F) -> Result<MappedMutexGuard<'a, U>, Self>
    where
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let MappedMutexGuard { held, inner } = this;
        match tokio::sync::MappedMutexGuard::try_map(inner, f) {
            Ok(inner) => Ok(MappedMutexGuard { held, inner }),
            Err(inner) => Err(MappedMutexGuard { held, inner }),
        }
    }
}

impl<T: ?Sized> OwnedMutexGuard<T> {
    /// Makes an owned guard for a part of the locked data; the lock stays
    /// held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use async_lockdep::{Mutex, OwnedMutexGuard};
    ///
    /// let m = Arc::new(Mutex::new((1, 2)));
    /// let mut second = OwnedMutexGuard::map(m.clone().lock_owned().await, |pair| &mut pair.1);
    /// *second += 1;
    /// drop(second);
    /// assert_eq!(*m.lock().await, (1, 3));
    /// # }
    /// ```
    pub fn map<U, F>(mut this: Self, f: F) -> OwnedMappedMutexGuard<T, U>
    where
        U: ?Sized,
        F: FnOnce(&mut T) -> &mut U,
    {
        let data: *mut U = f(&mut *this);
        let parts = this.parts;
        OwnedMappedMutexGuard { data, parts }
    }

    /// As [`OwnedMutexGuard::map`], but `f` may decline, giving the guard
    /// back.
    pub fn try_map<U, F>(mut this: Self, f: F) -> Result<OwnedMappedMutexGuard<T, U>, Self>
    where
        U: ?Sized,
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let Some(data) = f(&mut *this).map(ptr::from_mut) else {
            return Err(this);
        };
        let parts = this.parts;
        Ok(OwnedMappedMutexGuard { data, parts })
    }

    /// The mutex this guard holds, as tokio's `OwnedMutexGuard::mutex`.
    pub fn mutex(this: &Self) -> &Arc<Mutex<T>> {
        &this.parts.lock
    }
}

impl<T: ?Sized, U: ?Sized> OwnedMappedMutexGuard<T, U> {
    /// Makes an owned guard for a part of this part; the lock stays held.
    pub fn map<S, F>(mut this: Self, f: F) -> OwnedMappedMutexGuard<T, S>
    where
        F: FnOnce(&mut U) -> &mut S,
    {
        let data: *mut S = f(&mut *this);
        let parts = this.parts;
        OwnedMappedMutexGuard { data, parts }
    }

    /// As [`OwnedMappedMutexGuard::map`], but `f` may decline, giving the
    /// guard back.
    pub fn try_map<S, F>(mut this: Self, f: F) -> Result<OwnedMappedMutexGuard<T, S>, Self>
    where
        F: FnOnce(&mut U) -> Option<&mut S>,
    {
        let Some(data) = f(&mut *this).map(ptr::from_mut) else {
            return Err(this);
        };
        let parts = this.parts;
        Ok(OwnedMappedMutexGuard { data, parts })
    }
}

deref_inner!(
    mut ['a, T: ?Sized] MutexGuard<'a, T> => T,
    mut ['a, T: ?Sized] MappedMutexGuard<'a, T> => T,
);
deref_data!(
    mut [T: ?Sized] OwnedMutexGuard<T> => T,
    mut [T: ?Sized, U: ?Sized] OwnedMappedMutexGuard<T, U> => U,
);
fmt_via_deref!(
    ['a, T: ?Sized] MutexGuard<'a, T> => T,
    [T: ?Sized] OwnedMutexGuard<T> => T,
    ['a, T: ?Sized] MappedMutexGuard<'a, T> => T,
    [T: ?Sized, U: ?Sized] OwnedMappedMutexGuard<T, U> => U,
);
