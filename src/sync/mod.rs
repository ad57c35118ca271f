//! A drop-in for `tokio::sync`: the same items, under the same names, with
//! the locks reporting to the detector.
//!
//! ```
//! // Was: use tokio::sync::{mpsc, oneshot, Mutex, Notify, RwLock, Semaphore};
//! use async_lockdep::sync::{mpsc, oneshot, Mutex, Notify, RwLock, Semaphore};
//! ```
//!
//! - Wrapped, so that the detector sees them: [`Mutex`], [`RwLock`] and
//!   [`Semaphore`] with all their guards and permits (mapped, owned, owned
//!   and mapped, split and merged), the channels of [`mpsc`] (bounded and
//!   unbounded), and the events: [`oneshot`], [`Notify`] (and its
//!   [`futures`]), [`Barrier`], [`watch`]. Their methods, associated items,
//!   trait impls and `Send`/`Sync` are tokio's; the wrappers add the
//!   `with_class` constructors and the `*_nested` methods.
//! - tokio's own, re-exported unchanged (the detector does not see them):
//!   [`OnceCell`], [`SetOnce`], [`broadcast`], and the error types
//!   ([`TryLockError`], [`AcquireError`], [`TryAcquireError`], [`SetError`],
//!   [`SetOnceError`]).
//!
//! The wrappers are also at the crate root (`async_lockdep::Mutex`).

// Layout: `mutex.rs`, `rwlock.rs` and `semaphore.rs` hold the wrappers and
// their guards, `mpsc.rs` the channel; each goes through the same detector
// path (`acquiring::Acquiring`, `hooks::acquire_blocking`,
// `hooks::acquired_without_waiting`, and `hooks::Holding` for the release):
// none keeps its own bookkeeping. Below: the trait impls the guards share,
// and how owned guards keep tokio's guard next to the `Arc` of their lock.

/// `Deref` (and `DerefMut` for the `mut` entries) for guards wrapping one
/// of tokio's guards in `inner`; each guard comes with its generic
/// parameters in brackets.
macro_rules! deref_inner {
    ($($kind:ident [$($generics:tt)*] $guard:ty => $target:ident),* $(,)?) => {$(
        impl<$($generics)*> std::ops::Deref for $guard {
            type Target = $target;
            fn deref(&self) -> &$target {
                &self.inner
            }
        }
        deref_inner!(@mut $kind [$($generics)*] $guard => $target);
    )*};
    (@mut ref [$($generics:tt)*] $guard:ty => $target:ident) => {};
    (@mut mut [$($generics:tt)*] $guard:ty => $target:ident) => {
        impl<$($generics)*> std::ops::DerefMut for $guard {
            fn deref_mut(&mut self) -> &mut $target {
                &mut self.inner
            }
        }
    };
}

/// `Deref` (and `DerefMut` for the `mut` entries) for owned guards, whose
/// `data` points into the lock that their `parts` hold.
macro_rules! deref_data {
    ($($kind:ident [$($generics:tt)*] $guard:ty => $target:ident),* $(,)?) => {$(
        impl<$($generics)*> std::ops::Deref for $guard {
            type Target = $target;
            fn deref(&self) -> &$target {
                // SAFETY: `data` points into the lock kept alive by
                // `parts.lock`, which `parts.guard` holds (shared or
                // exclusive as the guard's kind says) while `self` lives.
                unsafe { &*self.data }
            }
        }
        deref_data!(@mut $kind [$($generics)*] $guard => $target);
    )*};
    (@mut ref [$($generics:tt)*] $guard:ty => $target:ident) => {};
    (@mut mut [$($generics:tt)*] $guard:ty => $target:ident) => {
        impl<$($generics)*> std::ops::DerefMut for $guard {
            fn deref_mut(&mut self) -> &mut $target {
                // SAFETY: as in `deref`; the lock is held exclusively, and
                // `&mut self` makes this the only access through the guard.
                unsafe { &mut *self.data }
            }
        }
    };
}

