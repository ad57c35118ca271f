//! `RwLock`: `tokio::sync::RwLock` that tells the detector what it does.

use std::fmt;

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{acquire_blocking, acquired_without_waiting, Holding, LockMeta};
use crate::lockdep::Acquire;
use crate::sync::acquiring::Acquiring;
use crate::sync::Detached;
use crate::sync::TryLockError;
use crate::vocab::Access;

/// An asynchronous reader-writer lock, a drop-in for
/// [`tokio::sync::RwLock`] that reports lock-order cycles.
///
/// tokio's `RwLock` is **fair (write-preferring)**: once a writer waits, new
/// readers wait behind it. So a task that holds a read lock and asks for
/// another read of the same lock deadlocks as soon as a writer queues in
/// between, and cycles made only of reads across tasks deadlock the same way.
/// The detector reports both, marking them as needing a writer
/// ([`Report::needs_writer`](crate::Report::needs_writer)); a cycle with a
/// write in a blocking position is a plain deadlock.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = async_lockdep::RwLock::new(String::from("v1"));
/// {
///     let r = config.read().await;
///     assert_eq!(*r, "v1");
/// }
/// config.write().await.push_str("-patched");
/// assert_eq!(*config.read().await, "v1-patched");
/// # }
/// ```
pub struct RwLock<T: ?Sized> {
    meta: LockMeta,
    inner: tokio::sync::RwLock<T>,
}

/// Shared access to the data of an [`RwLock`], released on drop.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    held: Option<Holding>,
    inner: tokio::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive access to the data of an [`RwLock`], released on drop.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    held: Option<Holding>,
    inner: tokio::sync::RwLockWriteGuard<'a, T>,
}

/// Exclusive access to a part of the data, from [`RwLockWriteGuard::map`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockMappedWriteGuard<'a, T: ?Sized> {
    _held: Option<Holding>,
    inner: tokio::sync::RwLockMappedWriteGuard<'a, T>,
}

/// Owned shared access, from [`RwLock::read_owned`]; can move between tasks.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct OwnedRwLockReadGuard<T: ?Sized + 'static> {
    _held: Option<Holding>,
    // Borrows `lock`'s lock: declared (so dropped) before it.
    inner: Detached<tokio::sync::RwLockReadGuard<'static, T>>,
    lock: Arc<RwLock<T>>,
}

/// Owned exclusive access, from [`RwLock::write_owned`]; can move between tasks.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct OwnedRwLockWriteGuard<T: ?Sized + 'static> {
    held: Option<Holding>,
    // Borrows `lock`'s lock: declared (so dropped) before it.
    inner: Detached<tokio::sync::RwLockWriteGuard<'static, T>>,
    lock: Arc<RwLock<T>>,
}

impl<T> RwLock<T> {
    /// A new unlocked `RwLock` whose class is the caller's source location.
    ///
    /// Every lock created at one source location shares one class: the
    /// fields of a `#[derive(Default)]` struct (the derive is their creation
    /// site), or the locks a helper `fn counter() -> RwLock<u64>` returns.
    /// Nesting two locks of one class is judged by the order of the
    /// instances: one fixed order (field `a` then field `b`, parent then
    /// child) is fine; orders that form a cycle are reported as recursive
    /// locking. Give locks with distinct roles their own class with
    /// `with_class`, and declare ordered nesting with `read_nested` / `write_nested`. In
    /// reports, an unnamed class shows its site and type
    /// (`` `src/metrics.rs:4:10` (RwLock<u64>) ``).
    #[track_caller]
    pub fn new(value: T) -> RwLock<T> {
        let class = class::for_site_typed(
            Location::caller(),
            ClassKind::RwLock,
            Some(std::any::type_name::<RwLock<T>>()),
        );
        RwLock::from_parts(class, tokio::sync::RwLock::new(value))
    }

