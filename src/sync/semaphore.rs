//! `Semaphore`: `tokio::sync::Semaphore` that tells the detector what it does.

use std::fmt;

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use crate::lockdep::class::{self, ClassKind};
use crate::lockdep::hooks::{acquired_without_waiting, BlockingWait, Holding, LockMeta};
use crate::lockdep::{Acquire, Engine};
use crate::sync::acquiring::{track, Acquiring};
use crate::sync::Detached;
use crate::vocab::Access;

pub use tokio::sync::{AcquireError, TryAcquireError};

/// A counting semaphore, a drop-in for [`tokio::sync::Semaphore`] that
/// reports lock-order cycles through it.
///
/// A permit is treated as a held lock of the semaphore's class: waiting for
/// permits while holding a lock `L` records "L → semaphore", and taking a
/// lock while holding a permit records "semaphore → lock".
///
/// **What the detector assumes.** A semaphore with several permits blocks
/// only when all of them are taken, which the detector cannot know in
/// advance. It assumes they can be (the pessimistic, lockdep-like choice):
/// a cycle through a semaphore is reported, with a note saying so. Holding a
/// permit and asking the same semaphore for more is not reported, and
/// permits are left out of the live "stuck now" check.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limit = async_lockdep::Semaphore::new(2);
/// let permit = limit.acquire().await.unwrap();
/// assert_eq!(limit.available_permits(), 1);
/// drop(permit);
/// # }
/// ```
// Without the `detect` feature `meta` is empty and this is tokio's type.
#[cfg_attr(not(feature = "detect"), repr(transparent))]
pub struct Semaphore {
    meta: LockMeta,
    forgotten: Forgotten,
    inner: tokio::sync::Semaphore,
}

/// Permits borrowed from a [`Semaphore`], given back on drop.
///
/// For the detector, the semaphore is held while the permit lives. A permit
/// split with [`SemaphorePermit::split`] shares the record of its
/// acquisition with the part split off: the semaphore counts as held until
/// the last part is dropped. [`SemaphorePermit::merge`] keeps the record of
/// the permit merged into and releases the other's.
#[clippy::has_significant_drop]
#[must_use = "if unused the permits are given back at once"]
pub struct SemaphorePermit<'a> {
    held: PermitHold,
    inner: tokio::sync::SemaphorePermit<'a>,
    semaphore: &'a Semaphore,
}

/// Owned permits, from [`Semaphore::acquire_owned`]; can move between tasks.
/// Split and merged as [`SemaphorePermit`].
#[clippy::has_significant_drop]
#[must_use = "if unused the permits are given back at once"]
pub struct OwnedSemaphorePermit {
    held: PermitHold,
    // Borrows `semaphore`'s semaphore: declared (so dropped) before it.
    inner: Detached<tokio::sync::SemaphorePermit<'static>>,
    semaphore: Arc<Semaphore>,
}

/// The permits `forget()`-ed while detection was on, oldest first. A
/// forgotten permit is capacity still in use (a pool such as deadpool's
/// forgets the permit of an object it hands out and gives it back with
/// `add_permits` when the object returns): the detector keeps it held until
/// `add_permits` gives it back. Shared (made at the first forget) so that a
/// permit moved to another semaphore can be found from there (see
/// [`Forgotten::give_back`]).
#[cfg(feature = "detect")]
struct Forgotten(std::sync::OnceLock<Arc<ForgottenList>>);

#[cfg(feature = "detect")]
type ForgottenList = std::sync::Mutex<std::collections::VecDeque<ForgottenPermit>>;

/// Nothing to keep with the `detect` feature off.
#[cfg(not(feature = "detect"))]
struct Forgotten;

/// One forgotten permit: its record, its acquisition, and how many of its
/// permits are not given back yet.
#[cfg(feature = "detect")]
struct ForgottenPermit {
    held: PermitHold,
    key: crate::lockdep::held::HeldKey,
    permits: usize,
}

/// Most forgotten permits kept per semaphore: past it the oldest is let go
/// (a pool that never gives permits back costs bounded memory; a report
/// through the permit let go is missed, never a false one made).
#[cfg(feature = "detect")]
const MAX_FORGOTTEN: usize = 1024;