/// `Debug` and `Display` of the guarded data, as tokio's guards have them.
macro_rules! fmt_via_deref {
    ($([$($generics:tt)*] $guard:ty => $target:ident),* $(,)?) => {$(
        impl<$($generics)*> std::fmt::Debug for $guard
        where
            $target: std::fmt::Debug,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&**self, f)
            }
        }

        impl<$($generics)*> std::fmt::Display for $guard
        where
            $target: std::fmt::Display,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&**self, f)
            }
        }
    )*};
}

/// One of tokio's guards, kept by an owned guard next to the `Arc` that
/// keeps its lock alive, with its type erased: the owned guard's type names
/// neither the borrow's lifetime nor tokio's guard, so it needs no
/// `T: 'static` (as tokio's owned guards). The owned guard reaches the data
/// through a pointer of its own, taken from the guard before erasing it;
/// this value only releases the lock when dropped, or gives the guard back
/// for tokio's by-value methods (`downgrade`).
///
/// A guard of up to `SLOT_WORDS` words is stored in place (tokio's guards
/// are one to four); a larger one (tokio built with its `tracing`
/// instrumentation) in a box. The bytes live in a `MaybeUninit` (a union):
/// no reference inside is asserted valid while the owned guard is moved
/// around or dropped.
pub(crate) struct ErasedGuard {
    slot: Slot,
    /// Drops the guard of the type given to `new` in `slot`.
    drop_guard: unsafe fn(&mut Slot),
    /// The owned guards state their `Send` and `Sync` themselves, as tokio's.
    _not_send: PhantomData<*mut ()>,
}

const SLOT_WORDS: usize = 4;

type Slot = MaybeUninit<[usize; SLOT_WORDS]>;

/// Whether a `G` is stored in place rather than boxed; its layout does not
/// depend on lifetimes, so `new` and `take` agree.
const fn inline<G>() -> bool {
    std::mem::size_of::<G>() <= std::mem::size_of::<Slot>()
        && std::mem::align_of::<G>() <= std::mem::align_of::<Slot>()
}

impl ErasedGuard {
    /// Erases `guard`'s type.
    ///
    /// # Safety
    ///
    /// The lock that `guard` borrows must outlive the result: owned guards
    /// keep it in a field declared after this one (so dropped later), in an
    /// `Arc` they hold until then.
    pub(crate) unsafe fn new<G>(guard: G) -> ErasedGuard {
        let mut slot = Slot::uninit();
        if inline::<G>() {
            // SAFETY: `inline` checked that a `G` fits in the slot and that
            // the slot is aligned enough for it.
            unsafe { slot.as_mut_ptr().cast::<G>().write(guard) };
        } else {
            let boxed = Box::into_raw(Box::new(guard));
            // SAFETY: a thin pointer fits in a slot of words, aligned.
            unsafe { slot.as_mut_ptr().cast::<*mut G>().write(boxed) };
        }
        ErasedGuard {
            slot,
            drop_guard: drop_slot::<G>,
            _not_send: PhantomData,
        }
    }

    /// Gives the guard back, without releasing the lock.
    ///
    /// # Safety
    ///
    /// `G` must be the type given to [`ErasedGuard::new`], up to lifetimes,
    /// and the lock must outlive the lifetimes chosen (the caller keeps the
    /// `Arc` alive while it has the guard).
    pub(crate) unsafe fn take<G>(self) -> G {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the caller's promise; `ManuallyDrop` skips our `Drop`, so
        // the guard is read out once.
        unsafe { read_slot::<G>(&mut this.slot) }
    }
}

/// Reads the guard out of `slot`.
///
/// # Safety
///
/// `slot` holds a `G` (up to lifetimes) put there by `ErasedGuard::new`,
/// not read since.
unsafe fn read_slot<G>(slot: &mut Slot) -> G {
    if inline::<G>() {
        // SAFETY: the slot holds a `G` in place (the caller's promise).
        unsafe { slot.as_ptr().cast::<G>().read() }
    } else {
        // SAFETY: the slot holds the pointer from `Box::into_raw`.
        unsafe { *Box::from_raw(slot.as_ptr().cast::<*mut G>().read()) }
    }
}