    /// A new unlocked `RwLock` of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> RwLock<T> {
        let class = class::named(name, ClassKind::RwLock, Location::caller());
        RwLock::from_parts(class, tokio::sync::RwLock::new(value))
    }

    /// A new unlocked `RwLock` allowing at most `max_reads` concurrent readers.
    ///
    /// # Panics
    ///
    /// As tokio's: if `max_reads` is more than `u32::MAX >> 3`.
    #[track_caller]
    pub fn with_max_readers(value: T, max_reads: u32) -> RwLock<T> {
        let class = class::for_site_typed(
            Location::caller(),
            ClassKind::RwLock,
            Some(std::any::type_name::<RwLock<T>>()),
        );
        RwLock::from_parts(
            class,
            tokio::sync::RwLock::with_max_readers(value, max_reads),
        )
    }

    /// A new unlocked `RwLock` usable in a `static`, as tokio's `const_new`.
    /// Its class is the caller's location, interned at first use.
    ///
    /// ```
    /// static CONFIG: async_lockdep::RwLock<u32> = async_lockdep::RwLock::const_new(1);
    /// ```
    #[track_caller]
    pub const fn const_new(value: T) -> RwLock<T> {
        RwLock {
            meta: LockMeta::lazy(Location::caller(), ClassKind::RwLock),
            inner: tokio::sync::RwLock::const_new(value),
        }
    }

    /// [`RwLock::const_new`] with at most `max_reads` concurrent readers.
    #[track_caller]
    pub const fn const_with_max_readers(value: T, max_reads: u32) -> RwLock<T> {
        RwLock {
            meta: LockMeta::lazy(Location::caller(), ClassKind::RwLock),
            inner: tokio::sync::RwLock::const_with_max_readers(value, max_reads),
        }
    }

    #[track_caller]
    fn from_parts(class: crate::vocab::ClassId, inner: tokio::sync::RwLock<T>) -> RwLock<T> {
        RwLock {
            meta: LockMeta::new(class),
            inner,
        }
    }

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, waiting while a writer holds the lock or waits for it.
    ///
    /// Records "this lock read-waited for while holding `H`" for every held
    /// `H`, before waiting. Reading a lock this task already reads is
    /// reported (it deadlocks once a writer queues in between).
    ///
    /// # Cancel safety
    ///
    /// As tokio's: dropping the future gives up the place in the queue and
    /// leaves nothing held.
    #[track_caller]
    #[inline]
    pub fn read(&self) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        self.read_as(self.meta.want(Access::Read, Location::caller()))
    }

    /// [`RwLock::read`] as nesting level `level` of the class (see
    /// [`Mutex::lock_nested`](crate::Mutex::lock_nested)).
    #[track_caller]
    pub fn read_nested(&self, level: u8) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        self.read_as(
            self.meta
                .want_nested(Access::Read, Location::caller(), level),
        )
    }

    #[inline]
    fn read_as(&self, want: Acquire) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        Acquiring::new(
            self.meta.engine(),
            want,
            self.inner.read(),
            |inner, held| RwLockReadGuard { held, inner },
        )
    }

    /// Locks for writing, waiting until no reader or writer holds the lock.
    ///
    /// # Cancel safety
    ///
    /// As [`RwLock::read`].
    #[track_caller]
    #[inline]
    pub fn write(&self) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        self.write_as(self.meta.want(Access::Write, Location::caller()))
    }

    /// [`RwLock::write`] as nesting level `level` of the class.
    #[track_caller]
    pub fn write_nested(&self, level: u8) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        self.write_as(
            self.meta
                .want_nested(Access::Write, Location::caller(), level),
        )
    }

    #[inline]
    fn write_as(&self, want: Acquire) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        Acquiring::new(
            self.meta.engine(),
            want,
            self.inner.write(),
            |inner, held| RwLockWriteGuard { held, inner },
        )
    }

    /// Locks for reading from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_read(&self) -> RwLockReadGuard<'_, T> {
        let want = self.meta.want(Access::Read, Location::caller());
        let (inner, held) =
            acquire_blocking(self.meta.engine(), want, || self.inner.blocking_read());
        RwLockReadGuard { held, inner }
    }

    /// Locks for writing from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_write(&self) -> RwLockWriteGuard<'_, T> {
        let want = self.meta.want(Access::Write, Location::caller());
        let (inner, held) =
            acquire_blocking(self.meta.engine(), want, || self.inner.blocking_write());
        RwLockWriteGuard { held, inner }
    }

    /// Reads if possible without waiting; records no dependency.
    #[track_caller]
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        let want = self.meta.want(Access::Read, Location::caller());
        let inner = self.inner.try_read()?;
        let held = acquired_without_waiting(self.meta.engine(), want);
        Ok(RwLockReadGuard { held, inner })
    }

    /// Writes if possible without waiting; records no dependency.
    #[track_caller]
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        let want = self.meta.want(Access::Write, Location::caller());
        let inner = self.inner.try_write()?;
        let held = acquired_without_waiting(self.meta.engine(), want);
        Ok(RwLockWriteGuard { held, inner })
    }

    /// A mutable reference to the data; `&mut` proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized + 'static> RwLock<T> {
    /// [`RwLock::read`] with an owned guard.
    #[track_caller]
    pub fn read_owned(self: Arc<Self>) -> impl Future<Output = OwnedRwLockReadGuard<T>> {
        let want = self.meta.want(Access::Read, Location::caller()).movable();
        let detector = self.meta.engine();
        async move {
            let (guard, held) =
                Acquiring::new(detector, want, self.inner.read(), |g, h| (g, h)).await;
            // SAFETY: `guard` borrows the lock inside the `Arc` the owned
            // guard keeps in `lock`, declared after `inner`.
            let inner = unsafe { Detached::new(guard) };
            OwnedRwLockReadGuard {
                _held: held,
                inner,
                lock: self,
            }
        }
    }

    /// [`RwLock::write`] with an owned guard.
    #[track_caller]
    pub fn write_owned(self: Arc<Self>) -> impl Future<Output = OwnedRwLockWriteGuard<T>> {
        let want = self.meta.want(Access::Write, Location::caller()).movable();
        let detector = self.meta.engine();
        async move {
            let (guard, held) =
                Acquiring::new(detector, want, self.inner.write(), |g, h| (g, h)).await;
            // SAFETY: `guard` borrows the lock inside the `Arc` the owned
            // guard keeps in `lock`, declared after `inner`.
            let inner = unsafe { Detached::new(guard) };
            OwnedRwLockWriteGuard {
                held,
                inner,
                lock: self,
            }
        }
    }

    /// [`RwLock::try_read`] with an owned guard.
    #[track_caller]
    pub fn try_read_owned(self: Arc<Self>) -> Result<OwnedRwLockReadGuard<T>, TryLockError> {
        let want = self.meta.want(Access::Read, Location::caller()).movable();
        let guard = self.inner.try_read()?;
        // SAFETY: as in `read_owned`.
        let inner = unsafe { Detached::new(guard) };
        let detector = self.meta.engine();
        Ok(OwnedRwLockReadGuard {
            _held: acquired_without_waiting(detector, want),
            inner,
            lock: self,
        })
    }

    /// [`RwLock::try_write`] with an owned guard.
    #[track_caller]
    pub fn try_write_owned(self: Arc<Self>) -> Result<OwnedRwLockWriteGuard<T>, TryLockError> {
        let want = self.meta.want(Access::Write, Location::caller()).movable();
        let guard = self.inner.try_write()?;
        // SAFETY: as in `write_owned`.
        let inner = unsafe { Detached::new(guard) };
        let detector = self.meta.engine();
        Ok(OwnedRwLockWriteGuard {
            held: acquired_without_waiting(detector, want),
            inner,
            lock: self,
        })
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

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        if let Some(class) = class::describe(self.meta.class()) {
            d.field("class", &class.name);
        }
        match self.inner.try_read() {
            Ok(inner) => d.field("data", &&*inner),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    /// A read guard for a part of the data; the lock stays held.
    pub fn map<U: ?Sized, F>(this: Self, f: F) -> RwLockReadGuard<'a, U>
    where
        F: FnOnce(&T) -> &U,
    {
        let RwLockReadGuard { held, inner } = this;
        RwLockReadGuard {
            held,
            inner: tokio::sync::RwLockReadGuard::map(inner, f),
        }
    }

    /// As [`RwLockReadGuard::map`], but `f` may decline, giving the guard back.
    pub fn try_map<U: ?Sized, F>(this: Self, f: F) -> Result<RwLockReadGuard<'a, U>, Self>
    where
        F: FnOnce(&T) -> Option<&U>,
    {
        let RwLockReadGuard { held, inner } = this;
        match tokio::sync::RwLockReadGuard::try_map(inner, f) {
            Ok(inner) => Ok(RwLockReadGuard { held, inner }),
            Err(inner) => Err(RwLockReadGuard { held, inner }),
        }
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// A write guard for a part of the data; the lock stays held.
    pub fn map<U: ?Sized, F>(this: Self, f: F) -> RwLockMappedWriteGuard<'a, U>
    where
        F: FnOnce(&mut T) -> &mut U,
    {
        let RwLockWriteGuard { held, inner } = this;
        RwLockMappedWriteGuard {
            _held: held,
            inner: tokio::sync::RwLockWriteGuard::map(inner, f),
        }
    }

    /// Turns the write lock into a read lock without letting a writer in
    /// between. The lock stays held (now for reading); no new dependency.
    pub fn downgrade(self) -> RwLockReadGuard<'a, T> {
        let RwLockWriteGuard { held, inner } = self;
        if let Some(held) = &held {
            held.downgrade();
        }
        RwLockReadGuard {
            held,
            inner: inner.downgrade(),
        }
    }
}

impl<T: ?Sized + 'static> OwnedRwLockReadGuard<T> {
    /// The lock this guard holds, as tokio's `OwnedRwLockReadGuard::rwlock`.
    pub fn rwlock(this: &Self) -> &Arc<RwLock<T>> {
        &this.lock
    }
}