#[cfg(feature = "detect")]
thread_local! {
    /// The last permit forgotten on this thread, and the list keeping it,
    /// until the next `add_permits` on this thread.
    static LAST_FORGOTTEN: std::cell::RefCell<
        Option<(crate::lockdep::held::HeldKey, std::sync::Weak<ForgottenList>)>,
    > = const { std::cell::RefCell::new(None) };
}

#[cfg(feature = "detect")]
impl Forgotten {
    const fn new() -> Forgotten {
        Forgotten(std::sync::OnceLock::new())
    }

    /// `held`, of `permits` permits, was forgotten.
    fn push(&self, held: PermitHold, permits: usize) {
        let Some(key) = held.holding().map(|h| {
            h.forgotten();
            h.key()
        }) else {
            return; // taken while detection was off
        };
        let list = self.0.get_or_init(Arc::default);
        let dropped = {
            let mut list = crate::lockdep::lock_ignoring_poison(list);
            let dropped = (list.len() >= MAX_FORGOTTEN)
                .then(|| list.pop_front())
                .flatten();
            list.push_back(ForgottenPermit { held, key, permits });
            dropped
        };
        let _ = LAST_FORGOTTEN.try_with(|last| {
            *last.borrow_mut() = Some((key, Arc::downgrade(list)));
        });
        if let Some(dropped) = dropped {
            dropped.held.discard();
        }
    }

    /// `add_permits(n)`: gives back forgotten permits, `n` of them. The
    /// calling context's own come first, newest first (nested objects go
    /// back inner first); then the oldest of other contexts' (objects
    /// handed to other tasks). With none forgotten, the semaphore grows and
    /// nothing is released.
    ///
    /// Capacity moved between two semaphores (a bounded buffer's "empty"
    /// and "full", deadpool's unmanaged pool adding an object: a permit of
    /// one forgotten, then permits added to the other, by the same context
    /// with no other forget or `add_permits` on its thread in between) is
    /// not an object held: the permit forgotten last passes to the other
    /// semaphore and is let go (its provisional dependencies dropped).
    fn give_back(&self, mut n: usize) {
        let mine = self.0.get();
        if let Some((key, list)) = LAST_FORGOTTEN
            .try_with(|last| last.borrow_mut().take())
            .ok()
            .flatten()
        {
            let elsewhere =
                mine.map_or(true, |mine| !std::ptr::eq(list.as_ptr(), Arc::as_ptr(mine)));
            if elsewhere && key.context == crate::vocab::ContextId::current() {
                if let Some(list) = list.upgrade() {
                    let moved = {
                        let mut list = crate::lockdep::lock_ignoring_poison(&list);
                        let at = list.iter().rposition(|p| p.key == key);
                        at.and_then(|at| list.remove(at))
                    };
                    if let Some(moved) = moved {
                        moved.held.discard();
                    }
                }
            }
        }
        let Some(list) = mine else {
            return;
        };
        let released = {
            let mut list = crate::lockdep::lock_ignoring_poison(list);
            if list.is_empty() {
                return;
            }
            let me = crate::vocab::ContextId::current();
            let mut released = Vec::new();
            while n > 0 {
                let at = list.iter().rposition(|p| p.key.context == me).unwrap_or(0);
                let Some(permit) = list.get_mut(at) else {
                    break;
                };
                let given = n.min(permit.permits);
                permit.permits -= given;
                n -= given;
                if permit.permits == 0 {
                    released.extend(list.remove(at));
                }
            }
            released
        };
        // Released outside the list's lock: a release may publish a report.
        drop(released);
    }
}

#[cfg(feature = "detect")]
impl Drop for Forgotten {
    fn drop(&mut self) {
        let Some(list) = self.0.get() else {
            return;
        };
        let list = std::mem::take(&mut *crate::lockdep::lock_ignoring_poison(list));
        for permit in list {
            permit.held.discard();
        }
    }
}

#[cfg(not(feature = "detect"))]
impl Forgotten {
    const fn new() -> Forgotten {
        Forgotten
    }

    #[inline(always)]
    fn push(&self, _held: PermitHold, _permits: usize) {}

    #[inline(always)]
    fn give_back(&self, _n: usize) {}
}