/// Drops the `G` in `slot`: `ErasedGuard::drop_guard`.
///
/// # Safety
///
/// As [`read_slot`].
unsafe fn drop_slot<G>(slot: &mut Slot) {
    // SAFETY: forwarded.
    drop(unsafe { read_slot::<G>(slot) });
}

impl Drop for ErasedGuard {
    fn drop(&mut self) {
        // SAFETY: `drop_guard` was made for the guard in the slot by `new`,
        // which is read out once: `take` skips this.
        unsafe { (self.drop_guard)(&mut self.slot) }
    }
}

/// The detector's record of a guard's hold (none if detection was off),
/// released when the guard is dropped. The check for none is inline, so a
/// guard taken with detection off costs nothing more to drop than tokio's;
/// the release is out of line. Without the `detect` feature it is empty.
#[cfg(feature = "detect")]
pub(crate) struct Held(ManuallyDrop<Option<Holding>>);

/// The wrapper a guard was made from, for accessors such as
/// `MutexGuard::mutex`. Without the `detect` feature it is empty: the
/// wrappers are transparent, and the accessor finds the wrapper through
/// tokio's guard.
#[cfg(feature = "detect")]
pub(crate) struct Origin<'a, L: ?Sized>(&'a L);

/// The wrapper a guard was made from: nothing kept, compiled out.
#[cfg(not(feature = "detect"))]
pub(crate) struct Origin<'a, L: ?Sized>(std::marker::PhantomData<&'a L>);

impl<L: ?Sized> Clone for Origin<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L: ?Sized> Copy for Origin<'_, L> {}

impl<'a, L: ?Sized> Origin<'a, L> {
    #[inline(always)]
    pub(crate) fn new(lock: &'a L) -> Origin<'a, L> {
        #[cfg(feature = "detect")]
        return Origin(lock);
        #[cfg(not(feature = "detect"))]
        {
            let _ = lock;
            Origin(std::marker::PhantomData)
        }
    }

    /// The wrapper.
    #[cfg(feature = "detect")]
    #[inline(always)]
    pub(crate) fn get(&self) -> &'a L {
        self.0
    }
}

/// The detector's record of a guard's hold: nothing, compiled out.
#[cfg(not(feature = "detect"))]
pub(crate) struct Held;

impl Held {
    #[inline]
    pub(crate) fn new(held: Option<Holding>) -> Held {
        #[cfg(feature = "detect")]
        return Held(ManuallyDrop::new(held));
        #[cfg(not(feature = "detect"))]
        {
            // Always `None` (nothing is recorded): forgotten rather than
            // dropped, so that no drop glue of `Holding` stays in the
            // caller to keep it from being inlined.
            debug_assert!(held.is_none(), "nothing is recorded without `detect`");
            std::mem::forget(held);
            Held
        }
    }

    /// Whether something is recorded as held.
    #[inline]
    pub(crate) fn holds(&self) -> bool {
        #[cfg(feature = "detect")]
        return self.0.is_some();
        #[cfg(not(feature = "detect"))]
        false
    }

    /// The lock is now held for reading (an `RwLock` write guard
    /// downgraded): the same hold, no new dependency.
    pub(crate) fn downgrade(&self) {
        #[cfg(feature = "detect")]
        if let Some(held) = &*self.0 {
            held.downgrade();
        }
    }
}

#[cfg(feature = "detect")]
impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            release(&mut self.0);
        }
    }
}

/// Drops the record in `held`, which records the release.
#[cfg(feature = "detect")]
#[inline(never)]
fn release(held: &mut ManuallyDrop<Option<Holding>>) {
    // SAFETY: called once, by `Held::drop`; the value is not used after.
    unsafe { ManuallyDrop::drop(held) }
}

/// What an owned guard keeps besides the pointer to its data, in the order
/// they are dropped: the detector's record of the hold, tokio's guard of the
/// lock (type erased), and the `Arc` that keeps the lock alive. Mapping or
/// downgrading an owned guard moves it whole into the new guard.
pub(crate) struct OwnedParts<L: ?Sized> {
    pub(crate) held: Held,
    pub(crate) guard: ErasedGuard,
    pub(crate) lock: Arc<L>,
}

