//! `RwLock`: `tokio::sync::RwLock` that tells the detector what it does.

use std::fmt;

use std::future::Future;
use std::panic::Location;
use std::ptr;
use std::sync::Arc;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{acquired_without_waiting, BlockingWait, LockMeta};
use crate::lockdep::{Acquire, Engine};
use crate::sync::acquiring::{track, Acquiring};
use crate::sync::TryLockError;
use crate::sync::{erase_mut, erase_ref, ErasedGuard, Held, OwnedParts};
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
// Without the `detect` feature `meta` is empty and this is tokio's type.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct RwLock<T: ?Sized> {
    meta: LockMeta,
    inner: tokio::sync::RwLock<T>,
}

/// Shared access to the data of an [`RwLock`], released on drop.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    held: Held,
    inner: tokio::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive access to the data of an [`RwLock`], released on drop.
#[clippy::has_significant_drop]
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    held: Held,
    inner: tokio::sync::RwLockWriteGuard<'a, T>,
}

/// Exclusive access to a part of the data, from [`RwLockWriteGuard::map`].
/// It holds the lock (and its place in the detector) of the guard it was
/// made from.
#[clippy::has_significant_drop]
pub struct RwLockMappedWriteGuard<'a, T: ?Sized> {
    held: Held,
    inner: tokio::sync::RwLockMappedWriteGuard<'a, T>,
}

/// Owned shared access to the part `U` (by default all) of the data of an
/// [`RwLock<T>`], from [`RwLock::read_owned`] or a map; can move between
/// tasks.
///
/// As tokio's, it needs no `T: 'static`: it keeps tokio's guard with its
/// type erased next to the `Arc` of the lock.
#[clippy::has_significant_drop]
pub struct OwnedRwLockReadGuard<T: ?Sized, U: ?Sized = T> {
    /// The part, in the lock of `parts` (whose guard is a read guard).
    data: *const U,
    parts: OwnedParts<RwLock<T>>,
}

/// Owned exclusive access, from [`RwLock::write_owned`]; can move between
/// tasks. Needs no `T: 'static`, as [`OwnedRwLockReadGuard`].
#[clippy::has_significant_drop]
pub struct OwnedRwLockWriteGuard<T: ?Sized> {
    /// The data, in the lock of `parts` (whose guard is a write guard).
    data: *mut T,
    parts: OwnedParts<RwLock<T>>,
}

/// Owned exclusive access to a part `U` of the data of an [`RwLock<T>`],
/// from [`OwnedRwLockWriteGuard::map`]. It holds the lock (and its place in
/// the detector) of the guard it was made from.
#[clippy::has_significant_drop]
pub struct OwnedRwLockMappedWriteGuard<T: ?Sized, U: ?Sized = T> {
    /// The part, in the lock of `parts` (whose guard is a write guard).
    data: *mut U,
    parts: OwnedParts<RwLock<T>>,
}

// SAFETY (all six): as tokio's owned guards, which hold the same things and
// state the same bounds: the `Arc` of the lock (sendable and shareable when
// `T: Send + Sync`), a pointer to data reached through the guard (`&U` from
// a read guard: `U: Sync`; `&mut U` from a write guard: `U: Send + Sync` as
// tokio asks), tokio's guard of that lock (a read guard is `Send` when
// `T: Sync` and `Sync` when `T: Send + Sync`; a write guard both when
// `T: Send + Sync`), and the detector's record (`Send + Sync`, asserted in
// `sync/mod.rs`).
unsafe impl<T, U> Send for OwnedRwLockReadGuard<T, U>
where
    T: ?Sized + Send + Sync,
    U: ?Sized + Sync,
{
}
// SAFETY: above.
unsafe impl<T, U> Sync for OwnedRwLockReadGuard<T, U>
where
    T: ?Sized + Send + Sync,
    U: ?Sized + Send + Sync,
{
}
// SAFETY: above.
unsafe impl<T: ?Sized + Send + Sync> Send for OwnedRwLockWriteGuard<T> {}
// SAFETY: above.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedRwLockWriteGuard<T> {}
// SAFETY: above.
unsafe impl<T, U> Send for OwnedRwLockMappedWriteGuard<T, U>
where
    T: ?Sized + Send + Sync,
    U: ?Sized + Send + Sync,
{
}
// SAFETY: above.
unsafe impl<T, U> Sync for OwnedRwLockMappedWriteGuard<T, U>
where
    T: ?Sized + Send + Sync,
    U: ?Sized + Send + Sync,
{
}

