//! The engine: one per process, as the kernel's lockdep. This file is the
//! guide, the engine's state ([`Engine`]) and the seam front ends call; each
//! step of the pipeline has a room of its own, in the order one `lock()`
//! passes through them:
//!
//! | room              | step                                                          |
//! |-------------------|---------------------------------------------------------------|
//! | `class.rs`        | lock and event classes: creation sites, names, interning      |
//! | `context.rs`      | contexts: task, thread, span sub-contexts, `own_context`      |
//! | `held.rs`         | held locks per context (the hot path)                         |
//! | `chain_cache.rs`  | chains of held classes already validated                      |
//! | `validate.rs`     | `validate_chain`: dependencies, cycles, self-conflicts        |
//! | `events.rs`       | waits on events: `H → event`, and `event → L` when signalled      |
//! | `waits.rs`        | waits in progress, the watchdog for long waits                |
//! | `confirm.rs`      | the confirmation thread: checks due later, waiters that give up |
//! | `deferred.rs`     | possible self-deadlocks decided by how the wait ends          |
//! | `deadlock_now.rs` | the live check ("deadlock now")                               |
//! | `attribution.rs`  | which test a report belongs to                                |
//! | `publish.rs`      | the one sink: stderr, `tracing` events (`emit.rs`), panics    |
//! | `store/`          | the run's store: its file format, the cross-process check     |
//! | `hooks.rs`        | the handles front ends hold: one adaptor per shape of wait    |
//!
//! The seam: front ends (lock wrappers, semaphore, channels, executors,
//! blocking locks) describe a wait with one request type, [`Acquire`], and
//! go through the adaptors of `hooks.rs` (`Acquiring` in `sync/` for a lock
//! future, `acquire_blocking`, `acquired_without_waiting`, `FirstPollWait`,
//! `Waiting`, `Holding`), which call the verbs below: [`Engine::lock_now`],
//! [`Engine::wait_start`] (or `record_wait_dependencies` + `register_wait`),
//! [`Engine::acquired`], [`Engine::try_acquired`], [`Engine::release`],
//! `wait_end` and `wait_cancelled`.
//!
//! Hot path: a lock taken with nothing held touches the context's own
//! record of held locks (found through a per-thread cache). A lock taken on
//! top of held locks also hashes the held chain and looks it up in a
//! lock-free set of chains already validated (the kernel's lockdep chain
//! cache); only a chain never seen before takes the graph's mutex. No
//! internal lock is held while calling user code, awaiting, or emitting
//! tracing events.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use tracing_core::dispatcher::WeakDispatch;

use crate::graph::Graph;
use crate::vocab::{Access, ClassId, ContextId, LockRef, SiteRef};

pub(crate) mod attribution;
pub(crate) mod chain_cache;
pub(crate) mod class;
pub(crate) mod confirm;
pub(crate) mod context;
pub(crate) mod deadlock_now;
mod deferred;
pub(crate) mod emit;
mod events;
pub(crate) mod held;
pub(crate) mod hooks;
pub(crate) mod publish;
pub(crate) mod store;
mod switch;
mod validate;
pub(crate) mod waits;

pub(crate) use attribution::TestOptions;
pub(crate) use class::{describe, describe_instance};
pub(crate) use held::dependency_of;
pub(crate) use switch::{enable, enabled, enabled_by_environment, engine};

use attribution::Tests;
use chain_cache::ChainCache;
use held::{HeldKey, HeldLocks, Hold, Movable};
use publish::Reports;
use validate::Deferred;
use validate::{Check, DependencyInfo, InstanceOrder, Provisional};
use waits::Waits;

/// Default limits on what the engine records (see [`crate::DetectorBuilder`]).
pub(crate) const DEFAULT_MAX_CLASSES: usize = 65_536;
pub(crate) const DEFAULT_MAX_DEPENDENCIES: usize = 1 << 20;
pub(crate) const DEFAULT_MAX_REPORTS: usize = 1024;

/// The engine's process-wide options, as a `DetectorBuilder` sets them; `None` leaves the engine's value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) max_classes: Option<usize>,
    pub(crate) max_dependencies: Option<usize>,
    pub(crate) max_reports: Option<usize>,
    pub(crate) panic_on_report: Option<bool>,
    pub(crate) panic_on_deadlock: Option<bool>,
    pub(crate) print_reports: Option<bool>,
    pub(crate) watchdog: Option<Duration>,
}

/// A lock, how it is wanted, and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acquire {
    pub(crate) lock: LockRef,
    pub(crate) access: Access,
    pub(crate) site: SiteRef,
    /// Through an owned guard or permit, which may move to another task.
    pub(crate) movable: bool,
    /// A `blocking_*` wait: the whole thread (and task) waits.
    pub(crate) blocking: bool,
    /// Where the lock instance was created (its class may be named).
    pub(crate) created: &'static Location<'static>,
}

