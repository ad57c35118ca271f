//! Held locks per context (the hot path).
//!
//! Held locks live in a map keyed by context and split into shards, each
//! behind its own small mutex, so tasks on different threads rarely touch
//! the same cache line and no lock is global. A context that holds nothing
//! keeps at most an empty stack, and those are swept when a shard grows, so
//! memory follows the contexts that hold locks.

use std::hash::BuildHasher;
use std::panic::Location;
use std::sync::{Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use super::Acquire;
use crate::vocab::{Access, ContextId, LockRef};

/// Mixes `value` into `hash` (the chain key, as lockdep's `iterate_chain_key`).
#[inline]
pub(crate) fn mix(hash: u64, value: u64) -> u64 {
    rustc_hash::FxBuildHasher.hash_one((hash, value))
}

/// One lock held by a context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeldLock {
    pub(crate) lock: LockRef,
    pub(crate) access: Access,
    pub(crate) site: &'static Location<'static>,
    /// Where this lock instance was created.
    pub(crate) created: &'static Location<'static>,
    /// Held through an owned guard, which may have moved to another task:
    /// waiting for it again is then not a certain self-deadlock.
    pub(crate) movable: bool,
    /// Identifies this acquisition within its shard, for the release.
    pub(crate) token: u64,
    /// The span (serial) the lock was taken in, or 0: a hold of a span is
    /// seen only by code running inside that span.
    pub(crate) span: u64,
    /// Hash of the classes held up to and including this one.
    pub(crate) chain: u64,
}

/// Where a guard's acquisition is recorded, so the release finds it even when
/// the guard is dropped in another task or thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HeldKey {
    pub(crate) context: ContextId,
    pub(crate) token: u64,
}

impl HeldKey {
    /// The key of `held`, held by `context`.
    pub(crate) fn of(context: ContextId, held: &HeldLock) -> HeldKey {
        HeldKey {
            context,
            token: held.token,
        }
    }
}

/// The chain hash of `lock` acquired with `access` on top of `below`.
#[inline]
pub(crate) fn chain_after(below: u64, lock: LockRef, access: Access) -> u64 {
    mix(below, (u64::from(lock.class) << 8) | access as u64)
}

const SHARDS: usize = 64;

#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// Held locks of every context, sharded by context.
pub(crate) struct HeldLocks {
    shards: Box<[Padded]>,
}

impl Default for HeldLocks {
    fn default() -> Self {
        HeldLocks {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

impl HeldLocks {
    /// The shard holding `context`'s locks, locked.
    #[inline]
    pub(crate) fn shard(&self, context: ContextId) -> MutexGuard<'_, Shard> {
        let index = match context {
            ContextId::Task(id) => rustc_hash::FxBuildHasher.hash_one(id),
            ContextId::Thread(n) | ContextId::Scope(n) => n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ContextId::Process(pid) => u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let shard = &self.shards[(index >> 58) as usize % SHARDS].0;
        // Shard operations never panic midway, so a poisoned shard is intact.
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of contexts that hold at least one lock.
    pub(crate) fn live_contexts(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.0.lock()
                    .map_or(0, |s| s.map.values().filter(|v| !v.is_empty()).count())
            })
            .sum()
    }

    /// Snapshot of what `context` holds.
    pub(crate) fn snapshot_of(&self, context: ContextId) -> Vec<HeldLock> {
        self.shard(context).held(context).to_vec()
    }

    /// Every context holding the lock `instance`, with how it holds it.
    /// Visits every shard: for the wait-for check and the watchdog only.
    pub(crate) fn holders_of(&self, instance: u64) -> Vec<(ContextId, HeldLock)> {
        let mut holders = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (context, stack) in &shard.map {
                for held in stack.iter().filter(|h| h.lock.instance == instance) {
                    holders.push((*context, *held));
                }
            }
        }
        holders
    }
}

/// A part of the held-locks map.
pub(crate) struct Shard {
    map: FxHashMap<ContextId, Vec<HeldLock>>,
    /// Emptied stacks kept for reuse, so steady state allocates nothing.
    spare: Vec<Vec<HeldLock>>,
    next_token: u64,
    /// Map size at which entries of contexts holding nothing are dropped.
    sweep_at: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            map: FxHashMap::default(),
            spare: Vec::new(),
            next_token: 0,
            sweep_at: MIN_SWEEP_AT,
        }
    }
}

const MIN_SWEEP_AT: usize = 64;

const MAX_SPARE: usize = 32;

