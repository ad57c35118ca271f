//! Held locks per context (the hot path), as the kernel keeps them in the
//! task (`current->held_locks`).
//!
//! Each context has a record of its own, written by whoever polls the
//! context under the record's own spin lock; a thread caches the records of
//! the contexts that last locked there (32 slots), so a task taking a lock
//! again finds its record with a thread-local read and a compare, and a
//! guard points to its record (no reference count), so a release, wherever
//! it happens, goes straight to it. No map, reference count or lock shared
//! between contexts is touched on that path; the registry (sharded by
//! context) serves a context's first lock on a thread and the checks that
//! look at other contexts. Records nobody uses that hold nothing are swept
//! as the registry grows, so memory follows the contexts that hold locks.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use super::{describe_instance, Acquire, Engine};
use crate::report::Dependency;
use crate::vocab::{Access, ContextId, LockRef, SiteRef};

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
    pub(crate) site: SiteRef,
    /// Where this lock instance was created.
    pub(crate) created: &'static Location<'static>,
    /// Held through an owned guard, which may have moved to another task:
    /// waiting for it again is then not a certain self-deadlock.
    pub(crate) movable: bool,
    /// A permit `forget()`-ed: capacity in use until `add_permits` gives it
    /// back (also `movable`: the pooled object may have moved).
    pub(crate) forgotten: bool,
    /// A receiving section of a channel that a thread (a test body, a
    /// `block_on`) made and drains itself: it drives a service in lockstep,
    /// and its sends into bounded channels are not waits of the section.
    pub(crate) drives: bool,
    /// Identifies this acquisition within its context, for the release.
    pub(crate) token: u64,
    /// The span (serial) the lock was taken in, or 0: a hold of a span is
    /// seen only by code running inside that span.
    pub(crate) span: u64,
    /// Hash of the classes held up to and including this one.
    pub(crate) chain: u64,
}

/// One acquisition: its context and its token (tokens grow per context,
/// across its records too, so a key is never reused).
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

/// Whether a released hold was taken through an owned guard or permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Movable(pub(crate) bool);

/// A recorded acquisition: the record holding it (so the release goes
/// straight there, wherever the guard is dropped) and its token.
///
/// The record is reached through a pointer rather than an `Arc`, so that
/// taking and releasing a lock changes no reference count (two atomic
/// read-modify-writes fewer per lock + release). It stays valid: the
/// acquisition's entry stays in the record's stack until [`Engine::release`]
/// removes it, after which the hold is not used, and a record with entries
/// is never dropped (the registry keeps every record it made until a sweep
/// finds it unused and empty, see `Registry::sweep`).
///
/// [`Engine::release`]: super::Engine::release
pub(crate) struct Hold {
    record: NonNull<Record>,
    pub(crate) token: u64,
}

// SAFETY: a `Hold` only reaches its `Record` (which is `Send + Sync`)
// through `&`, from any thread, while the record is alive (see above).
unsafe impl Send for Hold {}
// SAFETY: as above.
unsafe impl Sync for Hold {}

// A panic never leaves a record half-changed (stack operations do not
// panic midway, and the spin lock is not poisoned): a hold adds nothing to
// what makes its guard unwind safe or not, as tokio's guards have it.
impl std::panic::UnwindSafe for Hold {}
impl std::panic::RefUnwindSafe for Hold {}

impl Hold {
    /// The acquisition `token`, whose entry is in `record`'s stack; the
    /// record must be one the registry made (every record is).
    pub(crate) fn new(record: &Record, token: u64) -> Hold {
        Hold {
            record: NonNull::from(record),
            token,
        }
    }

    /// The record of the context that took the lock.
    #[inline]
    pub(crate) fn record(&self) -> &Record {
        // SAFETY: the acquisition's entry is still in this record (the hold
        // is used only until its release), so the registry keeps it alive.
        unsafe { self.record.as_ref() }
    }

    /// The acquisition's identity.
    pub(crate) fn key(&self) -> HeldKey {
        HeldKey {
            context: self.record().context,
            token: self.token,
        }
    }
}