impl Acquire {
    /// The same acquisition, blocking the thread.
    pub(crate) fn blocking(self) -> Acquire {
        Acquire {
            blocking: true,
            ..self
        }
    }

    /// The same acquisition, through an owned guard.
    pub(crate) fn movable(self) -> Acquire {
        Acquire {
            movable: true,
            ..self
        }
    }
}

/// A registered test: its slot and serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TestKey {
    pub(super) slot: usize,
    pub(super) serial: u64,
}

/// Which panic option applies to a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Panic {
    /// `panic_on_report`: lock-order cycles and self-deadlocks.
    OnReport,
    /// `panic_on_deadlock`: tasks stuck now.
    OnDeadlock,
    /// Never (watchdog reports).
    Never,
}

/// A report kept back until something happens, with the test it belongs to.
type KeptBack = (crate::report::Report, Option<TestKey>);

/// The engine: one per process, as the kernel's lockdep. Every wrapper
/// reports to it directly (see [`engine`]).
pub(crate) struct Engine {
    held: HeldLocks,
    chains: ChainCache,
    graph: Mutex<Graph<DependencyInfo>>,
    /// The order of instances of one class nested in each other.
    instances: Mutex<InstanceOrder>,
    /// Dependencies recorded while an owned guard was held, by its
    /// acquisition, until it is released.
    provisional: Mutex<rustc_hash::FxHashMap<HeldKey, Vec<Provisional>>>,
    /// Pool reports of waits while holding a `forget()`-ed permit, by that
    /// permit, until it is given back (`add_permits`).
    forgotten_reports: Mutex<rustc_hash::FxHashMap<HeldKey, Vec<Deferred>>>,
    /// How many: a relaxed read keeps `release` cheap when there are none.
    forgotten_reports_count: AtomicUsize,
    reports: Mutex<Reports>,
    /// Possible self-deadlocks of waits not decided yet, by (context, wait).
    deferred: Mutex<rustc_hash::FxHashMap<(ContextId, u64), Vec<Deferred>>>,
    /// How many: a relaxed read keeps `wait_end` cheap when there are none.
    deferred_count: AtomicUsize,
    max_classes: AtomicUsize,
    max_dependencies: AtomicUsize,
    max_reports: AtomicUsize,
    overflowed: AtomicBool,
    overflow_announced: AtomicBool,
    panic_on_report: AtomicBool,
    panic_on_deadlock: AtomicBool,
    print_reports: AtomicBool,
    waits: Waits,
    /// The dispatchers that have the layer: reports are emitted to each.
    dispatches: Mutex<Vec<WeakDispatch>>,
    /// The tests with a live [`crate::TestGuard`] registration.
    tests: Mutex<Tests>,
    report_count: AtomicUsize,
    new_dependencies: AtomicU64,
    /// Cycles across processes already reported, by their classes.
    store_cycles: Mutex<FxHashSet<Vec<String>>>,
    /// The test whose thread created each live lock instance (made while a
    /// test was registered there): reports found where no test can be told
    /// (a thread of its own) go to the test that made the lock.
    created_by: Mutex<rustc_hash::FxHashMap<u64, TestKey>>,
    /// The reader cap of each live `RwLock` made with `with_max_readers`.
    reader_caps: Mutex<rustc_hash::FxHashMap<u64, u32>>,
    /// Re-reads of never-written classes, kept back until a write of the
    /// class is seen (with the test each belongs to).
    reads_kept_back: Mutex<FxHashMap<ClassId, Vec<KeptBack>>>,
    /// Pool reports of permits taken without waiting, until decided.
    pool_held_back: Mutex<Vec<deferred::PoolHeldBack>>,
    /// How many: a relaxed read keeps `release` cheap when there are none.
    pool_held_back_count: AtomicUsize,
    /// The smallest reader cap of each class with capped instances.
    class_reader_caps: Mutex<rustc_hash::FxHashMap<ClassId, u32>>,
}

/// Writes `text` to stderr, ignoring failure: a full disk, a closed pipe or
/// a closed stderr loses the text, never panics (`eprint!` would, inside
/// the user's `lock()`). Written past libtest's output capture, which only
/// `eprint!` can reach.
pub(crate) fn to_stderr(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub(crate) fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) static ENGINE: LazyLock<Engine> = LazyLock::new(Engine::new);