impl<L: ?Sized> OwnedParts<L> {
    /// The parts of an owned guard of `lock`, whose (erased) guard is `guard`.
    pub(crate) fn new(held: Option<Holding>, guard: ErasedGuard, lock: Arc<L>) -> Self {
        OwnedParts {
            held: Held::new(held),
            guard,
            lock,
        }
    }
}

/// Takes the pointer to the data out of tokio's guard `guard` (read-only),
/// then erases the guard.
///
/// # Safety
///
/// As [`ErasedGuard::new`]: the caller keeps the lock alive until the
/// result is dropped.
pub(crate) unsafe fn erase_ref<G: Deref>(guard: G) -> (*const G::Target, ErasedGuard) {
    let data: *const G::Target = &*guard;
    // SAFETY: forwarded to the caller.
    (data, unsafe { ErasedGuard::new(guard) })
}

/// As [`erase_ref`], for a guard that gives mutable access.
///
/// # Safety
///
/// As [`erase_ref`].
pub(crate) unsafe fn erase_mut<G: DerefMut>(mut guard: G) -> (*mut G::Target, ErasedGuard) {
    let data: *mut G::Target = &mut *guard;
    // SAFETY: forwarded to the caller.
    (data, unsafe { ErasedGuard::new(guard) })
}

// The owned guards' `Send`/`Sync` impls rely on the detector's record of a
// hold being sendable and shareable, as it is.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Holding>();
};

/// A permit of tokio's that borrows a semaphore kept alive by an `Arc`
/// stored next to it in an `OwnedSemaphorePermit`, with the borrow widened
/// to `'static` (a semaphore has no type parameter, so this needs no
/// erasing, unlike [`ErasedGuard`]).
///
/// It lives in a `MaybeUninit` (a union) so that no reference inside it is
/// asserted valid while the owned guard is moved around or dropped (the
/// "dangling reference in a by-value argument" rule of Rust's aliasing
/// model); it is dropped by hand, first.
pub(crate) struct Detached<G>(MaybeUninit<G>);

impl<G> Detached<G> {
    /// Widens `guard`'s borrow to `'static`.
    ///
    /// # Safety
    ///
    /// `G` must be `Short` with only lifetimes changed, and the result must
    /// be dropped before the lock it borrows can go away: the owned permit
    /// keeps it in a field declared before the `Arc` that owns the lock.
    pub(crate) unsafe fn new<Short>(guard: Short) -> Detached<G> {
        let guard = ManuallyDrop::new(guard);
        // SAFETY: the two types differ only in lifetimes (caller's promise),
        // so they have one layout; the original is never dropped, so the
        // guard is released once, through the copy.
        let widened = unsafe { std::mem::transmute_copy::<Short, G>(&*guard) };
        Detached(MaybeUninit::new(widened))
    }

    /// Wraps a guard derived from a detached one (a split permit), which
    /// borrows the same lock for `'static` already.
    pub(crate) fn wrap(guard: G) -> Detached<G> {
        Detached(MaybeUninit::new(guard))
    }

    /// Takes the guard out (for tokio's by-value methods: `forget`,
    /// `merge`); the caller keeps the `Arc` alive meanwhile.
    pub(crate) fn into_inner(self) -> G {
        let this = ManuallyDrop::new(self);
        // SAFETY: the value is initialized from construction until `drop`
        // or this call, which consumes `self` and skips its `Drop`.
        unsafe { this.0.assume_init_read() }
    }
}

impl<G> Deref for Detached<G> {
    type Target = G;
    fn deref(&self) -> &G {
        // SAFETY: initialized from construction until dropped or taken.
        unsafe { self.0.assume_init_ref() }
    }
}

impl<G> DerefMut for Detached<G> {
    fn deref_mut(&mut self) -> &mut G {
        // SAFETY: initialized from construction until dropped or taken.
        unsafe { self.0.assume_init_mut() }
    }
}