/// The chain hash of `lock` acquired with `access` on top of `below`.
#[inline]
pub(crate) fn chain_after(below: u64, lock: LockRef, access: Access) -> u64 {
    mix(below, (u64::from(lock.class) << 8) | access as u64)
}

const SHARDS: usize = 64;

/// One context's held locks: written by whoever polls that context (one
/// thread at a time), read by the rare checks that look at other contexts
/// and by releases of guards dropped elsewhere. Its lock is the context's
/// own, so it is uncontended on the common path, and held for a few
/// instructions: a spin lock (`spin`'s, yielding when contended), whose
/// release is a plain store, where a blocking mutex's is a second atomic
/// read-modify-write.
pub(crate) struct Record {
    pub(crate) context: ContextId,
    stack: StackLock,
}

type StackLock = spin::mutex::SpinMutex<Stack, spin::relax::Yield>;

impl Record {
    /// The stack, locked. Stack operations never panic midway.
    #[inline]
    pub(crate) fn stack(&self) -> spin::mutex::SpinMutexGuard<'_, Stack> {
        self.stack.lock()
    }
}

/// A context's held locks, oldest first, its acquisition counter, and the
/// waits it made since its section began.
pub(crate) struct Stack {
    held: Vec<HeldLock>,
    next_token: u64,
    /// The channels (instances) this context sent into lately, by send
    /// number: a reply awaited after a request into the channel the context
    /// itself drains can never come (see `Engine::reply_from_own_channel`).
    sends: SendLog,
    /// The last waits since the context's section began (its task's
    /// start, or the `recv` that delivered the message it handles): an
    /// event it signals depends on them.
    section: SectionLog,
}

/// The most recent [`SECTION_LOG`] waits of a section, as a ring inline in
/// the context's record (no allocation, a few stores per lock). A signal
/// after more distinct waits misses the older ones: a dependency not
/// recorded, never a false one.
#[derive(Clone, Copy)]
pub(crate) struct SectionLog {
    waits: [Waited; SECTION_LOG],
    /// How many are valid (at most `SECTION_LOG`).
    len: u8,
    /// Where the next one goes.
    next: u8,
}

/// The last [`SEND_LOG`] sends of a context into bounded channels: `(send
/// number, channel instance)`, and the number of the next send.
#[derive(Clone, Copy, Default)]
pub(crate) struct SendLog {
    sends: [(u64, LockRef); SEND_LOG],
    next: u64,
}

const SEND_LOG: usize = 4;

impl SendLog {
    /// The number the next send will have.
    pub(crate) fn mark(&self) -> u64 {
        self.next
    }

    fn note(&mut self, channel: LockRef) {
        self.sends[(self.next % SEND_LOG as u64) as usize] = (self.next, channel);
        self.next += 1;
    }

    /// The channel of the first send numbered `mark` or later, if it is
    /// still remembered.
    pub(crate) fn first_since(&self, mark: u64) -> Option<LockRef> {
        (mark < self.next && self.next - mark <= SEND_LOG as u64)
            .then(|| self.sends[(mark % SEND_LOG as u64) as usize])
            .filter(|(number, _)| *number == mark)
            .map(|(_, channel)| channel)
    }
}

/// One wait of a context's section: the class and how, where, and in which
/// span (truncated serial; 0: none).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waited {
    pub(crate) class: crate::vocab::ClassId,
    /// The instance waited for (a channel's messages share its instance).
    pub(crate) instance: u64,
    pub(crate) access: Access,
    pub(crate) span: u64,
    pub(crate) site: SiteRef,
    /// Where the instance waited for was created.
    pub(crate) created: &'static Location<'static>,
}

const SECTION_LOG: usize = 8; // a power of two

impl SectionLog {
    const EMPTY: SectionLog = SectionLog {
        waits: [Waited {
            class: 0,
            instance: 0,
            access: Access::Lock,
            span: 0,
            site: SiteRef::code(Location::caller()),
            created: Location::caller(),
        }; SECTION_LOG],
        len: 0,
        next: 0,
    };

