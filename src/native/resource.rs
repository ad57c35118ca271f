//! One plain tokio lock as the engine sees it: its class and instance, the
//! holds its `state_update` events created (oldest first), and the
//! acquisitions (`runtime.resource.async_op` spans) in progress.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::lockdep::hooks::{acquired_without_waiting, Holding, Waiting};
use crate::lockdep::{lock_ignoring_poison, Acquire};
use crate::vocab::{unknown_site, Access, ContextId, LockRef, SiteRef};

/// Which tokio lock a resource is (its `concrete_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Mutex,
    RwLock,
    Semaphore,
}

/// A plain tokio `Mutex`, `RwLock` or `Semaphore`.
pub(super) struct Resource {
    pub(super) lock: LockRef,
    pub(super) kind: Kind,
    /// Oldest first: a release matches the releasing context's oldest hold,
    /// else the oldest hold of that access (the guard moved).
    holds: Mutex<VecDeque<NativeHold>>,
    /// Whether the engine remembers the test that made it (a report found
    /// on a thread of no test goes to that test).
    noted: bool,
}

impl Drop for Resource {
    fn drop(&mut self) {
        if self.noted {
            crate::lockdep::ENGINE.forget_creation(self.lock.instance);
        }
    }
}

struct NativeHold {
    context: ContextId,
    access: Access,
    /// Semaphore permits still held by this acquisition (1 for locks).
    permits: u32,
    _holding: Holding,
}

impl Resource {
    /// A lock made now, by the calling thread.
    pub(super) fn new(lock: LockRef, kind: Kind) -> Resource {
        let noted = crate::lockdep::engine().is_some_and(|e| e.note_creation(lock.instance));
        Resource {
            lock,
            kind,
            holds: Mutex::new(VecDeque::new()),
            noted,
        }
    }

    /// What an acquisition of this lock asks the engine for. Its line is
    /// unknown (tokio gives none: see [`super::site`]); its class knows
    /// where it was created.
    pub(super) fn want(&self, access: Access, movable: bool) -> Acquire {
        Acquire {
            lock: self.lock,
            access,
            site: unknown_site().into(),
            movable,
            blocking: false,
            created: unknown_site(),
        }
    }

    /// The calling context acquired `permits` of the lock, recorded by `holding`.
    pub(super) fn held(&self, access: Access, permits: u32, holding: Holding) {
        let hold = NativeHold {
            context: ContextId::current(),
            access,
            permits,
            _holding: holding,
        };
        lock_ignoring_poison(&self.holds).push_back(hold);
    }

    /// A `try_*` succeeded in the calling context: held, no dependency.
    pub(super) fn acquired_without_waiting(&self, access: Access, permits: u32) {
        let Some(engine) = crate::lockdep::engine() else {
            return;
        };
        let (want, _looked_up) = super::site::with_line(engine, self.want(access, false));
        if let Some(holding) = acquired_without_waiting(Some(engine), want) {
            self.held(access, permits, holding);
        }
    }

    /// The calling context released `permits` held as `access`.
    pub(super) fn released(&self, access: Access, mut permits: u32) {
        let context = ContextId::current();
        let mut ended = Vec::new();
        {
            let mut holds = lock_ignoring_poison(&self.holds);
            while permits > 0 {
                let mine = holds
                    .iter()
                    .position(|h| h.context == context && h.access == access);
                let Some(at) = mine.or_else(|| holds.iter().position(|h| h.access == access))
                else {
                    break; // nothing held (`add_permits`, the first `locked=false`)
                };
                let hold = &mut holds[at];
                if hold.permits > permits {
                    hold.permits -= permits;
                    break;
                }
                permits -= hold.permits;
                ended.extend(holds.remove(at));
            }
        }
        // Released with no lock of ours held: a report may be published.
        drop(ended);
    }
}

/// An acquisition in progress: a `runtime.resource.async_op` span of a
/// resource we follow.
pub(super) struct Op {
    pub(super) resource: Arc<Resource>,
    access: Access,
    movable: bool,
    /// Permits asked for (a semaphore's `acquire_many`), from the inner
    /// semaphore's `permits_requested`.
    permits: AtomicU32,
    state: Mutex<OpState>,
}

enum OpState {
    /// Not polled yet.
    Fresh,
    /// Polled and pending: the wait is recorded (at this site).
    Waiting(Waiting, SiteRef),
    /// Ready: the hold is the resource's.
    Done,
}

impl Op {
    pub(super) fn new(resource: Arc<Resource>, access: Access, movable: bool) -> Op {
        Op {
            resource,
            access,
            movable,
            permits: AtomicU32::new(1),
            state: Mutex::new(OpState::Fresh),
        }
    }

    pub(super) fn set_permits(&self, permits: u32) {
        self.permits.store(permits.max(1), Ordering::Relaxed);
    }

    /// A poll of the acquisition ended, `ready` or not, in the calling
    /// context. Pending the first time: the wait starts (dependencies
    /// first). Ready: the lock is held. Returns whether it became held now.
    pub(super) fn polled(&self, ready: bool) -> bool {
        let Some(engine) = crate::lockdep::engine() else {
            return false;
        };
        let want = self.resource.want(self.access, self.movable);
        let mut state = lock_ignoring_poison(&self.state);
        match (std::mem::replace(&mut *state, OpState::Done), ready) {
            (OpState::Fresh, false) => {
                drop(state);
                let (want, _looked_up) = super::site::with_line(engine, want);
                let waiting = Waiting::start(engine, want);
                *lock_ignoring_poison(&self.state) = OpState::Waiting(waiting, want.site);
                false
            }
            (OpState::Waiting(waiting, site), false) => {
                *state = OpState::Waiting(waiting, site);
                false
            }
            (OpState::Fresh, true) => {
                drop(state);
                let (want, _looked_up) = super::site::with_line(engine, want);
                let holding = Holding::lock_now(engine, want);
                self.resource
                    .held(self.access, self.permits.load(Ordering::Relaxed), holding);
                true
            }
            (OpState::Waiting(waiting, site), true) => {
                drop(state);
                if let Some(holding) = waiting.acquired(Acquire { site, ..want }) {
                    self.resource
                        .held(self.access, self.permits.load(Ordering::Relaxed), holding);
                }
                true
            }
            (OpState::Done, _) => false,
        }
    }
}