/// Turns the parts of an owned write guard into those of an owned read
/// guard, as tokio's `RwLockWriteGuard::downgrade` (no writer gets in
/// between), and tells the detector: the same hold, no new dependency.
///
/// # Safety
///
/// `parts.guard` must be the erased write guard of the lock in `parts.lock`
/// (as in an `OwnedRwLockWriteGuard`, from `write_owned`).
unsafe fn downgrade_parts<T: ?Sized>(parts: OwnedParts<RwLock<T>>) -> OwnedParts<RwLock<T>> {
    // Bound in this order so that, should anything unwind here, the guard
    // is dropped before the `Arc` that keeps its lock alive.
    let OwnedParts { lock, guard, held } = parts;
    held.downgrade();
    // SAFETY: the caller's promise: `guard` is tokio's write guard of the
    // lock in `lock`, which stays alive meanwhile.
    let write = unsafe { guard.take::<tokio::sync::RwLockWriteGuard<'_, T>>() };
    // SAFETY: the read guard holds the same lock, kept alive by `lock`, next
    // to which it goes again.
    let guard = unsafe { ErasedGuard::new(write.downgrade()) };
    OwnedParts { held, guard, lock }
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
        let _ours = crate::native::Ours::making();
        RwLock::from_parts(class, tokio::sync::RwLock::new(value))
    }

    /// A new unlocked `RwLock` of the class `name`.
    #[track_caller]
    pub fn with_class(name: impl Into<std::borrow::Cow<'static, str>>, value: T) -> RwLock<T> {
        let class = class::named(name, ClassKind::RwLock, Location::caller());
        let _ours = crate::native::Ours::making();
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
        let _ours = crate::native::Ours::making();
        let mut lock = RwLock::from_parts(
            class,
            tokio::sync::RwLock::with_max_readers(value, max_reads),
        );
        lock.meta.set_reader_cap(max_reads);
        lock
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
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::RwLock,
                std::any::type_name::<RwLock<T>>,
            ),
            inner: tokio::sync::RwLock::const_new(value),
        }
    }

    /// [`RwLock::const_new`] with at most `max_reads` concurrent readers.
    #[track_caller]
    pub const fn const_with_max_readers(value: T, max_reads: u32) -> RwLock<T> {
        RwLock {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::RwLock,
                std::any::type_name::<RwLock<T>>,
            ),
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
        let site = Location::caller();
        self.read_as(track(&self.meta, |meta| meta.want(Access::Read, site)))
    }

    /// [`RwLock::read`] as nesting level `level` of the class (see
    /// [`Mutex::lock_nested`](crate::Mutex::lock_nested)).
    #[track_caller]
    pub fn read_nested(&self, level: u8) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        let site = Location::caller();
        self.read_as(track(&self.meta, |meta| {
            meta.want_nested(Access::Read, site, level)
        }))
    }

    #[inline]
    fn read_as(
        &self,
        track: Option<(&'static Engine, Acquire)>,
    ) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        let start = || self.inner.read();
        Acquiring::new(track, start, |inner, held| RwLockReadGuard {
            held: Held::new(held),
            inner,
        })
    }

    /// Locks for writing, waiting until no reader or writer holds the lock.
    ///
    /// # Cancel safety
    ///
    /// As [`RwLock::read`].
    #[track_caller]
    #[inline]
    pub fn write(&self) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        let site = Location::caller();
        self.write_as(track(&self.meta, |meta| meta.want(Access::Write, site)))
    }

    /// [`RwLock::write`] as nesting level `level` of the class.
    #[track_caller]
    pub fn write_nested(&self, level: u8) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        let site = Location::caller();
        self.write_as(track(&self.meta, |meta| {
            meta.want_nested(Access::Write, site, level)
        }))
    }

    #[inline]
    fn write_as(
        &self,
        track: Option<(&'static Engine, Acquire)>,
    ) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        let start = || self.inner.write();
        Acquiring::new(track, start, |inner, held| RwLockWriteGuard {
            held: Held::new(held),
            inner,
        })
    }

    /// Locks for reading from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_read(&self) -> RwLockReadGuard<'_, T> {
        let want = self.meta.want(Access::Read, Location::caller());
        let started = BlockingWait::start(self.meta.engine(), want);
        let inner = self.inner.blocking_read();
        let held = Held::new(started.acquired());
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
        let started = BlockingWait::start(self.meta.engine(), want);
        let inner = self.inner.blocking_write();
        let held = Held::new(started.acquired());
        RwLockWriteGuard { held, inner }
    }

    /// Reads if possible without waiting; records no dependency.
    #[track_caller]
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        let want = self.meta.want(Access::Read, Location::caller());
        let inner = self.inner.try_read()?;
        let held = Held::new(acquired_without_waiting(self.meta.engine(), want));
        Ok(RwLockReadGuard { held, inner })
    }

    /// Writes if possible without waiting; records no dependency.
    #[track_caller]
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        let want = self.meta.want(Access::Write, Location::caller());
        let inner = self.inner.try_write()?;
        let held = Held::new(acquired_without_waiting(self.meta.engine(), want));
        Ok(RwLockWriteGuard { held, inner })
    }

    /// A mutable reference to the data; `&mut` proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// [`RwLock::read`] with an owned guard.
    #[track_caller]
    pub fn read_owned(self: Arc<Self>) -> impl Future<Output = OwnedRwLockReadGuard<T>> {
        let site = Location::caller();
        let track = track(&self.meta, |meta| meta.want(Access::Read, site).movable());
        async move {
            let (guard, held) = Acquiring::new(track, || self.inner.read(), |g, h| (g, h)).await;
            // SAFETY: the guard holds the lock in `self`, which the owned
            // guard keeps after it.
            let (data, guard) = unsafe { erase_ref(guard) };
            let parts = OwnedParts::new(held, guard, self);
            OwnedRwLockReadGuard { data, parts }
        }
    }

    /// [`RwLock::write`] with an owned guard.
    #[track_caller]
    pub fn write_owned(self: Arc<Self>) -> impl Future<Output = OwnedRwLockWriteGuard<T>> {
        let site = Location::caller();
        let track = track(&self.meta, |meta| meta.want(Access::Write, site).movable());
        async move {
            let (guard, held) = Acquiring::new(track, || self.inner.write(), |g, h| (g, h)).await;
            // SAFETY: the guard holds the lock in `self`, which the owned
            // guard keeps after it.
            let (data, guard) = unsafe { erase_mut(guard) };
            let parts = OwnedParts::new(held, guard, self);
            OwnedRwLockWriteGuard { data, parts }
        }
    }

    /// [`RwLock::try_read`] with an owned guard.
    #[track_caller]
    pub fn try_read_owned(self: Arc<Self>) -> Result<OwnedRwLockReadGuard<T>, TryLockError> {
        let want = self.meta.want(Access::Read, Location::caller()).movable();
        let guard = self.inner.try_read()?;
        // SAFETY: as in `read_owned`.
        let (data, guard) = unsafe { erase_ref(guard) };
        let held = acquired_without_waiting(self.meta.engine(), want);
        let parts = OwnedParts::new(held, guard, self);
        Ok(OwnedRwLockReadGuard { data, parts })
    }

    /// [`RwLock::try_write`] with an owned guard.
    #[track_caller]
    pub fn try_write_owned(self: Arc<Self>) -> Result<OwnedRwLockWriteGuard<T>, TryLockError> {
        let want = self.meta.want(Access::Write, Location::caller()).movable();
        let guard = self.inner.try_write()?;
        // SAFETY: as in `write_owned`.
        let (data, guard) = unsafe { erase_mut(guard) };
        let held = acquired_without_waiting(self.meta.engine(), want);
        let parts = OwnedParts::new(held, guard, self);
        Ok(OwnedRwLockWriteGuard { data, parts })
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
    /// As tokio's (the class is in reports, not here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    /// A read guard for a part of the data; the lock stays held.
    pub fn map<F, U: ?Sized>(this: Self, f: F) -> RwLockReadGuard<'a, U>
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
    pub fn try_map<F, U: ?Sized>(this: Self, f: F) -> Result<RwLockReadGuard<'a, U>, Self>
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
    pub fn map<F, U: ?Sized>(this: Self, f: F) -> RwLockMappedWriteGuard<'a, U>
    where
        F: FnOnce(&mut T) -> &mut U,
    {
        let RwLockWriteGuard { held, inner } = this;
        RwLockMappedWriteGuard {
            held,
            inner: tokio::sync::RwLockWriteGuard::map(inner, f),
        }
    }

    /// Downgrades to a read guard for a part of the data, without letting a
    /// writer in between (see [`RwLockWriteGuard::downgrade`]).
    pub fn downgrade_map<F, U: ?Sized>(this: Self, f: F) -> RwLockReadGuard<'a, U>
    where
        F: FnOnce(&T) -> &U,
    {
        let RwLockWriteGuard { held, inner } = this;
        let inner = tokio::sync::RwLockWriteGuard::downgrade_map(inner, f);
        held.downgrade();
        RwLockReadGuard { held, inner }
    }

    /// As [`RwLockWriteGuard::map`], but `f` may decline, giving the guard
    /// back.
    pub fn try_map<F, U: ?Sized>(this: Self, f: F) -> Result<RwLockMappedWriteGuard<'a, U>, Self>
    where
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let RwLockWriteGuard { held, inner } = this;
        match tokio::sync::RwLockWriteGuard::try_map(inner, f) {
            Ok(inner) => Ok(RwLockMappedWriteGuard { held, inner }),
            Err(inner) => Err(RwLockWriteGuard { held, inner }),
        }
    }

    /// As [`RwLockWriteGuard::downgrade_map`], but `f` may decline, giving
    /// the write guard back (still writing).
    pub fn try_downgrade_map<F, U: ?Sized>(this: Self, f: F) -> Result<RwLockReadGuard<'a, U>, Self>
    where
        F: FnOnce(&T) -> Option<&U>,
    {
        let RwLockWriteGuard { held, inner } = this;
        match tokio::sync::RwLockWriteGuard::try_downgrade_map(inner, f) {
            Ok(inner) => {
                held.downgrade();
                Ok(RwLockReadGuard { held, inner })
            }
            Err(inner) => Err(RwLockWriteGuard { held, inner }),
        }
    }

    /// This guard as a mapped guard for all of the data.
    pub fn into_mapped(this: Self) -> RwLockMappedWriteGuard<'a, T> {
        RwLockWriteGuard::map(this, |data| data)
    }

    /// Turns the write lock into a read lock without letting a writer in
    /// between. The lock stays held (now for reading); no new dependency.
    pub fn downgrade(self) -> RwLockReadGuard<'a, T> {
        let RwLockWriteGuard { held, inner } = self;
        held.downgrade();
        RwLockReadGuard {
            held,
            inner: inner.downgrade(),
        }
    }
}