impl Engine {
    fn new() -> Engine {
        Engine {
            held: HeldLocks::default(),
            chains: ChainCache::new(1 << 14),
            graph: Mutex::new(Graph::default()),
            instances: Mutex::new(InstanceOrder::default()),
            provisional: Mutex::new(rustc_hash::FxHashMap::default()),
            forgotten_reports: Mutex::new(rustc_hash::FxHashMap::default()),
            forgotten_reports_count: AtomicUsize::new(0),
            reports: Mutex::new(Reports::default()),
            deferred: Mutex::new(rustc_hash::FxHashMap::default()),
            deferred_count: AtomicUsize::new(0),
            max_classes: AtomicUsize::new(DEFAULT_MAX_CLASSES),
            max_dependencies: AtomicUsize::new(DEFAULT_MAX_DEPENDENCIES),
            max_reports: AtomicUsize::new(DEFAULT_MAX_REPORTS),
            overflowed: AtomicBool::new(false),
            overflow_announced: AtomicBool::new(false),
            panic_on_report: AtomicBool::new(false),
            panic_on_deadlock: AtomicBool::new(false),
            print_reports: AtomicBool::new(
                switch::env_flag("ASYNC_LOCKDEP_PRINT", "reports are printed").unwrap_or(true),
            ),
            waits: Waits::default(),
            dispatches: Mutex::new(Vec::new()),
            tests: Mutex::new(Tests::default()),
            report_count: AtomicUsize::new(0),
            new_dependencies: AtomicU64::new(0),
            store_cycles: Mutex::new(FxHashSet::default()),
            created_by: Mutex::new(rustc_hash::FxHashMap::default()),
            reader_caps: Mutex::new(rustc_hash::FxHashMap::default()),
            class_reader_caps: Mutex::new(rustc_hash::FxHashMap::default()),
            reads_kept_back: Mutex::new(FxHashMap::default()),
            pool_held_back: Mutex::new(Vec::new()),
            pool_held_back_count: AtomicUsize::new(0),
        }
    }

    /// Applies the options of a builder, process-wide.
    pub(crate) fn configure(&'static self, options: &Options) {
        if let Some(n) = options.max_classes {
            self.max_classes.store(n, Ordering::Relaxed);
        }
        if let Some(n) = options.max_dependencies {
            self.max_dependencies.store(n, Ordering::Relaxed);
        }
        if let Some(n) = options.max_reports {
            self.max_reports.store(n, Ordering::Relaxed);
        }
        if let Some(yes) = options.panic_on_report {
            self.panic_on_report.store(yes, Ordering::Relaxed);
        }
        if let Some(yes) = options.panic_on_deadlock {
            self.panic_on_deadlock.store(yes, Ordering::Relaxed);
        }
        if let Some(yes) = options.print_reports {
            self.print_reports.store(yes, Ordering::Relaxed);
        }
        if let Some(threshold) = options.watchdog {
            waits::start_watchdog(self, threshold);
        }
    }

    /// A `lock()` that got the lock without waiting: checks and records the
    /// dependencies, then marks the lock held, in one visit to the context's record.
    #[inline]
    pub(crate) fn lock_now(&self, want: &Acquire) -> Hold {
        self.note_write(want);
        let context = ContextId::current();
        let fast = self.held.with_record(context, |record| {
            let mut stack = record.stack();
            self.seen_before(stack.held(), want)
                .then(|| Hold::new(record, stack.push_waited(want)))
        });
        fast.unwrap_or_else(|| self.lock_now_slow(context, want))
    }

    /// [`Engine::lock_now`] for a chain not seen before: validated with no
    /// record borrowed (this may report, and reach other contexts' records).
    #[cold]
    #[inline(never)]
    fn lock_now_slow(&self, context: ContextId, want: &Acquire) -> Hold {
        let check = self
            .held
            .with_record(context, |record| self.check(record.stack().held(), want));
        if let Check::Slow(slow) = check {
            self.record(context, *want, slow, false);
        }
        let hold = self.held.with_record(context, |record| {
            Hold::new(record, record.stack().push_waited(want))
        });
        self.pool_taken(context, hold.token);
        hold
    }

    /// A wait for `want` starts: checks and records the dependencies first,
    /// so a real deadlock is reported before it hangs. Returns the context
    /// and the wait's sequence number.
    #[inline]
    pub(crate) fn wait_start(&self, want: Acquire, doomable: bool) -> (ContextId, u64) {
        let (context, mark, deferred) = self.wait_dependencies(want, true, true);
        let seq = self.register_wait_as(context, want, mark, doomable);
        if let Some(deferred) = deferred {
            self.defer(context, seq, deferred);
        }
        if want.blocking {
            self.check_suspended_holder(context, want, seq);
        }
        (context, seq)
    }

    /// The dependencies of a wait for `want` (no wait registered). Returns
    /// the context and its record's last token: acquisitions after the wait
    /// began have larger tokens.
    #[inline]
    pub(crate) fn record_wait_dependencies(&self, want: Acquire) -> (ContextId, u64) {
        let (context, mark, _) = self.wait_dependencies(want, false, true);
        (context, mark)
    }

