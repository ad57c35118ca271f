//! parking_lot's blocking locks, re-exported as `async_lockdep::parkinglot`
//! (see the docs there): one primitive per file, both going through
//! `sync::blocking`, the seam's blocking and `try_*` verbs.

mod mutex;
mod rwlock;

pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Without the `detect` feature the locks and their guards are
/// parking_lot's types and nothing more: checked here, at compile time.
#[cfg(not(feature = "detect"))]
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<Mutex<u64>>() == size_of::<parking_lot::Mutex<u64>>());
    assert!(
        size_of::<MutexGuard<'static, u64>>() == size_of::<parking_lot::MutexGuard<'static, u64>>()
    );
    assert!(size_of::<RwLock<u64>>() == size_of::<parking_lot::RwLock<u64>>());
    assert!(
        size_of::<RwLockReadGuard<'static, u64>>()
            == size_of::<parking_lot::RwLockReadGuard<'static, u64>>()
    );
    assert!(
        size_of::<RwLockWriteGuard<'static, u64>>()
            == size_of::<parking_lot::RwLockWriteGuard<'static, u64>>()
    );
};