impl<'a, T: ?Sized> RwLockMappedWriteGuard<'a, T> {
    /// A write guard for a part of this part; the lock stays held.
    pub fn map<F, U: ?Sized>(this: Self, f: F) -> RwLockMappedWriteGuard<'a, U>
    where
        F: FnOnce(&mut T) -> &mut U,
    {
        let RwLockMappedWriteGuard { held, inner } = this;
        RwLockMappedWriteGuard {
            held,
            inner: tokio::sync::RwLockMappedWriteGuard::map(inner, f),
        }
    }

    /// As [`RwLockMappedWriteGuard::map`], but `f` may decline, giving the
    /// guard back.
    pub fn try_map<F, U: ?Sized>(this: Self, f: F) -> Result<RwLockMappedWriteGuard<'a, U>, Self>
    where
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let RwLockMappedWriteGuard { held, inner } = this;
        match tokio::sync::RwLockMappedWriteGuard::try_map(inner, f) {
            Ok(inner) => Ok(RwLockMappedWriteGuard { held, inner }),
            Err(inner) => Err(RwLockMappedWriteGuard { held, inner }),
        }
    }
}

impl<T: ?Sized, U: ?Sized> OwnedRwLockReadGuard<T, U> {
    /// An owned read guard for a part of the data; the lock stays held.
    pub fn map<F, V: ?Sized>(this: Self, f: F) -> OwnedRwLockReadGuard<T, V>
    where
        F: FnOnce(&U) -> &V,
    {
        let data: *const V = f(&*this);
        let parts = this.parts;
        OwnedRwLockReadGuard { data, parts }
    }