/// The detector's record of a permit's acquisition. The parts of a split
/// permit share it (`Shared`): it is released when the last part is dropped.
enum PermitHold {
    /// Acquired while detection was off.
    Off,
    One(Holding),
    Shared(Arc<Holding>),
}

impl PermitHold {
    fn new(held: Option<Holding>) -> PermitHold {
        held.map_or(PermitHold::Off, PermitHold::One)
    }

    /// The record for a part split off this permit: the same one, shared.
    fn split(&mut self) -> PermitHold {
        match std::mem::replace(self, PermitHold::Off) {
            PermitHold::Off => PermitHold::Off,
            PermitHold::One(held) => {
                let shared = Arc::new(held);
                *self = PermitHold::Shared(Arc::clone(&shared));
                PermitHold::Shared(shared)
            }
            PermitHold::Shared(shared) => {
                *self = PermitHold::Shared(Arc::clone(&shared));
                PermitHold::Shared(shared)
            }
        }
    }

    /// The acquisition's record, if detection was on.
    #[cfg(feature = "detect")]
    fn holding(&self) -> Option<&Holding> {
        match self {
            PermitHold::Off => None,
            PermitHold::One(held) => Some(held),
            PermitHold::Shared(shared) => Some(shared),
        }
    }

    /// Released, dropping what was kept provisionally for it (see
    /// [`Holding::discard`]); a part still shared with a live permit stays.
    #[cfg(feature = "detect")]
    fn discard(self) {
        match self {
            PermitHold::Off => {}
            PermitHold::One(held) => held.discard(),
            PermitHold::Shared(shared) => {
                if let Ok(held) = Arc::try_unwrap(shared) {
                    held.discard();
                }
            }
        }
    }

    /// `other`'s permits join this permit: this record stays (the semaphore
    /// is still held through it), `other`'s is dropped, unless this permit
    /// has none.
    fn merge(&mut self, other: PermitHold) {
        if let PermitHold::Off = self {
            *self = other;
        }
    }
}

impl Semaphore {
    /// The most permits a semaphore can hold (tokio's limit).
    pub const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

    /// A semaphore with `permits` permits, whose class is the caller's location.
    ///
    /// # Panics
    ///
    /// As tokio's: if `permits` exceeds [`Semaphore::MAX_PERMITS`].
    #[track_caller]
    pub fn new(permits: usize) -> Semaphore {
        let class =
            class::for_site_typed(Location::caller(), ClassKind::Semaphore, Some("Semaphore"));
        Semaphore::from_parts(class, permits)
    }

    /// A semaphore with `permits` permits of the class `name`.
    ///
    /// # Panics
    ///
    /// As tokio's: if `permits` exceeds [`Semaphore::MAX_PERMITS`].
    #[track_caller]
    pub fn with_class(
        name: impl Into<std::borrow::Cow<'static, str>>,
        permits: usize,
    ) -> Semaphore {
        let class = class::named(name, ClassKind::Semaphore, Location::caller());
        Semaphore::from_parts(class, permits)
    }

    /// A semaphore usable in a `static`, as tokio's `const_new`. Its class is
    /// the caller's location, interned at first use.
    ///
    /// ```
    /// static LIMIT: async_lockdep::Semaphore = async_lockdep::Semaphore::const_new(8);
    /// ```
    #[track_caller]
    pub const fn const_new(permits: usize) -> Semaphore {
        Semaphore {
            meta: LockMeta::lazy(
                Location::caller(),
                ClassKind::Semaphore,
                std::any::type_name::<Semaphore>,
            ),
            forgotten: Forgotten::new(),
            inner: tokio::sync::Semaphore::const_new(permits),
        }
    }

    #[track_caller]
    fn from_parts(class: crate::vocab::ClassId, permits: usize) -> Semaphore {
        let _ours = crate::native::Ours::making();
        Semaphore {
            meta: LockMeta::new(class),
            forgotten: Forgotten::new(),
            inner: tokio::sync::Semaphore::new(permits),
        }
    }

    /// Permits available now.
    pub fn available_permits(&self) -> usize {
        self.inner.available_permits()
    }

