//! Lock wrappers. Each mirrors its tokio counterpart and goes through the same
//! detector path (`acquiring::Acquiring`, `state::acquire_blocking`,
//! `state::acquired_without_waiting`, and `state::Holding` for the release):
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

/// Turns a guard that borrows a lock into the same guard type borrowing it
/// for `'static`, for the owned guards, which keep the lock alive in an `Arc`.
///
/// # Safety
///
/// `Long` must be `Short` with only lifetimes changed, and the caller must
/// drop the result before the lock it borrows can go away: the owned guards
/// keep it in a field declared before the `Arc` that owns the lock.
unsafe fn detach<Short, Long>(guard: Short) -> Long {
    let guard = std::mem::ManuallyDrop::new(guard);
    // SAFETY: the two types differ only in lifetimes, so they have one
    // layout; the original is never dropped, so the guard is released once,
    // through the copy.
    unsafe { std::mem::transmute_copy::<Short, Long>(&*guard) }
}

mod acquiring;
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
