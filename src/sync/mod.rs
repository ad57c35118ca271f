//! Lock wrappers. Each mirrors its tokio counterpart and goes through the same
//! detector path (`acquiring::Acquiring`, `hooks::acquire_blocking`,
//! `hooks::acquired_without_waiting`, and `hooks::Holding` for the release):
//! none keeps its own bookkeeping.
//!
//! - `mutex.rs`: [`Mutex`] and its guards.
//! - `rwlock.rs`: [`RwLock`] and its guards.
//! - `semaphore.rs`: [`Semaphore`] and its permits.

/// `Deref`, `Debug` and `Display` for guards whose `inner` derefs to `T`;
/// each guard comes with its generic parameters in brackets.
macro_rules! read_guard_impls {
    ($([$($generics:tt)*] $guard:ty),* $(,)?) => {$(
        impl<$($generics)*> std::ops::Deref for $guard {
            type Target = T;
            fn deref(&self) -> &T {
                &self.inner
            }
        }

        impl<$($generics)*> std::fmt::Debug for $guard
        where
            T: std::fmt::Debug,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&**self, f)
            }
        }

        impl<$($generics)*> std::fmt::Display for $guard
        where
            T: std::fmt::Display,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&**self, f)
            }
        }
    )*};
}

/// `DerefMut` for guards whose `inner` derefs mutably to `T`.
macro_rules! write_guard_impls {
    ($([$($generics:tt)*] $guard:ty),* $(,)?) => {$(
        impl<$($generics)*> std::ops::DerefMut for $guard {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.inner
            }
        }
    )*};
}

/// A guard of tokio's that borrows a lock kept alive by an `Arc` stored
/// next to it in an owned guard, with the borrow widened to `'static`.
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
    /// be dropped before the lock it borrows can go away: the owned guards
    /// keep it in a field declared before the `Arc` that owns the lock.
    pub(crate) unsafe fn new<Short>(guard: Short) -> Detached<G> {
        let guard = ManuallyDrop::new(guard);
        // SAFETY: the two types differ only in lifetimes (caller's promise),
        // so they have one layout; the original is never dropped, so the
        // guard is released once, through the copy.
        let widened = unsafe { std::mem::transmute_copy::<Short, G>(&*guard) };
        Detached(MaybeUninit::new(widened))
    }

    /// Wraps a guard derived from a detached one (a downgrade), which
    /// borrows the same lock for `'static` already.
    pub(crate) fn wrap(guard: G) -> Detached<G> {
        Detached(MaybeUninit::new(guard))
    }

    /// Takes the guard out (for tokio's by-value methods: `forget`,
    /// `downgrade`); the caller keeps the `Arc` alive meanwhile.
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

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, DerefMut};

mod acquiring;
pub mod mpsc;
mod mutex;
mod rwlock;
mod semaphore;

pub use mutex::{MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard, TryLockError};
pub use rwlock::{
    OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, RwLockMappedWriteGuard, RwLockReadGuard,
    RwLockWriteGuard,
};
pub use semaphore::{
    AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, TryAcquireError,
};