    /// Adds `n` permits.
    ///
    /// For the detector, this gives back permits that were `forget()`-ed
    /// (a pool returning an object), `n` of them: the calling context's
    /// own first, newest first, then the oldest of other contexts'. With
    /// none forgotten, the semaphore just grows.
    ///
    /// # Panics
    ///
    /// As tokio's: if the total would exceed [`Semaphore::MAX_PERMITS`].
    pub fn add_permits(&self, n: usize) {
        self.inner.add_permits(n);
        self.forgotten.give_back(n);
    }

    /// Removes up to `n` available permits; returns how many were removed.
    pub fn forget_permits(&self, n: usize) -> usize {
        self.inner.forget_permits(n)
    }

    /// Closes the semaphore: pending and future `acquire`s fail.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether the semaphore is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Waits for one permit. Records "semaphore waited for while holding `H`"
    /// for every lock `H` held, before waiting.
    ///
    /// # Cancel safety
    ///
    /// As tokio's: dropping the future gives up the place in the queue and
    /// leaves nothing held.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        let site = Location::caller();
        self.acquire_as(track(&self.meta, |meta| want(meta, site)), 1)
    }

    /// Waits for `n` permits at once. See [`Semaphore::acquire`].
    #[track_caller]
    pub fn acquire_many(
        &self,
        n: u32,
    ) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        let site = Location::caller();
        self.acquire_as(track(&self.meta, |meta| want(meta, site)), n)
    }

    fn acquire_as(
        &self,
        track: Option<(&'static Engine, Acquire)>,
        n: u32,
    ) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        let start = move || self.inner.acquire_many(n);
        Acquiring::fallible(track, start, Result::is_ok, |inner, held| {
            inner.map(|inner| SemaphorePermit {
                held: PermitHold::new(held),
                inner,
                semaphore: self,
            })
        })
    }

    /// Takes one permit if available now; records no dependency.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_as(self.want(Location::caller()), 1)
    }

    /// Takes `n` permits if available now; records no dependency.
    #[track_caller]
    pub fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_as(self.want(Location::caller()), n)
    }

    fn try_acquire_as(
        &self,
        want: Acquire,
        n: u32,
    ) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        let inner = self.inner.try_acquire_many(n)?;
        let held = acquired_without_waiting(self.meta.engine(), want);
        Ok(SemaphorePermit {
            held: PermitHold::new(held),
            inner,
            semaphore: self,
        })
    }

    /// [`Semaphore::acquire`] with an owned permit.
    #[track_caller]
    pub fn acquire_owned(
        self: Arc<Self>,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> {
        let site = Location::caller();
        let track = track(&self.meta, |meta| want(meta, site).movable());
        self.acquire_owned_as(track, 1)
    }

    /// [`Semaphore::acquire_many`] with an owned permit.
    #[track_caller]
    pub fn acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> {
        let site = Location::caller();
        let track = track(&self.meta, |meta| want(meta, site).movable());
        self.acquire_owned_as(track, n)
    }

    async fn acquire_owned_as(
        self: Arc<Self>,
        track: Option<(&'static Engine, Acquire)>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        let SemaphorePermit { held, inner, .. } = self.acquire_as(track, n).await?;
        // SAFETY: as in `owned`.
        let inner = unsafe { Detached::new(inner) };
        Ok(OwnedSemaphorePermit {
            held,
            inner,
            semaphore: self,
        })
    }

    /// [`Semaphore::try_acquire`] with an owned permit.
    #[track_caller]
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        let want = self.want(Location::caller()).movable();
        self.owned(|semaphore| semaphore.try_acquire_as(want, 1))
    }

    /// [`Semaphore::try_acquire_many`] with an owned permit.
    #[track_caller]
    pub fn try_acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        let want = self.want(Location::caller()).movable();
        self.owned(|semaphore| semaphore.try_acquire_as(want, n))
    }

    /// Waits for one permit from synchronous code, blocking the thread.
    /// Records the same dependencies as [`Semaphore::acquire`].
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.blocking_acquire_as(self.want(Location::caller()), 1)
    }

    /// Waits for `n` permits from synchronous code, blocking the thread.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.blocking_acquire_as(self.want(Location::caller()), n)
    }

    #[track_caller]
    fn blocking_acquire_as(
        &self,
        want: Acquire,
        n: u32,
    ) -> Result<SemaphorePermit<'_>, AcquireError> {
        if let Some(engine) = self.meta.engine() {
            if self.inner.available_permits() >= n as usize {
                // Free now: taken without a wait in progress, whose live
                // check would count the permits held but not the free ones
                // (a thread holding one and taking a second is not stuck).
                // Taken by another thread in between, this blocks with its
                // dependencies recorded only once it got them (a hang in
                // that window is not reported before it hangs).
                let inner = self.inner.blocking_acquire_many(n)?;
                return Ok(SemaphorePermit {
                    held: PermitHold::One(Holding::lock_now(engine, want.blocking())),
                    inner,
                    semaphore: self,
                });
            }
        }
        let started = BlockingWait::start(self.meta.engine(), want);
        // Failed (closed): dropping `started` ends the wait, nothing held.
        let inner = self.inner.blocking_acquire_many(n)?;
        Ok(SemaphorePermit {
            held: PermitHold::new(started.acquired()),
            inner,
            semaphore: self,
        })
    }

    /// [`Semaphore::blocking_acquire`] with an owned permit.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        let want = self.want(Location::caller()).movable();
        self.owned(|semaphore| semaphore.blocking_acquire_as(want, 1))
    }

    /// [`Semaphore::blocking_acquire_many`] with an owned permit.
    ///
    /// # Panics
    ///
    /// As tokio's: if called within an asynchronous execution context.
    #[track_caller]
    pub fn blocking_acquire_many_owned(
        self: Arc<Self>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        let want = self.want(Location::caller()).movable();
        self.owned(|semaphore| semaphore.blocking_acquire_as(want, n))
    }

    /// The owned permit of the permit that `acquire` takes from this
    /// semaphore.
    fn owned<E>(
        self: Arc<Self>,
        acquire: impl FnOnce(&Semaphore) -> Result<SemaphorePermit<'_>, E>,
    ) -> Result<OwnedSemaphorePermit, E> {
        let SemaphorePermit { held, inner, .. } = acquire(&self)?;
        // SAFETY: the permit borrows the semaphore inside the `Arc` the
        // owned permit keeps in `semaphore`, declared after `inner` (or a
        // semaphore that lives for good).
        let inner = unsafe { Detached::new(inner) };
        Ok(OwnedSemaphorePermit {
            held,
            inner,
            semaphore: self,
        })
    }

    fn want(&self, site: &'static Location<'static>) -> Acquire {
        want(&self.meta, site)
    }
}