impl<T: ?Sized + 'static> OwnedRwLockWriteGuard<T> {
    /// The lock this guard holds, as tokio's `OwnedRwLockWriteGuard::rwlock`.
    pub fn rwlock(this: &Self) -> &Arc<RwLock<T>> {
        &this.lock
    }

    /// Turns the owned write lock into an owned read lock; see
    /// [`RwLockWriteGuard::downgrade`].
    pub fn downgrade(self) -> OwnedRwLockReadGuard<T> {
        // Bound in this order so that, should anything unwind here, the
        // guard is dropped before the `Arc` that keeps its lock alive.
        let OwnedRwLockWriteGuard { lock, inner, held } = self;
        if let Some(held) = &held {
            held.downgrade();
        }
        OwnedRwLockReadGuard {
            _held: held,
            inner: Detached::wrap(inner.into_inner().downgrade()),
            lock,
        }
    }
}

read_guard_impls!(
    ['a, T: ?Sized] RwLockReadGuard<'a, T>,
    ['a, T: ?Sized] RwLockWriteGuard<'a, T>,
    ['a, T: ?Sized] RwLockMappedWriteGuard<'a, T>,
    [T: ?Sized + 'static] OwnedRwLockReadGuard<T>,
    [T: ?Sized + 'static] OwnedRwLockWriteGuard<T>,
);
write_guard_impls!(
    ['a, T: ?Sized] RwLockWriteGuard<'a, T>,
    ['a, T: ?Sized] RwLockMappedWriteGuard<'a, T>,
    [T: ?Sized + 'static] OwnedRwLockWriteGuard<T>,
);