impl<G> Drop for Detached<G> {
    fn drop(&mut self) {
        // SAFETY: initialized, and dropped once: `into_inner` skips this.
        unsafe { self.0.assume_init_drop() }
    }
}

use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::lockdep::hooks::Holding;

mod acquiring;
mod barrier;
mod blocking;
pub mod mpsc;
mod mutex;
mod notify;
pub mod oneshot;
#[cfg(feature = "parking_lot")]
pub(crate) mod parkinglot;
mod rwlock;
mod semaphore;
pub(crate) mod stdsync;
pub mod watch;

pub use mutex::{
    MappedMutexGuard, Mutex, MutexGuard, OwnedMappedMutexGuard, OwnedMutexGuard, TryLockError,
};
pub use rwlock::{
    OwnedRwLockMappedWriteGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock,
    RwLockMappedWriteGuard, RwLockReadGuard, RwLockWriteGuard,
};
pub use semaphore::{
    AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, TryAcquireError,
};

pub use barrier::{Barrier, BarrierWaitResult};
pub use notify::Notify;
pub use tokio::sync::{broadcast, OnceCell, SetError, SetOnce, SetOnceError};

/// The named futures of [`Notify`], as `tokio::sync::futures`.
pub mod futures {
    pub use super::notify::{Notified, OwnedNotified};
}

/// Without the `detect` feature the wrappers and their borrowing guards are
/// tokio's types and nothing more: checked here, at compile time.
#[cfg(not(feature = "detect"))]
const _: () = {
    use std::mem::size_of;
    macro_rules! same_size {
        ($($ours:ty => $tokio:ty),* $(,)?) => {
            $(assert!(size_of::<$ours>() == size_of::<$tokio>(), stringify!($ours));)*
        };
    }
    same_size!(
        Mutex<u64> => tokio::sync::Mutex<u64>,
        MutexGuard<'static, u64> => tokio::sync::MutexGuard<'static, u64>,
        MappedMutexGuard<'static, u64> => tokio::sync::MappedMutexGuard<'static, u64>,
        RwLock<u64> => tokio::sync::RwLock<u64>,
        RwLockReadGuard<'static, u64> => tokio::sync::RwLockReadGuard<'static, u64>,
        RwLockWriteGuard<'static, u64> => tokio::sync::RwLockWriteGuard<'static, u64>,
        Semaphore => tokio::sync::Semaphore,
        mpsc::Sender<u64> => tokio::sync::mpsc::Sender<u64>,
        mpsc::Receiver<u64> => tokio::sync::mpsc::Receiver<u64>,
    );
};

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{inline, ErasedGuard};

    /// A stand-in for a guard of `N` words that borrows something.
    struct Guard<'a, const N: usize> {
        drops: &'a AtomicUsize,
        _words: [usize; N],
    }

    impl<const N: usize> Drop for Guard<'_, N> {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn guard<const N: usize>(drops: &AtomicUsize) -> Guard<'_, N> {
        Guard {
            drops,
            _words: [N; N],
        }
    }

    /// tokio's guards fit in place; with tokio's `tracing` instrumentation
    /// (`--cfg tokio_unstable`) they are boxed, a path checked here.
    #[test]
    fn erased_guards_in_place_and_boxed_are_dropped_or_taken_once() {
        assert!(inline::<Guard<'_, 3>>());
        assert!(!inline::<Guard<'_, 8>>());
        let drops = AtomicUsize::new(0);
        // SAFETY: `drops` outlives the erased guards, dropped in this scope.
        let erased = unsafe {
            [
                ErasedGuard::new(guard::<3>(&drops)),
                ErasedGuard::new(guard::<8>(&drops)),
            ]
        };
        let moved = erased; // moved around as owned guards are
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(moved);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        // SAFETY: as above; taken back as the type it was given as.
        let back: Guard<'_, 8> = unsafe { ErasedGuard::new(guard::<8>(&drops)).take() };
        // SAFETY: as above.
        let back_in_place: Guard<'_, 1> = unsafe { ErasedGuard::new(guard::<1>(&drops)).take() };
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        drop((back, back_in_place));
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    }
}