/// A semaphore's acquisition at `site`.
fn want(meta: &LockMeta, site: &'static Location<'static>) -> Acquire {
    meta.want(Access::Permits, site)
}

impl fmt::Debug for Semaphore {
    /// As tokio's (the class is in reports, not here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<'a> SemaphorePermit<'a> {
    /// Keeps the permits out of the semaphore, as tokio's: they come back
    /// only through [`Semaphore::add_permits`].
    ///
    /// For the detector the permits are still in use (a pool forgets the
    /// permit of an object it hands out): the semaphore stays held, as
    /// through an owned permit that may move to another task, until
    /// `add_permits` gives them back (see [`Semaphore::add_permits`]).
    /// Dependencies recorded meanwhile count if the permit is given back in
    /// the context that took it; waiting for another permit meanwhile can be
    /// reported as pool exhaustion.
    pub fn forget(self) {
        let SemaphorePermit {
            held,
            inner,
            semaphore,
        } = self;
        semaphore.forgotten.push(held, inner.num_permits());
        inner.forget();
    }

    /// Moves `other`'s permits into this permit. The detector keeps this
    /// permit's record of holding the semaphore and releases `other`'s.
    ///
    /// # Panics
    ///
    /// As tokio's: if the permits come from different semaphores, or if the
    /// number of permits overflows.
    #[track_caller]
    pub fn merge(&mut self, other: Self) {
        assert!(
            std::ptr::eq(self.semaphore, other.semaphore),
            "merging permits from different semaphore instances"
        );
        let SemaphorePermit { held, inner, .. } = other;
        self.inner.merge(inner);
        self.held.merge(held);
    }