    #[inline]
    fn note(&mut self, want: &Acquire, span: u64) {
        const MASK: usize = SECTION_LOG - 1;
        let next = usize::from(self.next) & MASK;
        let previous = &self.waits[next.wrapping_sub(1) & MASK];
        if previous.class == want.lock.class && previous.site == want.site && self.len != 0 {
            return; // the same lock again (a loop): one slot
        }
        self.waits[next] = Waited {
            class: want.lock.class,
            instance: want.lock.instance,
            access: want.access,
            span,
            site: want.site,
            created: want.created,
        };
        self.next = ((next + 1) & MASK) as u8;
        self.len += u8::from(usize::from(self.len) < SECTION_LOG);
    }
}

/// Where each context's record is, for the checks that look at other
/// contexts and for a context's first lock on a thread: sharded by context.
/// Records nobody else uses (no guard, no thread's cache: they hold nothing)
/// are swept when a shard's map doubles, so memory follows the contexts that
/// hold locks, and a task switching threads finds its record without
/// allocating.
pub(crate) struct HeldLocks {
    shards: Box<[Padded]>,
}

#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Registry>);

struct Registry {
    map: FxHashMap<ContextId, Arc<Record>>,
    /// Map size at which records nobody else uses are swept.
    sweep_at: usize,
    /// Swept records kept for reuse (with their stacks' capacity), so
    /// that tasks coming and going allocate nothing in steady state.
    spare: Vec<Arc<Record>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            map: FxHashMap::default(),
            sweep_at: MIN_SWEEP_AT,
            spare: Vec::new(),
        }
    }
}

const MIN_SWEEP_AT: usize = 64;

/// Most swept records kept for reuse, per registry shard.
const MAX_SPARE: usize = 32;

/// A fresh first token for a new (or reused) record.
fn fresh_base() -> u64 {
    (NEXT_BASE.fetch_add(1, Ordering::Relaxed) << 32)
        .max(DROPPED_HIGH.load(Ordering::Relaxed).saturating_add(1))
}

impl Registry {
    /// A record for `context`: a spare one reset, or a new one.
    fn make(&mut self, context: ContextId) -> Arc<Record> {
        while let Some(mut record) = self.spare.pop() {
            if let Some(unique) = Arc::get_mut(&mut record) {
                let stack = unique.stack.get_mut();
                DROPPED_HIGH.fetch_max(stack.next_token, Ordering::Relaxed);
                debug_assert!(stack.held.is_empty(), "only empty records are spares");
                stack.held.clear();
                stack.begin_section();
                stack.sends = SendLog::default();
                stack.next_token = fresh_base();
                unique.context = context;
                return record;
            }
        }
        Arc::new(Record {
            context,
            stack: StackLock::new(Stack {
                held: Vec::new(),
                next_token: fresh_base(),
                section: SectionLog::EMPTY,
                sends: SendLog::default(),
            }),
        })
    }

    /// Drops (or keeps for reuse) the records only the registry uses (no
    /// thread's cache, no reader) that hold nothing (so no guard points to
    /// them).
    fn sweep(&mut self) {
        let Registry { map, spare, .. } = self;
        map.retain(|_, record| {
            // Held by a thread's cache or a reader, or holding a lock (a
            // guard's `Hold` points into it): kept. Under the shard's lock,
            // a record only the registry has gets no new user, and its
            // stack can only shrink, so "empty" stays true.
            if Arc::strong_count(record) > 1 || !record.stack().held.is_empty() {
                return true;
            }
            if spare.len() < MAX_SPARE {
                spare.push(Arc::clone(record));
            }
            false
        });
        self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP_AT);
    }
}

/// Records a thread keeps at hand: one per slot, the slot chosen by the
/// context's hash, so that tasks taking turns on a worker thread (each
/// holding locks across `.await`s) each find their own record again.
const CACHE_SLOTS: usize = 32;