    /// As [`Engine::record_wait_dependencies`], a possible self-deadlock
    /// returned to be decided by how the wait ends (see `defer`), if it
    /// turns out to wait. Without `note_now`, a wait for an event is noted
    /// in the context's section only once it is over
    /// ([`Engine::note_completed_wait`]): a future polled and kept pending
    /// (a joined sibling's, or one polled by hand) does not delay what the
    /// context signals meanwhile.
    #[inline]
    pub(crate) fn record_wait_dependencies_deferring(
        &self,
        want: Acquire,
        note_now: bool,
    ) -> (ContextId, u64, Option<Deferred>) {
        self.wait_dependencies(want, true, note_now)
    }

    /// The wait for `want` of the calling context is over: a wait of its
    /// section from now on (see `record_wait_dependencies_deferring`).
    pub(crate) fn note_completed_wait(&self, want: Acquire) {
        self.held.with_record(ContextId::current(), |record| {
            record.stack().note_wait(&want)
        });
    }

    /// As [`Engine::record_wait_dependencies`]; with `defer`, a possible
    /// self-deadlock is returned rather than reported (see `defer`); with
    /// `note`, a wait that is not a lock's is noted in the section now.
    #[inline]
    fn wait_dependencies(
        &self,
        want: Acquire,
        defer: bool,
        note: bool,
    ) -> (ContextId, u64, Option<Deferred>) {
        self.note_write(&want);
        let context = ContextId::current();
        let (check, mark) = self.held.with_record(context, |record| {
            let mut stack = record.stack();
            if note
                && !matches!(
                    want.access,
                    Access::Lock | Access::Read | Access::Write | Access::Permits
                )
            {
                // A send, a join, an event: noted when the wait begins. A
                // lock is noted once acquired (see `acquired`).
                stack.note_wait(&want);
            }
            (self.check(stack.held(), &want), stack.last_token())
        });
        let deferred = match check {
            Check::Slow(slow) => self.record(context, want, slow, defer),
            Check::Fine => None,
        };
        (context, mark, deferred)
    }

    /// For a front end that looks for the line of an acquisition only when
    /// it is new (a plain tokio lock's, from a backtrace): the key of the
    /// chain of held classes a wait for `want` by the calling context
    /// would check, if that chain was not validated before — or if nothing
    /// is held (then the key of `want` alone). `None` for a chain seen.
    pub(crate) fn new_chain_key(&self, want: &Acquire) -> Option<u64> {
        self.held
            .with_record(ContextId::current(), |record| {
                let stack = record.stack();
                let held = stack.held();
                let below = held.last().map_or(0, |top| top.chain);
                (held.is_empty() || !self.seen_before(held, want)).then_some(below)
            })
            .map(|below| held::chain_after(below, want.lock, want.access))
    }

    pub(crate) fn waits(&self) -> &Waits {
        &self.waits
    }

    /// The lock waited for was acquired by `context`.
    #[inline]
    pub(crate) fn acquired(&self, context: ContextId, want: Acquire) -> Hold {
        // A wait of the section from now on (not while it was pending: a
        // sibling future's pending lock does not delay what this one signals).
        self.held.with_record(context, |record| {
            Hold::new(record, record.stack().push_waited(&want))
        })
    }

    /// A `try_lock` succeeded: held, but no dependency (it never waited).
    #[inline]
    pub(crate) fn try_acquired(&self, want: Acquire) -> Hold {
        self.held.with_record(ContextId::current(), |record| {
            Hold::new(record, record.stack().push(&want))
        })
    }

    /// The acquisition `hold` ended, wherever the guard is dropped.
    #[inline]
    pub(crate) fn release(&self, hold: &Hold) {
        // The key is read first: once its entry is removed, the hold no
        // longer keeps the record alive.
        let key = hold.key();
        let removed = hold.record().stack().remove(hold.token);
        debug_assert!(removed.is_some(), "a hold's entry is removed once");
        if removed == Some(Movable(true)) {
            self.movable_released(key);
        }
        if self.pool_held_back_count.load(Ordering::Relaxed) != 0 {
            self.pool_released(key.context, key.token);
        }
    }

    pub(crate) fn cached_chains(&self) -> usize {
        self.chains.len()
    }

    pub(crate) fn chain_cache_full(&self) -> bool {
        self.chains.is_full()
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn dependency_count(&self) -> usize {
        lock_ignoring_poison(&self.graph).edge_count()
    }

    /// Orders recorded between instances of one class (same-class nesting).
    pub(crate) fn instance_order_count(&self) -> usize {
        lock_ignoring_poison(&self.instances).len()
    }

    fn current_spans(&self) -> Vec<String> {
        context::entered_spans()
    }
}