    /// Splits `n` permits off this one, or returns `None` if it has fewer.
    /// Both parts share the detector's record: the semaphore counts as held
    /// until the last part is dropped.
    pub fn split(&mut self, n: usize) -> Option<Self> {
        let inner = self.inner.split(n)?;
        Some(SemaphorePermit {
            held: self.held.split(),
            inner,
            semaphore: self.semaphore,
        })
    }

    /// The semaphore the permits come from.
    pub fn semaphore(&self) -> &Semaphore {
        self.semaphore
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.inner.num_permits()
    }
}

impl OwnedSemaphorePermit {
    /// As [`SemaphorePermit::forget`].
    pub fn forget(self) {
        let OwnedSemaphorePermit {
            semaphore,
            inner,
            held,
        } = self;
        let inner = inner.into_inner();
        semaphore.forgotten.push(held, inner.num_permits());
        inner.forget();
        drop(semaphore);
    }

    /// As [`SemaphorePermit::merge`].
    ///
    /// # Panics
    ///
    /// As tokio's: if the permits come from different semaphores, or if the
    /// number of permits overflows.
    #[track_caller]
    pub fn merge(&mut self, other: Self) {
        assert!(
            Arc::ptr_eq(&self.semaphore, &other.semaphore),
            "merging permits from different semaphore instances"
        );
        // Bound in this order so that the `Arc` outlives the permit, which
        // tokio drops if it panics.
        let OwnedSemaphorePermit {
            semaphore,
            inner,
            held,
        } = other;
        self.inner.merge(inner.into_inner());
        self.held.merge(held);
        drop(semaphore);
    }

    /// As [`SemaphorePermit::split`].
    pub fn split(&mut self, n: usize) -> Option<Self> {
        let inner = self.inner.split(n)?;
        Some(OwnedSemaphorePermit {
            held: self.held.split(),
            // Borrows the same semaphore, kept alive by its own `Arc` too.
            inner: Detached::wrap(inner),
            semaphore: Arc::clone(&self.semaphore),
        })
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.inner.num_permits()
    }

    /// The semaphore the permits come from.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.num_permits())
            .finish()
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .field("permits", &self.num_permits())
            .finish()
    }
}

#[cfg(all(test, feature = "detect"))]
mod tests {
    use super::*;

    /// Permits forgotten for good cost bounded memory: past
    /// `MAX_FORGOTTEN`, the oldest are let go.
    #[test]
    fn forgotten_permits_kept_per_semaphore_are_bounded() {
        crate::lockdep::enable();
        let semaphore = Semaphore::with_class("unit-forgotten-bound", MAX_FORGOTTEN + 100);
        for _ in 0..MAX_FORGOTTEN + 100 {
            semaphore.try_acquire().unwrap().forget();
        }
        let list = semaphore.forgotten.0.get().unwrap();
        let kept = crate::lockdep::lock_ignoring_poison(list).len();
        assert_eq!(kept, MAX_FORGOTTEN);
        semaphore.add_permits(MAX_FORGOTTEN + 100);
        let list = semaphore.forgotten.0.get().unwrap();
        let kept = crate::lockdep::lock_ignoring_poison(list).len();
        assert_eq!(kept, 0, "all given back");
        assert_eq!(semaphore.available_permits(), MAX_FORGOTTEN + 100);
    }

    /// A permit forgotten for good (a semaphore shrunk with `forget`) keeps
    /// the semaphore held by its context: what that context locks after is
    /// provisional, each dependency kept once, however often it is taken.
    #[test]
    fn dependencies_after_a_permit_forgotten_for_good_are_kept_once() {
        crate::lockdep::enable();
        let semaphore = Semaphore::with_class("unit-forgotten-shrunk", 2);
        let lock = crate::sync::Mutex::with_class("unit-forgotten-shrunk-lock", ());
        semaphore.try_acquire().unwrap().forget();
        for _ in 0..1000 {
            drop(lock.blocking_lock());
        }
        let list = semaphore.forgotten.0.get().unwrap();
        let key = crate::lockdep::lock_ignoring_poison(list)[0].key;
        let kept = crate::lockdep::engine().unwrap().provisional_count(key);
        assert_eq!(kept, 1, "semaphore -> lock, once");
    }
}