thread_local! {
    /// The records of the contexts that last took a lock on this thread,
    /// by slot: the common path (a task locking again) is a thread-local
    /// read and a compare. Bounded: a slot's record is replaced by the next
    /// context that hashes there.
    static CACHED: RefCell<[Option<Arc<Record>>; CACHE_SLOTS]> =
        const { RefCell::new([const { None }; CACHE_SLOTS]) };
}

/// Debug builds: whether this thread runs `with_record` on a cached record,
/// which `record_slow` must not replace meanwhile.
#[cfg(debug_assertions)]
struct Borrowed;

#[cfg(debug_assertions)]
thread_local! {
    static BORROWED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(debug_assertions)]
impl Borrowed {
    fn enter() -> Borrowed {
        let _ = BORROWED.try_with(|b| b.set(b.get() + 1));
        Borrowed
    }

    fn active() -> bool {
        BORROWED.try_with(|b| b.get() > 0).unwrap_or(false)
    }
}

#[cfg(debug_assertions)]
impl Drop for Borrowed {
    fn drop(&mut self) {
        let _ = BORROWED.try_with(|b| b.set(b.get() - 1));
    }
}

/// The cache slot of `context`.
#[inline]
fn slot(context: ContextId) -> usize {
    (context_hash(context) >> 59) as usize % CACHE_SLOTS
}

/// A well-mixed hash of `context` (its high bits pick a cache slot and a
/// registry shard).
#[inline]
fn context_hash(context: ContextId) -> u64 {
    match context {
        ContextId::Task(id) => rustc_hash::FxBuildHasher.hash_one(id),
        ContextId::Thread(n) | ContextId::Scope(n) => n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ContextId::Process(pid) => u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    }
}

/// This thread's cached record of `context`, if it has one.
#[inline]
fn cached(context: ContextId) -> Option<Arc<Record>> {
    // SAFETY: the pointer comes from the cache, which keeps the record alive
    // until the clone below (nothing between replaces a slot).
    cached_ptr(context).map(|record| unsafe {
        Arc::increment_strong_count(record);
        Arc::from_raw(record)
    })
}

/// This thread's cached record of `context`, if it has one, borrowed (see
/// [`HeldLocks::with_record`]).
#[inline]
fn cached_ptr(context: ContextId) -> Option<*const Record> {
    CACHED
        .try_with(|cached| {
            cached.try_borrow().ok().and_then(|slots| {
                slots[slot(context)]
                    .as_ref()
                    .filter(|r| r.context == context)
                    .map(Arc::as_ptr)
            })
        })
        .ok()
        .flatten()
}

/// Each new record's tokens start at a fresh base, above every token a
/// dropped record handed out, so that a context's tokens keep growing even
/// if its record is dropped and made again (a wait's mark compares with
/// them, and provisional dependencies are keyed by them).
static NEXT_BASE: AtomicU64 = AtomicU64::new(1);

/// The largest token a dropped record handed out.
static DROPPED_HIGH: AtomicU64 = AtomicU64::new(0);

impl Drop for Record {
    fn drop(&mut self) {
        let last = self.stack().next_token;
        DROPPED_HIGH.fetch_max(last, Ordering::Relaxed);
    }
}