    /// As [`OwnedRwLockReadGuard::map`], but `f` may decline, giving the
    /// guard back.
    pub fn try_map<F, V: ?Sized>(this: Self, f: F) -> Result<OwnedRwLockReadGuard<T, V>, Self>
    where
        F: FnOnce(&U) -> Option<&V>,
    {
        let Some(data) = f(&*this).map(ptr::from_ref) else {
            return Err(this);
        };
        let parts = this.parts;
        Ok(OwnedRwLockReadGuard { data, parts })
    }

    /// The lock this guard holds, as tokio's `OwnedRwLockReadGuard::rwlock`.
    pub fn rwlock(this: &Self) -> &Arc<RwLock<T>> {
        &this.parts.lock
    }
}

impl<T: ?Sized> OwnedRwLockWriteGuard<T> {
    /// An owned write guard for a part of the data; the lock stays held.
    pub fn map<F, U: ?Sized>(mut this: Self, f: F) -> OwnedRwLockMappedWriteGuard<T, U>
    where
        F: FnOnce(&mut T) -> &mut U,
    {
        let data: *mut U = f(&mut *this);
        let parts = this.parts;
        OwnedRwLockMappedWriteGuard { data, parts }
    }

    /// Downgrades to an owned read guard for a part of the data, without
    /// letting a writer in between (see [`RwLockWriteGuard::downgrade`]).
    pub fn downgrade_map<F, U: ?Sized>(this: Self, f: F) -> OwnedRwLockReadGuard<T, U>
    where
        F: FnOnce(&T) -> &U,
    {
        let data: *const U = f(&*this);
        // SAFETY: the parts of an owned write guard (`write_owned`).
        let parts = unsafe { downgrade_parts(this.parts) };
        OwnedRwLockReadGuard { data, parts }
    }