impl Shard {
    /// The last token handed out in this shard.
    #[inline]
    pub(crate) fn last_token(&self) -> u64 {
        self.next_token
    }

    /// The locks `context` holds, oldest first.
    #[inline]
    pub(crate) fn held(&self, context: ContextId) -> &[HeldLock] {
        self.map.get(&context).map_or(&[], Vec::as_slice)
    }

    /// Records that `context` now holds `lock`.
    #[inline]
    pub(crate) fn push(&mut self, context: ContextId, want: &Acquire) -> HeldKey {
        self.stack_of(context).push(want)
    }

    /// The stack of `context` (created empty if needed), to check and push
    /// onto with a single map look-up.
    #[inline]
    pub(crate) fn stack_of(&mut self, context: ContextId) -> StackRef<'_> {
        if self.map.len() >= self.sweep_at {
            self.sweep();
        }
        let Shard {
            map,
            spare,
            next_token,
            ..
        } = self;
        let held = map
            .entry(context)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        StackRef {
            context,
            held,
            next_token,
        }
    }

    /// Forgets the acquisition `key`; returns false if it was not recorded
    /// (released twice, or never acquired), which is ignored.
    #[inline]
    pub(crate) fn remove(&mut self, key: HeldKey) -> bool {
        let Some(stack) = self.map.get_mut(&key.context) else {
            return false;
        };
        if stack.last().is_some_and(|h| h.token == key.token) {
            stack.pop(); // released in order: nothing else changes
            return true;
        }
        let Some(pos) = stack.iter().rposition(|h| h.token == key.token) else {
            return false;
        };
        stack.remove(pos);
        // The emptied stack stays in the map (a task that locks again reuses
        // it without touching the map's layout); `sweep` drops empty stacks
        // when the map grows. Released out of order: chain hashes change.
        if pos < stack.len() {
            rechain(stack, pos);
        }
        true
    }

    /// Drops the entries of contexts that hold nothing (keeping a few emptied
    /// stacks for reuse), so memory follows the contexts that hold locks.
    #[cold]
    fn sweep(&mut self) {
        let spare = &mut self.spare;
        self.map.retain(|_, stack| {
            if !stack.is_empty() {
                return true;
            }
            if spare.len() < MAX_SPARE {
                spare.push(std::mem::take(stack));
            }
            false
        });
        self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP_AT);
    }

    /// The span `serial` closed: holds of `context` taken in it pass to its
    /// parent span (0: the context itself).
    pub(crate) fn pass_span(&mut self, context: ContextId, serial: u64, parent: u64) {
        if let Some(stack) = self.map.get_mut(&context) {
            for held in stack.iter_mut().filter(|h| h.span == serial) {
                held.span = parent;
            }
        }
    }

    /// Changes how `key` is held (an `RwLock` write guard downgraded).
    pub(crate) fn change_access(&mut self, key: HeldKey, access: Access) {
        let Some(stack) = self.map.get_mut(&key.context) else {
            return;
        };
        let Some(pos) = stack.iter().rposition(|h| h.token == key.token) else {
            return;
        };
        stack[pos].access = access;
        rechain(stack, pos);
    }
}

/// Recomputes the chain hashes of `stack[pos..]`.
fn rechain(stack: &mut [HeldLock], pos: usize) {
    let mut below = if pos == 0 { 0 } else { stack[pos - 1].chain };
    for held in &mut stack[pos..] {
        held.chain = chain_after(below, held.lock, held.access);
        below = held.chain;
    }
}

/// One context's stack of held locks, borrowed from its shard.
pub(crate) struct StackRef<'a> {
    context: ContextId,
    held: &'a mut Vec<HeldLock>,
    next_token: &'a mut u64,
}

impl StackRef<'_> {
    /// The locks held, oldest first.
    #[inline]
    pub(crate) fn held(&self) -> &[HeldLock] {
        self.held
    }

    /// Records that the context now holds `lock`.
    #[inline]
    pub(crate) fn push(self, want: &Acquire) -> HeldKey {
        *self.next_token = self.next_token.wrapping_add(1);
        let token = *self.next_token;
        let below = self.held.last().map_or(0, |h| h.chain);
        let chain = chain_after(below, want.lock, want.access);
        self.held.push(HeldLock {
            lock: want.lock,
            access: want.access,
            site: want.site,
            created: want.created,
            movable: want.movable,
            token,
            chain,
            span: super::context::current_span(),
        });
        HeldKey {
            context: self.context,
            token,
        }
    }
}