impl Default for HeldLocks {
    fn default() -> Self {
        HeldLocks {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

impl HeldLocks {
    fn registry(&self, context: ContextId) -> MutexGuard<'_, Registry> {
        self.shards[(context_hash(context) >> 52) as usize % SHARDS]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the record of `context` (made if it has none; cached on
    /// this thread). The cached record is borrowed, not cloned: `f` must
    /// not make another context's record on this thread (which replaces the
    /// cache), so it does nothing but stack operations and checks.
    #[inline]
    pub(crate) fn with_record<R>(&self, context: ContextId, f: impl FnOnce(&Record) -> R) -> R {
        if let Some(record) = cached_ptr(context) {
            #[cfg(debug_assertions)]
            let _borrowed = Borrowed::enter();
            // SAFETY: the thread's cache keeps the record alive while `f`
            // runs: only `record_slow` replaces it, and `f` does not call it
            // (checked in debug builds).
            return f(unsafe { &*record });
        }
        let record = self.record_slow(context);
        f(&record)
    }

    #[cold]
    #[inline(never)]
    fn record_slow(&self, context: ContextId) -> Arc<Record> {
        #[cfg(debug_assertions)]
        debug_assert!(
            !Borrowed::active(),
            "a record's cache slot is replaced while `with_record` borrows it"
        );
        let record = {
            let mut registry = self.registry(context);
            match registry.map.get(&context) {
                Some(record) => Arc::clone(record),
                None => {
                    if registry.map.len() >= registry.sweep_at {
                        registry.sweep();
                    }
                    let record = registry.make(context);
                    registry.map.insert(context, Arc::clone(&record));
                    record
                }
            }
        };
        // The slot's previous record is dropped outside the registry's lock
        // and the cache's borrow.
        let _previous = CACHED.try_with(|cached| {
            cached
                .try_borrow_mut()
                .ok()
                .and_then(|mut slots| slots[slot(context)].replace(Arc::clone(&record)))
        });
        record
    }

    /// The record of `context` if it has one (no record is made).
    pub(crate) fn find(&self, context: ContextId) -> Option<Arc<Record>> {
        cached(context).or_else(|| self.registry(context).map.get(&context).cloned())
    }

    /// Every live record.
    fn records(&self) -> Vec<Arc<Record>> {
        let mut records = Vec::new();
        for shard in self.shards.iter() {
            let registry = shard
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            records.extend(registry.map.values().cloned());
        }
        records
    }

    /// Number of contexts that hold at least one lock.
    pub(crate) fn live_contexts(&self) -> usize {
        self.records()
            .iter()
            .filter(|r| !r.stack().held.is_empty())
            .count()
    }

    /// Snapshot of what `context` holds.
    pub(crate) fn snapshot_of(&self, context: ContextId) -> Vec<HeldLock> {
        self.find(context)
            .map(|r| r.stack().held.clone())
            .unwrap_or_default()
    }

    /// Every context holding the lock `instance`, with how it holds it.
    /// Visits every record: for the wait-for check and the watchdog only.
    /// Every held lock of every context, by lock instance: one visit to
    /// each record, for the wait-for check.
    pub(crate) fn all_holders(&self) -> FxHashMap<u64, Vec<(ContextId, HeldLock)>> {
        let mut holders: FxHashMap<u64, Vec<(ContextId, HeldLock)>> = FxHashMap::default();
        for record in self.records() {
            let stack = record.stack();
            for held in &stack.held {
                holders
                    .entry(held.lock.instance)
                    .or_default()
                    .push((record.context, *held));
            }
        }
        holders
    }

    pub(crate) fn holders_of(&self, instance: u64) -> Vec<(ContextId, HeldLock)> {
        let mut holders = Vec::new();
        for record in self.records() {
            let stack = record.stack();
            for held in stack.held.iter().filter(|h| h.lock.instance == instance) {
                holders.push((record.context, *held));
            }
        }
        holders
    }
}

impl Stack {
    /// The last token handed out for this context.
    #[inline]
    pub(crate) fn last_token(&self) -> u64 {
        self.next_token
    }

    /// The locks held, oldest first.
    #[inline]
    pub(crate) fn held(&self) -> &[HeldLock] {
        &self.held
    }

    /// Records that the context now holds `want`; returns the token.
    #[inline]
    pub(crate) fn push(&mut self, want: &Acquire) -> u64 {
        self.push_in(want, super::context::current_span())
    }

    /// [`Stack::push`], taken in the span `span`.
    #[inline]
    fn push_in(&mut self, want: &Acquire, span: u64) -> u64 {
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        let below = self.held.last().map_or(0, |h| h.chain);
        let chain = chain_after(below, want.lock, want.access);
        self.held.push(HeldLock {
            lock: want.lock,
            access: want.access,
            site: want.site,
            created: want.created,
            movable: want.movable,
            forgotten: false,
            drives: false,
            token,
            chain,
            span,
        });
        token
    }

    /// Remembers that the context waited (or could have waited) for `want`
    /// in its current section.
    #[inline]
    pub(crate) fn note_wait(&mut self, want: &Acquire) {
        let span = super::context::current_span();
        self.section.note(want, span);
    }

    /// As [`Stack::push`] for a lock taken at once (it could have waited):
    /// also remembered as a wait of the section.
    #[inline]
    pub(crate) fn push_waited(&mut self, want: &Acquire) -> u64 {
        let span = super::context::current_span();
        self.section.note(want, span);
        self.push_in(want, span)
    }

    /// The context sends into the bounded channel `channel`.
    pub(crate) fn note_send(&mut self, channel: LockRef) {
        self.sends.note(channel);
    }

    /// The context's log of sends.
    pub(crate) fn sends(&self) -> &SendLog {
        &self.sends
    }

    /// A new section begins: the waits made so far no longer delay what the
    /// context signals from now on.
    #[inline]
    pub(crate) fn begin_section(&mut self) {
        self.section.len = 0;
        self.section.next = 0;
    }

    /// The waits of the current section, in no particular order.
    pub(crate) fn section_waits(&self) -> &[Waited] {
        &self.section.waits[..usize::from(self.section.len)]
    }

    /// The waits of the current section, oldest first.
    pub(crate) fn section_waits_in_order(&self) -> impl Iterator<Item = &Waited> {
        let len = usize::from(self.section.len);
        // Full, the oldest is where the next one goes; else they start at 0.
        let start = if len == SECTION_LOG {
            usize::from(self.section.next)
        } else {
            0
        };
        (0..len).map(move |i| &self.section.waits[(start + i) % SECTION_LOG])
    }

    /// Forgets the acquisition `token`; returns whether it was movable, or
    /// `None` if it was not recorded (which cannot happen for a live
    /// `Hold`: each is released once, by its owner).
    #[inline]
    pub(crate) fn remove(&mut self, token: u64) -> Option<Movable> {
        if let Some(top) = self.held.last().filter(|h| h.token == token) {
            let movable = Movable(top.movable);
            self.held.pop(); // released in order: nothing else changes
            return Some(movable);
        }
        let pos = self.held.iter().rposition(|h| h.token == token)?;
        let movable = Movable(self.held.remove(pos).movable);
        // Released out of order: the chain hashes above it change.
        if pos < self.held.len() {
            rechain(&mut self.held, pos);
        }
        Some(movable)
    }

    /// The span `serial` closed: holds taken in it pass to its parent span
    /// (0: the context itself).
    pub(crate) fn pass_span(&mut self, serial: u64, parent: u64) {
        for held in self.held.iter_mut().filter(|h| h.span == serial) {
            held.span = parent;
        }
    }

    /// The permit `token` was `forget()`-ed: held until given back with
    /// `add_permits`, wherever the pooled object goes meanwhile.
    pub(crate) fn mark_forgotten(&mut self, token: u64) {
        if let Some(held) = self.held.iter_mut().rev().find(|h| h.token == token) {
            held.movable = true;
            held.forgotten = true;
        }
    }

    /// The receiving section `token` is a driving thread's (see
    /// [`HeldLock::drives`]).
    pub(crate) fn mark_driving(&mut self, token: u64) {
        if let Some(held) = self.held.iter_mut().rev().find(|h| h.token == token) {
            held.drives = true;
        }
    }

    /// Changes how `token` is held (an `RwLock` write guard downgraded).
    pub(crate) fn change_access(&mut self, token: u64, access: Access) {
        let Some(pos) = self.held.iter().rposition(|h| h.token == token) else {
            return;
        };
        self.held[pos].access = access;
        rechain(&mut self.held, pos);
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

pub(crate) fn dependency_of(
    held: &HeldLock,
    want: Acquire,
    context: ContextId,
    spans: &[String],
) -> Dependency {
    Dependency {
        held: describe_instance(held.lock.class, held.created),
        held_as: held.access,
        held_at: held.site.into(),
        waited: describe_instance(want.lock.class, want.created),
        waited_as: want.access,
        waited_at: want.site.into(),
        context,
        spans: spans.to_vec(),
        test: None,
    }
}

impl Engine {
    /// The span `serial` closed on this thread: holds the current context
    /// took in it pass to `parent` (0: the context itself).
    pub(crate) fn span_closed(&self, serial: u64, parent: u64) {
        let context = ContextId::current();
        if let Some(record) = self.held.find(context) {
            record.stack().pass_span(serial, parent);
        }
    }

    /// The permit of the acquisition `hold` was `forget()`-ed.
    pub(crate) fn permit_forgotten(&self, hold: &Hold) {
        hold.record().stack().mark_forgotten(hold.token);
    }

    /// The receiving section `hold` is a driving thread's.
    pub(crate) fn section_drives(&self, hold: &Hold) {
        hold.record().stack().mark_driving(hold.token);
    }

    /// Changes how the acquisition `hold` holds its lock (`RwLock` downgrade).
    pub(crate) fn change_access(&self, hold: &Hold, access: Access) {
        hold.record().stack().change_access(hold.token, access);
    }

    pub(crate) fn holders_of(&self, instance: u64) -> Vec<(ContextId, HeldLock)> {
        self.held.holders_of(instance)
    }

    /// Every held lock, by instance (see `HeldLocks::all_holders`).
    pub(crate) fn all_holders(&self) -> rustc_hash::FxHashMap<u64, Vec<(ContextId, HeldLock)>> {
        self.held.all_holders()
    }

    /// The instances `context` holds (locks, permits, channel sections,
    /// work).
    pub(crate) fn held_instances(&self, context: ContextId) -> Vec<u64> {
        self.held.find(context).map_or_else(Vec::new, |r| {
            r.stack().held().iter().map(|h| h.lock.instance).collect()
        })
    }

    /// Whether the calling context holds the lock (or executor) `instance`.
    pub(crate) fn current_context_holds(&self, instance: u64) -> bool {
        self.held
            .find(ContextId::current())
            .is_some_and(|r| r.stack().held().iter().any(|h| h.lock.instance == instance))
    }

    /// The locks `context` holds now, oldest first.
    pub(crate) fn held_by(&self, context: ContextId) -> Vec<HeldLock> {
        self.held.snapshot_of(context)
    }

    pub(crate) fn live_contexts(&self) -> usize {
        self.held.live_contexts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swept_records_are_reused_with_higher_tokens() {
        let mut registry = Registry::default();
        let mut last_tokens = Vec::new();
        for n in 0..10 {
            let record = registry.make(ContextId::Thread(1_000_000 + n));
            last_tokens.push(record.stack().last_token());
            registry.map.insert(record.context, record);
        }
        let swept: Vec<*const Record> = registry.map.values().map(Arc::as_ptr).collect();
        registry.sweep();
        assert!(registry.map.is_empty(), "no guard or cache used them");
        assert_eq!(registry.spare.len(), 10);
        let reused = registry.make(ContextId::Thread(2_000_000));
        assert!(swept.contains(&Arc::as_ptr(&reused)), "a spare record");
        assert_eq!(reused.context, ContextId::Thread(2_000_000));
        assert!(reused.stack().held().is_empty());
        let highest = last_tokens.iter().max().copied().unwrap_or(0);
        assert!(reused.stack().last_token() > highest);
    }

    #[test]
    fn a_record_in_use_is_not_swept() {
        let mut registry = Registry::default();
        let record = registry.make(ContextId::Thread(3_000_000));
        registry.map.insert(record.context, Arc::clone(&record));
        registry.sweep();
        assert_eq!(registry.map.len(), 1, "a guard (here: `record`) keeps it");
        assert!(registry.spare.is_empty());
    }
}