    /// As [`OwnedRwLockWriteGuard::map`], but `f` may decline, giving the
    /// guard back.
    pub fn try_map<F, U: ?Sized>(
        mut this: Self,
        f: F,
    ) -> Result<OwnedRwLockMappedWriteGuard<T, U>, Self>
    where
        F: FnOnce(&mut T) -> Option<&mut U>,
    {
        let Some(data) = f(&mut *this).map(ptr::from_mut) else {
            return Err(this);
        };
        let parts = this.parts;
        Ok(OwnedRwLockMappedWriteGuard { data, parts })
    }

    /// As [`OwnedRwLockWriteGuard::downgrade_map`], but `f` may decline,
    /// giving the write guard back (still writing).
    pub fn try_downgrade_map<F, U: ?Sized>(
        this: Self,
        f: F,
    ) -> Result<OwnedRwLockReadGuard<T, U>, Self>
    where
        F: FnOnce(&T) -> Option<&U>,
    {
        let Some(data) = f(&*this).map(ptr::from_ref) else {
            return Err(this);
        };
        // SAFETY: as in `downgrade_map`.
        let parts = unsafe { downgrade_parts(this.parts) };
        Ok(OwnedRwLockReadGuard { data, parts })
    }

    /// This guard as a mapped guard for all of the data.
    pub fn into_mapped(this: Self) -> OwnedRwLockMappedWriteGuard<T> {
        OwnedRwLockWriteGuard::map(this, |data| data)
    }

