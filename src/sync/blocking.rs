//! The acquire paths the blocking locks (`stdsync`, `parkinglot`) share:
//! the seam's blocking and `try_*` verbs, with what is wanted built only
//! when detection is on, and a poisoned result carrying our guard.
//!
//! Each lock call (`lock`, `read`, `write`) writes its detection-off path
//! out by hand (the wrapped lock's call and an empty record) and calls
//! [`take_or_wait`] from an out-of-line `*_recorded` method: measured, this
//! is what lets the compiler inline the off path into the caller (callgrind,
//! std `Mutex` lock + unlock: 73 instructions through `take_or_wait` alone,
//! 46 so, std's own 27; `benches/events.rs`, `std_mutex`).

use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use crate::lockdep::hooks::{acquire_blocking, acquired_without_waiting, Holding, LockMeta};
use crate::sync::Held;
use crate::vocab::Access;

/// Blocks the thread in `wait` for the lock of `meta`, wanted as `access`
/// at `site`, trying `take` first: a lock that is free is taken without
/// registering a wait (the cheap path of an async `lock()` that did not
/// have to wait: its dependencies are still checked and recorded), and only
/// a lock that is held goes through the blocking wait, whose dependencies
/// and wait are recorded first, so a deadlock is reported before the thread
/// hangs. Detection off (or compiled out): `wait()` and an empty record.
#[inline]
pub(crate) fn take_or_wait<G>(
    meta: &LockMeta,
    access: Access,
    site: &'static Location<'static>,
    take: impl FnOnce() -> Option<G>,
    wait: impl FnOnce() -> G,
) -> (G, Held) {
    match meta.engine() {
        None => (wait_off(wait), Held::new(None)),
        Some(engine) => take_or_wait_recorded(engine, meta.want(access, site), take, wait),
    }
}

/// [`take_or_wait`] with detection on: out of line, so that the lock call
/// stays small enough to be inlined into the caller while detection is off.
#[inline(never)]
fn take_or_wait_recorded<G>(
    engine: &'static crate::lockdep::Engine,
    want: crate::lockdep::Acquire,
    take: impl FnOnce() -> Option<G>,
    wait: impl FnOnce() -> G,
) -> (G, Held) {
    match take() {
        Some(guard) => (guard, Held::new(Some(Holding::lock_now(engine, want)))),
        None => {
            let (guard, held) = acquire_blocking(Some(engine), want, wait);
            (guard, Held::new(held))
        }
    }
}

#[inline(always)]
fn wait_off<G>(wait: impl FnOnce() -> G) -> G {
    wait()
}

/// The record of a lock of `meta` taken as `access` at `site` without
/// waiting (`try_*`, parking_lot's `read_recursive`): held, no dependency.
#[inline]
pub(crate) fn taken(meta: &LockMeta, access: Access, site: &'static Location<'static>) -> Held {
    Held::new(match meta.engine() {
        None => None,
        engine => acquired_without_waiting(engine, meta.want(access, site)),
    })
}

/// std's `LockResult` of a guard `G` as one of our guard `O`: a poisoned
/// lock is held too, and its `PoisonError` carries our guard.
#[inline]
pub(crate) fn map_poison<G, O>(result: LockResult<G>, make: impl FnOnce(G) -> O) -> LockResult<O> {
    match result {
        Ok(guard) => Ok(make(guard)),
        Err(poisoned) => Err(PoisonError::new(make(poisoned.into_inner()))),
    }
}

/// As [`map_poison`], for `try_*`: `WouldBlock` stays as it is.
#[inline]
pub(crate) fn map_try<G, O>(
    result: TryLockResult<G>,
    make: impl FnOnce(G) -> O,
) -> TryLockResult<O> {
    match result {
        Ok(guard) => Ok(make(guard)),
        Err(TryLockError::Poisoned(poisoned)) => Err(TryLockError::Poisoned(PoisonError::new(
            make(poisoned.into_inner()),
        ))),
        Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
    }
}

/// std's `try_*` result as "taken now" (a poisoned lock is taken too), or
/// `None` when it would block.
#[inline]
pub(crate) fn taken_now<G>(result: TryLockResult<G>) -> Option<LockResult<G>> {
    match result {
        Ok(guard) => Some(Ok(guard)),
        Err(TryLockError::Poisoned(poisoned)) => Some(Err(poisoned)),
        Err(TryLockError::WouldBlock) => None,
    }
}
