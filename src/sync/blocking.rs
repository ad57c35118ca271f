//! The acquire paths the blocking locks (`stdsync`, `parkinglot`) share:
//! the seam's blocking and `try_*` verbs, with what is wanted built only
//! when detection is on, and a poisoned result carrying our guard.

use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

use crate::lockdep::hooks::{acquire_blocking, acquired_without_waiting, LockMeta};
use crate::sync::Held;
use crate::vocab::Access;

/// Blocks the thread in `wait` for the lock of `meta`, wanted as `access`
/// at `site`: the dependencies and the wait are recorded first, so a
/// deadlock is reported before the thread hangs. Detection off (or compiled
/// out): `wait()` and an empty record.
#[inline]
pub(crate) fn wait<G>(
    meta: &LockMeta,
    access: Access,
    site: &'static Location<'static>,
    wait: impl FnOnce() -> G,
) -> (G, Held) {
    match meta.engine() {
        None => (wait(), Held::new(None)),
        engine => {
            let (guard, held) = acquire_blocking(engine, meta.want(access, site), wait);
            (guard, Held::new(held))
        }
    }
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