    /// Turns the owned write lock into an owned read lock; see
    /// [`RwLockWriteGuard::downgrade`].
    pub fn downgrade(self) -> OwnedRwLockReadGuard<T> {
        let OwnedRwLockWriteGuard { data, parts } = self;
        // SAFETY: as in `downgrade_map`.
        let parts = unsafe { downgrade_parts(parts) };
        OwnedRwLockReadGuard { data, parts }
    }

    /// The lock this guard holds, as tokio's `OwnedRwLockWriteGuard::rwlock`.
    pub fn rwlock(this: &Self) -> &Arc<RwLock<T>> {
        &this.parts.lock
    }
}

impl<T: ?Sized, U: ?Sized> OwnedRwLockMappedWriteGuard<T, U> {
    /// An owned write guard for a part of this part; the lock stays held.
    pub fn map<F, V: ?Sized>(mut this: Self, f: F) -> OwnedRwLockMappedWriteGuard<T, V>
    where
        F: FnOnce(&mut U) -> &mut V,
    {
        let data: *mut V = f(&mut *this);
        let parts = this.parts;
        OwnedRwLockMappedWriteGuard { data, parts }
    }

    /// As [`OwnedRwLockMappedWriteGuard::map`], but `f` may decline, giving
    /// the guard back.
    pub fn try_map<F, V: ?Sized>(
        mut this: Self,
        f: F,
    ) -> Result<OwnedRwLockMappedWriteGuard<T, V>, Self>
    where
        F: FnOnce(&mut U) -> Option<&mut V>,
    {
        let Some(data) = f(&mut *this).map(ptr::from_mut) else {
            return Err(this);
        };
        let parts = this.parts;
        Ok(OwnedRwLockMappedWriteGuard { data, parts })
    }

    /// The lock this guard holds, as tokio's
    /// `OwnedRwLockMappedWriteGuard::rwlock`.
    pub fn rwlock(this: &Self) -> &Arc<RwLock<T>> {
        &this.parts.lock
    }
}

deref_inner!(
    ref ['a, T: ?Sized] RwLockReadGuard<'a, T> => T,
    mut ['a, T: ?Sized] RwLockWriteGuard<'a, T> => T,
    mut ['a, T: ?Sized] RwLockMappedWriteGuard<'a, T> => T,
);
deref_data!(
    ref [T: ?Sized, U: ?Sized] OwnedRwLockReadGuard<T, U> => U,
    mut [T: ?Sized] OwnedRwLockWriteGuard<T> => T,
    mut [T: ?Sized, U: ?Sized] OwnedRwLockMappedWriteGuard<T, U> => U,
);
fmt_via_deref!(
    ['a, T: ?Sized] RwLockReadGuard<'a, T> => T,
    ['a, T: ?Sized] RwLockWriteGuard<'a, T> => T,
    ['a, T: ?Sized] RwLockMappedWriteGuard<'a, T> => T,
    [T: ?Sized, U: ?Sized] OwnedRwLockReadGuard<T, U> => U,
    [T: ?Sized] OwnedRwLockWriteGuard<T> => T,
    [T: ?Sized, U: ?Sized] OwnedRwLockMappedWriteGuard<T, U> => U,
);
