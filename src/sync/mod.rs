//! Lock wrappers. Each mirrors its tokio counterpart and goes through the same
//! detector path (`acquiring::Acquiring`, `state::acquire_blocking`,
//! `state::acquired_without_waiting`, and `state::Holding` for the release):
//! none keeps its own bookkeeping.
//!
//! - `mutex.rs`: [`Mutex`] and its guards.
//! - `rwlock.rs`: [`RwLock`] and its guards.
//! - `semaphore.rs`: [`Semaphore`] and its permits.

/// `Deref`, `Debug` and `Display` for guards whose `inner` derefs to `T`.
macro_rules! read_guard_impls {
    ($($guard:ident $(<$lt:lifetime>)?),*) => {$(
        impl<$($lt,)? T: ?Sized> std::ops::Deref for $guard<$($lt,)? T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.inner
            }
        }

        impl<$($lt,)? T: ?Sized + std::fmt::Debug> std::fmt::Debug for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&**self, f)
            }
        }

        impl<$($lt,)? T: ?Sized + std::fmt::Display> std::fmt::Display for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&**self, f)
            }
        }
    )*};
}

/// `DerefMut` for guards whose `inner` derefs mutably to `T`.
macro_rules! write_guard_impls {
    ($($guard:ident $(<$lt:lifetime>)?),*) => {$(
        impl<$($lt,)? T: ?Sized> std::ops::DerefMut for $guard<$($lt,)? T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.inner
            }
        }
    )*};
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
