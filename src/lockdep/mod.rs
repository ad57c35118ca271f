//! The engine: one per process, as the kernel's lockdep. Limits, status,
//! report storage and the tests reports are attributed to live here, with the
//! one bookkeeping path every wrapper and executor goes through (through the
//! handles in `hooks.rs`): `lock_now`,
//! `wait_start` / `record_wait_edges` + `register_wait`, `acquired`,
//! `try_acquired`, `release` and `wait_end`.
//!
//! Hot path: a lock taken with nothing held touches the context's own
//! record of held locks (found through a per-thread cache). A lock taken on
//! top of held locks also hashes the held
//! chain and looks it up in a lock-free set of chains already validated (the
//! kernel's lockdep chain cache); only a chain never seen before takes the
//! graph's mutex. No internal lock is held while calling user code, awaiting,
//! or emitting tracing events.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use tracing_core::dispatcher::{Dispatch, WeakDispatch};

use rustc_hash::FxHashSet;

use crate::graph::Graph;
use crate::report::{self, Dependency, Report};
use crate::vocab::{Access, ClassId, ContextId, LockRef};

pub(crate) mod chain_cache;
pub(crate) mod class;
pub(crate) mod context;
pub(crate) mod emit;
pub(crate) mod held;
pub(crate) mod hooks;
pub(crate) mod store;
mod validate;
pub(crate) mod waits;

use chain_cache::ChainCache;
use held::{HeldKey, HeldLock, HeldLocks, Hold, Movable};
use validate::{Check, EdgeInfo, InstanceOrder, Pending};
use waits::Waits;

/// The key under which a one-dependency report of `class` between two
/// sites is remembered.
fn sites_key(
    class: ClassId,
    first: &'static Location<'static>,
    second: &'static Location<'static>,
) -> (ClassId, usize, usize) {
    (
        class,
        first as *const _ as usize,
        second as *const _ as usize,
    )
}

/// Default limits on what the engine records (see [`crate::DetectorBuilder`]).
pub(crate) const DEFAULT_MAX_CLASSES: usize = 65_536;
pub(crate) const DEFAULT_MAX_EDGES: usize = 1 << 20;
pub(crate) const DEFAULT_MAX_REPORTS: usize = 1024;

/// A lock, how it is wanted, and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acquire {
    pub(crate) lock: LockRef,
    pub(crate) access: Access,
    pub(crate) site: &'static Location<'static>,
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

/// The engine: one per process, as the kernel's lockdep. Every wrapper
/// reports to it directly (see [`engine`]).
pub(crate) struct State {
    held: HeldLocks,
    chains: ChainCache,
    graph: Mutex<Graph<EdgeInfo>>,
    /// The order of instances of one class nested in each other.
    instances: Mutex<InstanceOrder>,
    /// Dependencies recorded while an owned guard was held, by its
    /// acquisition, until it is released.
    provisional: Mutex<rustc_hash::FxHashMap<HeldKey, Vec<Pending>>>,
    reports: Mutex<Reports>,
    /// Possible self-deadlocks of waits not decided yet, by (context, wait).
    deferred: Mutex<rustc_hash::FxHashMap<(ContextId, u64), Vec<Deferred>>>,
    /// How many: a relaxed read keeps `wait_end` cheap when there are none.
    deferred_count: AtomicUsize,
    max_classes: AtomicUsize,
    max_edges: AtomicUsize,
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
    new_edges: AtomicU64,
    /// Cycles across processes already reported, by their classes.
    store_cycles: Mutex<FxHashSet<Vec<String>>>,
    /// The test whose thread created each live lock instance (made while a
    /// test was registered there): reports found where no test can be told
    /// (a thread of its own) go to the test that made the lock.
    created_by: Mutex<rustc_hash::FxHashMap<u64, TestKey>>,
    /// The reader cap of each live `RwLock` made with `with_max_readers`.
    reader_caps: Mutex<rustc_hash::FxHashMap<u64, u32>>,
    /// The smallest reader cap of each class with capped instances.
    class_reader_caps: Mutex<rustc_hash::FxHashMap<ClassId, u32>>,
}

#[derive(Default)]
struct Reports {
    list: Vec<Report>,
    /// Self-deadlocks already reported: (class, held site, wait site).
    seen: FxHashSet<(ClassId, usize, usize)>,
    /// Live deadlocks already reported, by the contexts stuck in them.
    stuck: FxHashSet<Vec<ContextId>>,
    dropped: usize,
}

pub(crate) fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most live lock instances whose creating test is remembered.
const MAX_CREATED_REMEMBERED: usize = 1 << 20;

/// Live deadlocks remembered for de-duplication before the memory is reset.
const MAX_STUCK_REMEMBERED: usize = 4096;

/// Whether detection is on: not decided yet (the environment is read at the
/// first use), off, on, or forced off by `ASYNC_LOCKDEP=0`.
static MODE: AtomicU8 = AtomicU8::new(MODE_UNKNOWN);
const MODE_UNKNOWN: u8 = 0;
const MODE_OFF: u8 = 1;
const MODE_ON: u8 = 2;
const MODE_FORCED_OFF: u8 = 3;

static ENGINE: LazyLock<State> = LazyLock::new(State::new);

/// The engine, if detection is enabled in this process: one relaxed load
/// while it is off.
#[inline]
pub(crate) fn engine() -> Option<&'static State> {
    if !cfg!(feature = "detect") {
        return None; // compiled out: everything behind this is dead code
    }
    match MODE.load(Ordering::Relaxed) {
        MODE_ON => Some(&ENGINE),
        MODE_UNKNOWN => mode_from_env(),
        _ => None,
    }
}

/// The engine whether or not detection is on (for reading reports).
pub(crate) fn engine_state() -> &'static State {
    &ENGINE
}

/// Reads `ASYNC_LOCKDEP` once: `1` enables detection, `0` forces it off.
#[cold]
#[inline(never)]
fn mode_from_env() -> Option<&'static State> {
    let mode = match std::env::var("ASYNC_LOCKDEP").as_deref().map(str::trim) {
        Ok("1" | "true" | "on" | "yes") => MODE_ON,
        Ok("0" | "false" | "off" | "no") => MODE_FORCED_OFF,
        _ => MODE_OFF,
    };
    let _ = MODE.compare_exchange(MODE_UNKNOWN, mode, Ordering::Relaxed, Ordering::Relaxed);
    if MODE.load(Ordering::Relaxed) == MODE_ON {
        Some(&ENGINE)
    } else {
        None
    }
}

/// Turns detection on for the rest of the process, unless `ASYNC_LOCKDEP=0`
/// forces it off. Returns whether it is on.
pub(crate) fn enable() -> bool {
    if !cfg!(feature = "detect") {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "async-lockdep: detection is compiled out (the `detect` feature is off): \
                 nothing is checked"
            );
        });
        return false;
    }
    let _ = engine();
    LazyLock::force(&ENGINE);
    MODE.compare_exchange(MODE_OFF, MODE_ON, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        || MODE.load(Ordering::Relaxed) == MODE_ON
}

/// Whether detection is on in this process.
pub(crate) fn enabled() -> bool {
    engine().is_some()
}

/// Per-test options and the reports attributed to a test.
pub(crate) struct TestRecord {
    /// Tells a record from a later one in the same slab slot.
    serial: u64,
    /// The test's name (its thread's name), for reports.
    name: Arc<str>,
    /// The runtime the test's body runs on, when it was created in one.
    runtime: Option<tokio::runtime::Id>,
    panic_on_report: bool,
    panic_on_deadlock: bool,
    watchdog: bool,
    reports: Vec<Report>,
    dropped: usize,
    /// Its guard ran its check: reports decided later fail it no more.
    checked: bool,
    /// The class dependencies first seen in this test (for the run's store).
    own: Vec<(ClassId, ClassId, u64)>,
}

/// Most dependencies remembered per test for the cross-process check.
const MAX_OWN_DEPENDENCIES: usize = 4096;

/// A registered test: its slot and serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TestKey {
    slot: usize,
    serial: u64,
}

#[derive(Default)]
struct Tests {
    records: slab::Slab<TestRecord>,
    next_serial: u64,
}

impl Tests {
    /// The keys of the registered tests that `keep` selects.
    fn keys(&self, keep: impl Fn(&TestRecord) -> bool) -> Vec<TestKey> {
        self.records
            .iter()
            .filter(|(_, r)| keep(r))
            .map(|(slot, r)| TestKey {
                slot,
                serial: r.serial,
            })
            .collect()
    }

    fn get(&self, key: TestKey) -> Option<&TestRecord> {
        self.records
            .get(key.slot)
            .filter(|r| r.serial == key.serial)
    }

    fn get_mut(&mut self, key: TestKey) -> Option<&mut TestRecord> {
        self.records
            .get_mut(key.slot)
            .filter(|r| r.serial == key.serial)
    }
}

thread_local! {
    /// The test whose body runs on this thread (set by `test_guard`).
    static CURRENT_TEST: std::cell::Cell<Option<TestKey>> = const { std::cell::Cell::new(None) };
}

/// The test the calling context belongs to, if known: the test running on
/// this thread, else the test whose runtime this is. A test registered
/// outside a runtime learns its runtime when its thread is seen inside one.
fn current_test(tests: &mut Tests) -> Option<TestKey> {
    let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    if let Some(key) = CURRENT_TEST.try_with(std::cell::Cell::get).ok().flatten() {
        if let Some(record) = tests.get_mut(key) {
            if record.runtime.is_none() {
                record.runtime = runtime;
            }
            return Some(key);
        }
    }
    let runtime = runtime?;
    tests
        .keys(|r| r.runtime == Some(runtime))
        .into_iter()
        .next()
}

/// Options a test asks for (see [`crate::DetectorBuilder::test_guard`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TestOptions {
    pub(crate) panic_on_report: bool,
    pub(crate) panic_on_deadlock: bool,
    /// The test asked for the watchdog: long waits it cannot be told apart
    /// from are attributed to it.
    pub(crate) watchdog: bool,
}

impl State {
    fn new() -> State {
        State {
            held: HeldLocks::default(),
            chains: ChainCache::new(1 << 14),
            graph: Mutex::new(Graph::default()),
            instances: Mutex::new(InstanceOrder::default()),
            provisional: Mutex::new(rustc_hash::FxHashMap::default()),
            reports: Mutex::new(Reports::default()),
            deferred: Mutex::new(rustc_hash::FxHashMap::default()),
            deferred_count: AtomicUsize::new(0),
            max_classes: AtomicUsize::new(DEFAULT_MAX_CLASSES),
            max_edges: AtomicUsize::new(DEFAULT_MAX_EDGES),
            max_reports: AtomicUsize::new(DEFAULT_MAX_REPORTS),
            overflowed: AtomicBool::new(false),
            overflow_announced: AtomicBool::new(false),
            panic_on_report: AtomicBool::new(false),
            panic_on_deadlock: AtomicBool::new(false),
            print_reports: AtomicBool::new(!matches!(
                std::env::var("ASYNC_LOCKDEP_PRINT").as_deref(),
                Ok("0" | "false" | "off" | "no")
            )),
            waits: Waits::default(),
            dispatches: Mutex::new(Vec::new()),
            tests: Mutex::new(Tests::default()),
            report_count: AtomicUsize::new(0),
            new_edges: AtomicU64::new(0),
            store_cycles: Mutex::new(FxHashSet::default()),
            created_by: Mutex::new(rustc_hash::FxHashMap::default()),
            reader_caps: Mutex::new(rustc_hash::FxHashMap::default()),
            class_reader_caps: Mutex::new(rustc_hash::FxHashMap::default()),
        }
    }

    /// Applies the options of a builder, process-wide.
    pub(crate) fn configure(&'static self, options: &crate::detector::Options) {
        if let Some(n) = options.max_classes {
            self.max_classes.store(n, Ordering::Relaxed);
        }
        if let Some(n) = options.max_edges {
            self.max_edges.store(n, Ordering::Relaxed);
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

    /// Remembers a dispatcher that has the layer, to emit reports to it.
    pub(crate) fn add_dispatch(&self, dispatch: &Dispatch) {
        let mut dispatches = lock_ignoring_poison(&self.dispatches);
        dispatches.retain(|d| d.upgrade().is_some());
        dispatches.push(dispatch.downgrade());
    }

    /// Registers a test running on the calling thread.
    pub(crate) fn register_test(&self, name: Arc<str>, options: TestOptions) -> TestKey {
        let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
        let mut tests = lock_ignoring_poison(&self.tests);
        tests.next_serial += 1;
        let serial = tests.next_serial;
        let slot = tests.records.insert(TestRecord {
            serial,
            name,
            runtime,
            panic_on_report: options.panic_on_report,
            panic_on_deadlock: options.panic_on_deadlock,
            watchdog: options.watchdog,
            reports: Vec::new(),
            dropped: 0,
            own: Vec::new(),
            checked: false,
        });
        let key = TestKey { slot, serial };
        let _ = CURRENT_TEST.try_with(|c| c.set(Some(key)));
        key
    }

    /// Takes the reports attributed to the test `key` so far, and how many
    /// more were not kept (the report limit).
    pub(crate) fn take_test_reports(&self, key: TestKey) -> (Vec<Report>, usize) {
        let mut tests = lock_ignoring_poison(&self.tests);
        match tests.get_mut(key) {
            Some(record) => (
                std::mem::take(&mut record.reports),
                std::mem::take(&mut record.dropped),
            ),
            None => (Vec::new(), 0),
        }
    }

    /// The guard of test `key` runs its check: reports decided from now on
    /// (undecided waits given up at teardown) fail it no more.
    pub(crate) fn mark_checked(&self, key: TestKey) {
        if let Some(record) = lock_ignoring_poison(&self.tests).get_mut(key) {
            record.checked = true;
        }
    }

    /// Forgets the test `key`; returns the reports attributed to it since
    /// they were last taken.
    pub(crate) fn unregister_test(&self, key: TestKey) -> (Vec<Report>, usize) {
        let _ = CURRENT_TEST.try_with(|c| {
            if c.get() == Some(key) {
                c.set(None);
            }
        });
        let mut tests = lock_ignoring_poison(&self.tests);
        if tests.get(key).is_none() {
            return (Vec::new(), 0);
        }
        let record = tests.records.remove(key.slot);
        (record.reports, record.dropped)
    }

    /// New class dependencies were added to the graph: they belong to the
    /// current test (for its cross-process check), and go to the run's store.
    fn learned(&self, new: Vec<(ClassId, ClassId, EdgeInfo)>) {
        let written = store::now_nanos();
        {
            let mut tests = lock_ignoring_poison(&self.tests);
            if let Some(key) = current_test(&mut tests) {
                if let Some(record) = tests.get_mut(key) {
                    for (from, to, _) in &new {
                        if record.own.len() < MAX_OWN_DEPENDENCIES {
                            record.own.push((*from, *to, written));
                        }
                    }
                }
            }
        }
        if let Some(store) = store::store() {
            let pid = std::process::id();
            let records: Vec<store::Record> = new
                .iter()
                .map(|(from, to, info)| {
                    let dependency = info.dependency(*from, *to);
                    store::Record {
                        from: dependency.held,
                        to: dependency.waited,
                        held_as: dependency.held_as,
                        held_at: dependency.held_at,
                        waited_as: dependency.waited_as,
                        waited_at: dependency.waited_at,
                        pid,
                        test: dependency.test,
                        spans: dependency.spans,
                        written,
                    }
                })
                .collect();
            store.append(&records);
        }
    }

    /// The class dependencies the test `key` added, for the run's store.
    pub(crate) fn test_dependencies(&self, key: TestKey) -> Vec<(ClassId, ClassId, u64)> {
        lock_ignoring_poison(&self.tests)
            .get(key)
            .map(|r| r.own.clone())
            .unwrap_or_default()
    }

    /// Every dependency in the graph, in the order or not, with its info.
    fn all_dependencies(&self) -> Vec<(ClassId, ClassId, EdgeInfo, bool)> {
        lock_ignoring_poison(&self.graph)
            .edges()
            .into_iter()
            .map(|(from, to, info, in_order)| (from, to, info.clone(), in_order))
            .collect()
    }

    /// The graph in DOT (see `Detector::to_dot`).
    pub(crate) fn to_dot(&self) -> String {
        let reports = lock_ignoring_poison(&self.reports).list.clone();
        let cycle_edges = store::cycle_pairs(&reports);
        let edges: Vec<(String, String, bool)> = self
            .all_dependencies()
            .into_iter()
            .map(|(from, to, _, in_order)| {
                let (a, b) = (describe(from).to_string(), describe(to).to_string());
                let in_cycle = !in_order || cycle_edges.contains(&(a.clone(), b.clone()));
                (a, b, in_cycle)
            })
            .collect();
        store::render_dot(&edges)
    }

    /// The name of the test the calling context belongs to, if known.
    fn current_test_name(&self) -> Option<Arc<str>> {
        let mut tests = lock_ignoring_poison(&self.tests);
        let key = current_test(&mut tests)?;
        tests.get(key).map(|r| Arc::clone(&r.name))
    }

    /// A `lock()` that got the lock without waiting: checks and records the
    /// dependencies, then marks the lock held, in one visit to the context's record.
    #[inline]
    pub(crate) fn lock_now(&self, want: &Acquire) -> Hold {
        let context = ContextId::current();
        let fast = self.held.with_record(context, |record| {
            let mut stack = record.stack();
            self.seen_before(stack.held(), want)
                .then(|| Hold::new(record, stack.push(want)))
        });
        fast.unwrap_or_else(|| self.lock_now_slow(context, want))
    }

    /// [`State::lock_now`] for a chain not seen before: validated with no
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
        self.acquired(context, *want)
    }

    /// A wait for `want` starts: checks and records the dependencies first,
    /// so a real deadlock is reported before it hangs. Returns the context
    /// and the wait's sequence number.
    #[inline]
    pub(crate) fn wait_start(&self, want: Acquire) -> (ContextId, u64) {
        let (context, mark, deferred) = self.wait_edges(want, true);
        let seq = self.register_wait(context, want, mark);
        if let Some(deferred) = deferred {
            self.defer(context, seq, deferred);
        }
        (context, seq)
    }

    /// The dependencies of a wait for `want` (no wait registered). Returns
    /// the context and its record's last token: acquisitions after the wait
    /// began have larger tokens.
    #[inline]
    pub(crate) fn record_wait_edges(&self, want: Acquire) -> (ContextId, u64) {
        let (context, mark, _) = self.wait_edges(want, false);
        (context, mark)
    }

    /// As [`State::record_wait_edges`]; with `defer`, a possible
    /// self-deadlock is returned rather than reported (see `defer`).
    #[inline]
    fn wait_edges(&self, want: Acquire, defer: bool) -> (ContextId, u64, Option<Deferred>) {
        let context = ContextId::current();
        let (check, mark) = self.held.with_record(context, |record| {
            let stack = record.stack();
            (self.check(stack.held(), &want), stack.last_token())
        });
        let deferred = match check {
            Check::Slow(slow) => self.record(context, want, slow, defer),
            Check::Fine => None,
        };
        (context, mark, deferred)
    }

    /// Registers the wait of `context` (for the wait-for check and the
    /// watchdog) and reports the tasks stuck now, if it closes a cycle.
    /// Returns the wait's sequence number.
    pub(crate) fn register_wait(&self, context: ContextId, want: Acquire, mark: u64) -> u64 {
        let test = self.test_for_watchdog();
        let (seq, earlier) = self.waits.begin(context, want, mark, test);
        if let Some(earlier) = earlier {
            self.second_wait(context, want, earlier, seq);
        }
        if !waits::may_close_cycle(self, context, seq) {
            return seq;
        }
        if self.waits.total() > waits::ANALYSE_AT_ONCE_UP_TO {
            // A busy process: analysed later, if it still waits then (a
            // real deadlock does not move), on the confirmation thread.
            schedule(
                CONFIRM_AFTER,
                Confirm::Stuck(context, seq, want.lock.instance),
            );
            return seq;
        }
        let Some(report) = waits::cycle_report(self, context, seq) else {
            return seq;
        };
        if report.pending_wait {
            // It goes through a lock tokio handed to a pending future: its
            // task may only not have polled it yet (`join!`, `select!`).
            // Confirm it once that task had time to run.
            schedule(
                CONFIRM_AFTER,
                Confirm::Stuck(context, seq, want.lock.instance),
            );
            return seq;
        }
        self.publish_stuck(report, Panic::OnDeadlock, context, seq, want.lock.instance);
        seq
    }

    /// Publishes a "stuck now" report once per set of stuck contexts (two
    /// waiters closing one cycle at once may both find it).
    fn publish_stuck(
        &self,
        report: Report,
        panic: Panic,
        context: ContextId,
        seq: u64,
        instance: u64,
    ) {
        let mut stuck: Vec<ContextId> = report.dependencies.iter().map(|d| d.context).collect();
        stuck.sort_by_key(|c| c.to_string());
        let first_time = {
            let mut reports = lock_ignoring_poison(&self.reports);
            if reports.stuck.len() >= MAX_STUCK_REMEMBERED {
                reports.stuck.clear();
            }
            reports.stuck.insert(stuck)
        };
        if first_time {
            self.publish_for(report, panic, || self.wait_end(context, seq), instance);
        }
    }

    /// Whether this pair of sites of `class` was reported already (see
    /// [`State::first_at_sites`]), without remembering it.
    pub(crate) fn seen_at_sites(
        &self,
        class: ClassId,
        first: &'static Location<'static>,
        second: &'static Location<'static>,
    ) -> bool {
        lock_ignoring_poison(&self.reports)
            .seen
            .contains(&sites_key(class, first, second))
    }

    /// Whether a one-dependency report (self-deadlock, pool exhaustion,
    /// second wait) of `class` between these two sites is new; it is then
    /// remembered, so each pair of sites is reported once.
    pub(crate) fn first_at_sites(
        &self,
        class: ClassId,
        first: &'static Location<'static>,
        second: &'static Location<'static>,
    ) -> bool {
        lock_ignoring_poison(&self.reports)
            .seen
            .insert(sites_key(class, first, second))
    }

    /// `context` starts waiting for an instance it already has a pending
    /// wait for: tokio may grant the lock to the earlier future, which is not
    /// polled while this wait lasts. Certain when this wait blocks the
    /// thread; possible otherwise (the earlier wait may be a joined sibling
    /// future's); not reported when the earlier wait belongs to a sibling
    /// future in another span.
    #[cold]
    fn second_wait(&self, context: ContextId, want: Acquire, earlier: waits::Wait, seq: u64) {
        if earlier.span != 0 && !context::span_is_entered(earlier.span) {
            return;
        }
        // Locks only: two pending waits for permits may each get one (a
        // limiter's futures joined in one task wait side by side), and
        // executors (joins, flushes, sends) are not handed to a waiter.
        if !matches!(want.access, Access::Lock | Access::Read | Access::Write) {
            return;
        }
        let certain = want.blocking || earlier.span != 0;
        if certain && !self.first_at_sites(want.lock.class, earlier.want.site, want.site) {
            return;
        }
        let spans = self.current_spans();
        let mut dependency = Dependency {
            held: describe_instance(earlier.want.lock.class, earlier.want.created),
            held_as: earlier.want.access,
            held_at: earlier.want.site.into(),
            waited: describe_instance(want.lock.class, want.created),
            waited_as: want.access,
            waited_at: want.site.into(),
            context,
            spans,
            test: None,
        };
        dependency.test = self.current_test_name().map(|t| t.to_string());
        let report = Report {
            kind: if certain {
                report::ReportKind::SelfDeadlock
            } else {
                report::ReportKind::PossibleSelfDeadlock
            },
            dependencies: vec![dependency],
            needs_writer: false,
            long_wait: None,
            pending_wait: true,
            reader_cap: None,
        };
        if !certain {
            // Decided later: a joined sibling's wait ends, a kept future's not.
            let deferred = Deferred {
                report,
                class: want.lock.class,
                instance: want.lock.instance,
                sites: (earlier.want.site, want.site),
                conflict: Conflict::Waits(earlier.seq),
                test: None,
                since: std::time::Instant::now(),
            };
            self.defer(context, seq, deferred);
            return;
        }
        self.publish_for(
            report,
            Panic::OnReport,
            || self.wait_end(context, seq),
            want.lock.instance,
        );
    }

    /// The wait `seq` of `context` ended (acquired, or cancelled).
    #[inline]
    pub(crate) fn wait_end(&self, context: ContextId, seq: u64) {
        self.waits.end(context, seq);
        if self.deferred_count.load(Ordering::Relaxed) != 0 {
            self.take_deferred(context, seq); // it ended: no deadlock
        }
    }

    /// The wait `seq` of `context` was given up (its future dropped): a
    /// possible self-deadlock deferred for it is reported if its conflict
    /// still stands (a test's timeout cancelling a re-lock that hung).
    pub(crate) fn wait_cancelled(&self, context: ContextId, seq: u64) {
        let deferred = if self.deferred_count.load(Ordering::Relaxed) != 0 {
            self.take_deferred(context, seq)
        } else {
            Vec::new()
        };
        // Given up quickly, it is a `select!` branch that lost (a sibling
        // held the lock a moment); given up after a while, a `timeout` that
        // ran out on a wait that could not end.
        let standing: Vec<Deferred> = deferred
            .into_iter()
            .filter(|d| d.since.elapsed() >= GIVEN_UP_AFTER && self.still_conflicts(context, d))
            .collect();
        self.waits.end(context, seq);
        for deferred in standing {
            // In the waiting task (its lock future dropped): it may panic
            // as the report would have when the wait began.
            self.publish_deferred(deferred, Panic::OnReport);
        }
    }

    /// Keeps the possible self-deadlock of the wait `seq` of `context`
    /// until it is decided: dropped if the wait ends with the lock (a future
    /// joined in the same task held it and let it go), reported if the wait
    /// is given up or still lasts after [`CONFIRM_SELF_AFTER`] while the
    /// conflict stands.
    fn defer(&self, context: ContextId, seq: u64, mut deferred: Deferred) {
        let (class, (first, second)) = (deferred.class, deferred.sites);
        if self.seen_at_sites(class, first, second) {
            return; // reported before: once per pair of sites
        }
        deferred.test = self.test_of(deferred.instance);
        let kept = {
            let mut map = lock_ignoring_poison(&self.deferred);
            if map.len() >= MAX_DEFERRED {
                Err(deferred)
            } else {
                map.entry((context, seq)).or_default().push(deferred);
                self.deferred_count.store(map.len(), Ordering::Relaxed);
                Ok(())
            }
        };
        match kept {
            Ok(()) => schedule(CONFIRM_SELF_AFTER, Confirm::Deferred(context, seq)),
            // Too many undecided: report at once, as before deferring.
            Err(deferred) => self.publish_deferred(deferred, Panic::OnReport),
        }
    }

    fn take_deferred(&self, context: ContextId, seq: u64) -> Vec<Deferred> {
        let mut map = lock_ignoring_poison(&self.deferred);
        let deferred = map.remove(&(context, seq)).unwrap_or_default();
        self.deferred_count.store(map.len(), Ordering::Relaxed);
        deferred
    }

    /// At the end of test `key` (its guard's check): its undecided waits
    /// that still wait with their conflict standing lasted the rest of the
    /// test, so they are reported now, to it.
    pub(crate) fn settle_deferred(&self, key: TestKey) {
        if self.deferred_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let waits: Vec<(ContextId, u64)> = lock_ignoring_poison(&self.deferred)
            .iter()
            .filter(|(_, list)| list.iter().any(|d| d.test == Some(key)))
            .map(|(wait, _)| *wait)
            .collect();
        for (context, seq) in waits {
            self.confirm_deferred(context, seq, Panic::Never);
        }
    }

    /// Whether the conflict of `deferred` still stands for `context`: the
    /// lock it holds is still held, the earlier wait still pending.
    fn still_conflicts(&self, context: ContextId, deferred: &Deferred) -> bool {
        match deferred.conflict {
            Conflict::Holds(token) => self
                .held
                .find(context)
                .is_some_and(|r| r.stack().held().iter().any(|h| h.token == token)),
            Conflict::Waits(seq) => self.waits.pending(context, seq),
        }
    }

    /// Publishes a decided possible self-deadlock to its test, if that
    /// test is still running (not yet checked by its guard); otherwise it
    /// is printed and kept, but fails no test.
    fn publish_deferred(&self, deferred: Deferred, panic: Panic) {
        if !self.first_at_sites(deferred.class, deferred.sites.0, deferred.sites.1) {
            return;
        }
        let tests = {
            let tests = lock_ignoring_poison(&self.tests);
            deferred
                .test
                .filter(|key| tests.get(*key).is_some_and(|r| !r.checked))
                .into_iter()
                .collect()
        };
        self.publish_to(deferred.report, panic, || {}, Some(tests));
    }

    /// The confirmation of the deferred possible self-deadlocks of the wait
    /// `seq` of `context` is due: reported if it still waits with its
    /// conflict standing.
    fn confirm_deferred(&self, context: ContextId, seq: u64, panic: Panic) {
        let deferred = self.take_deferred(context, seq);
        if deferred.is_empty() || !self.waits.pending(context, seq) {
            return;
        }
        for deferred in deferred {
            if self.still_conflicts(context, &deferred) {
                self.publish_deferred(deferred, panic);
            }
        }
    }

    /// The span `serial` closed on this thread: holds the current context
    /// took in it pass to `parent` (0: the context itself).
    pub(crate) fn span_closed(&self, serial: u64, parent: u64) {
        let context = ContextId::current();
        if let Some(record) = self.held.find(context) {
            record.stack().pass_span(serial, parent);
        }
    }

    /// Changes how the acquisition `hold` holds its lock (`RwLock` downgrade).
    pub(crate) fn change_access(&self, hold: &Hold, access: Access) {
        hold.record().stack().change_access(hold.token, access);
    }

    pub(crate) fn waits(&self) -> &Waits {
        &self.waits
    }

    pub(crate) fn holders_of(&self, instance: u64) -> Vec<(ContextId, HeldLock)> {
        self.held.holders_of(instance)
    }

    /// Every held lock, by instance (see `HeldLocks::all_holders`).
    pub(crate) fn all_holders(&self) -> rustc_hash::FxHashMap<u64, Vec<(ContextId, HeldLock)>> {
        self.held.all_holders()
    }

    /// The lock waited for was acquired by `context`.
    #[inline]
    pub(crate) fn acquired(&self, context: ContextId, want: Acquire) -> Hold {
        self.held.with_record(context, |record| {
            Hold::new(record, record.stack().push(&want))
        })
    }

    /// A `try_lock` succeeded: held, but no dependency (it never waited).
    #[inline]
    pub(crate) fn try_acquired(&self, want: Acquire) -> Hold {
        self.acquired(ContextId::current(), want)
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

    pub(crate) fn cached_chains(&self) -> usize {
        self.chains.len()
    }

    pub(crate) fn chain_cache_full(&self) -> bool {
        self.chains.is_full()
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn edge_count(&self) -> usize {
        lock_ignoring_poison(&self.graph).edge_count()
    }

    pub(crate) fn live_contexts(&self) -> usize {
        self.held.live_contexts()
    }

    fn current_spans(&self) -> Vec<String> {
        context::entered_spans()
    }

    /// Keeps a report, attributes it to its test, prints it to stderr, and
    /// emits it as an `ERROR` event at target `async_lockdep` through every
    /// subscriber that has the layer; then panics if asked to (`before_panic`
    /// runs first). No internal lock is held while printing, emitting or
    /// panicking.
    pub(crate) fn publish(&self, report: Report, panic: Panic, before_panic: impl FnOnce()) {
        self.publish_to(report, panic, before_panic, None);
    }

    /// As [`State::publish`], for a report about waiting for lock instance
    /// `lock`: when the calling context's test is unknown, the report goes to
    /// the test that created that lock, if it is alive.
    pub(crate) fn publish_for(
        &self,
        report: Report,
        panic: Panic,
        before_panic: impl FnOnce(),
        lock: u64,
    ) {
        // Look the test up once here; `publish_to` falls back to every live
        // test only when neither the context's test nor the creator is known.
        let test = self.test_of(lock);
        self.publish_to(report, panic, before_panic, test.map(|key| vec![key]));
    }

    /// The test a report about waiting for lock instance `lock` belongs to:
    /// the calling context's, else the test that created the lock.
    fn test_of(&self, lock: u64) -> Option<TestKey> {
        let mut tests = lock_ignoring_poison(&self.tests);
        current_test(&mut tests).or_else(|| {
            lock_ignoring_poison(&self.created_by)
                .get(&lock)
                .copied()
                .filter(|key| tests.get(*key).is_some())
        })
    }

    /// A lock instance was made: remembers the test registered on this
    /// thread, if any, as its creator. Returns whether it did.
    pub(crate) fn note_creation(&self, instance: u64) -> bool {
        let Some(key) = CURRENT_TEST.try_with(std::cell::Cell::get).ok().flatten() else {
            return false;
        };
        let mut created_by = lock_ignoring_poison(&self.created_by);
        if created_by.len() >= MAX_CREATED_REMEMBERED {
            return false;
        }
        created_by.insert(instance, key);
        true
    }

    /// A lock instance noted by [`State::note_creation`] or
    /// [`State::note_reader_cap`] is gone.
    pub(crate) fn forget_creation(&self, instance: u64) {
        lock_ignoring_poison(&self.created_by).remove(&instance);
        lock_ignoring_poison(&self.reader_caps).remove(&instance);
    }

    /// The `RwLock` `instance` admits at most `cap` reads at once (tokio's
    /// `with_max_readers`): in the live check, a read waits once `cap` reads
    /// are held.
    pub(crate) fn note_reader_cap(&self, lock: LockRef, cap: u32) {
        lock_ignoring_poison(&self.reader_caps).insert(lock.instance, cap);
        lock_ignoring_poison(&self.class_reader_caps)
            .entry(lock.class)
            .and_modify(|c| *c = (*c).min(cap))
            .or_insert(cap);
    }

    /// The smallest reader cap of the instances of `class`, if any has one.
    pub(crate) fn class_reader_cap(&self, class: ClassId) -> Option<u32> {
        lock_ignoring_poison(&self.class_reader_caps)
            .get(&class)
            .copied()
    }

    /// The reader cap of `instance`, if it was made with one.
    pub(crate) fn reader_cap(&self, instance: u64) -> Option<u32> {
        lock_ignoring_poison(&self.reader_caps)
            .get(&instance)
            .copied()
    }

    /// The test the calling context belongs to, when a watchdog runs (long
    /// waits are reported from the watchdog's thread, which cannot tell).
    pub(crate) fn test_for_watchdog(&self) -> Option<TestKey> {
        if !waits::watchdog_running() {
            return None;
        }
        current_test(&mut lock_ignoring_poison(&self.tests))
    }

    /// A long wait's report fails only tests that asked for the watchdog:
    /// the test of the wait if it did, or, when the wait's test is unknown,
    /// every test that did. A long wait is legitimate in other tests.
    pub(crate) fn publish_long_wait(&self, report: Report, test: Option<TestKey>) {
        let keys = {
            let tests = lock_ignoring_poison(&self.tests);
            match test {
                Some(key) => tests
                    .get(key)
                    .filter(|r| r.watchdog)
                    .map(|_| key)
                    .into_iter()
                    .collect(),
                None => tests.keys(|r| r.watchdog),
            }
        };
        self.publish_to(report, Panic::Never, || {}, Some(keys));
    }

    /// As [`State::publish`], attributed to `tests` when given, else to the
    /// test of the calling context (every live test when unknown).
    fn publish_to(
        &self,
        report: Report,
        panic: Panic,
        before_panic: impl FnOnce(),
        tests_given: Option<Vec<TestKey>>,
    ) {
        let text = report.to_string();
        let max_reports = self.max_reports.load(Ordering::Relaxed);
        let (test_panics, attributed) = {
            let mut tests = lock_ignoring_poison(&self.tests);
            let keys: Vec<TestKey> = match tests_given {
                Some(keys) => keys,
                None => match current_test(&mut tests) {
                    Some(key) => vec![key],
                    // Unknown test: every test alive now is failed by it.
                    None => tests.keys(|_| true),
                },
            };
            let mut test_panics = false;
            for key in &keys {
                if let Some(record) = tests.get_mut(*key) {
                    test_panics |= match panic {
                        Panic::OnReport => record.panic_on_report,
                        Panic::OnDeadlock => record.panic_on_deadlock,
                        Panic::Never => false,
                    };
                    if record.reports.len() < max_reports {
                        record.reports.push(report.clone());
                    } else {
                        record.dropped += 1;
                    }
                }
            }
            (test_panics, !keys.is_empty())
        };
        let kind = report.kind;
        let classes = report.class_names().join(" -> ");
        let sites = report_sites(&report);
        {
            let mut reports = lock_ignoring_poison(&self.reports);
            if reports.list.len() >= max_reports {
                reports.dropped += 1;
            } else {
                reports.list.push(report);
                self.report_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.print_reports.load(Ordering::Relaxed) {
            let note = if attributed {
                "(async-lockdep: this report fails the test it belongs to)\n"
            } else {
                ""
            };
            let name = std::thread::current().name().map(str::to_owned);
            if matches!(
                name.as_deref(),
                Some(waits::WATCHDOG_THREAD | CONFIRM_THREAD)
            ) {
                // The watchdog's and the confirmation thread inherited the
                // output capture of the test that started them: write past it.
                use std::io::Write as _;
                let _ = write!(std::io::stderr(), "\n{text}{note}");
            } else {
                eprint!("\n{text}{note}");
            }
        }
        self.emit(&emit::ReportEvent {
            message: &text,
            kind,
            classes: &classes,
            sites: &sites,
        });
        let global = match panic {
            Panic::OnReport => self.panic_on_report.load(Ordering::Relaxed),
            Panic::OnDeadlock => self.panic_on_deadlock.load(Ordering::Relaxed),
            Panic::Never => false,
        };
        if (global || test_panics) && !std::thread::panicking() {
            before_panic();
            let what = if kind == report::ReportKind::DeadlockNow {
                "a deadlock (tasks stuck now)"
            } else {
                "a possible deadlock"
            };
            panic!("async-lockdep found {what}:\n{text}");
        }
    }

    /// Emits an event through every dispatcher that has the layer.
    fn emit(&self, event: &emit::ReportEvent<'_>) {
        let dispatches: Vec<Dispatch> = lock_ignoring_poison(&self.dispatches)
            .iter()
            .filter_map(WeakDispatch::upgrade)
            .collect();
        for dispatch in &dispatches {
            emit::report(dispatch, event);
        }
    }

    /// Logs `message` as an `ERROR` event through every dispatcher that has
    /// the layer, and to stderr.
    pub(crate) fn log_error(&self, message: &str) {
        if self.print_reports.load(Ordering::Relaxed) {
            eprintln!("{message}");
        }
        let dispatches: Vec<Dispatch> = lock_ignoring_poison(&self.dispatches)
            .iter()
            .filter_map(WeakDispatch::upgrade)
            .collect();
        for dispatch in &dispatches {
            emit::message(dispatch, message);
        }
    }

    pub(crate) fn reports(&self) -> Vec<Report> {
        lock_ignoring_poison(&self.reports).list.clone()
    }

    pub(crate) fn report_count(&self) -> usize {
        self.report_count.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped_reports(&self) -> usize {
        lock_ignoring_poison(&self.reports).dropped
    }

    pub(crate) fn take_reports(&self) -> Vec<Report> {
        let mut reports = lock_ignoring_poison(&self.reports);
        self.report_count.store(0, Ordering::Relaxed);
        std::mem::take(&mut reports.list)
    }

    pub(crate) fn clear_reports(&self) {
        let mut reports = lock_ignoring_poison(&self.reports);
        reports.list.clear();
        self.report_count.store(0, Ordering::Relaxed);
    }
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

/// The sites of a report's dependencies, as `held_at -> waited_at` pairs.
fn report_sites(report: &Report) -> String {
    report
        .dependencies
        .iter()
        .map(|d| format!("{} -> {}", d.held_at, d.waited_at))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The class of a lock, shown with where this instance was created.
pub(crate) fn describe_instance(
    class: ClassId,
    created: &'static Location<'static>,
) -> class::LockClass {
    let mut described = describe(class);
    described.created_at = created.into();
    described
}

pub(crate) fn describe(class: ClassId) -> class::LockClass {
    class::describe(class).unwrap_or_else(|| class::LockClass {
        name: "<unknown>".into(),
        created_at: Location::caller().into(),
        kind: class::ClassKind::Mutex,
        subclass: 0,
        type_name: None,
    })
}

/// How long a "stuck now" cycle through a lock handed to a pending future
/// must last before it is reported.
const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a possible self-deadlock of a wait (a re-lock in one task,
/// outside spans) must last before it is reported: a future joined in the
/// same task that holds the lock lets it go by then.
const CONFIRM_SELF_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a wait with a possible self-deadlock must have lasted for its
/// being given up to report it (a `timeout` running out), rather than a
/// `select!` branch losing the race.
const GIVEN_UP_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Most possible self-deadlocks waiting for their confirmation.
const MAX_DEFERRED: usize = 4096;

/// A check due later, on the confirmation thread.
#[derive(Clone, Copy, Debug)]
enum Confirm {
    /// Is the wait `seq` of the context still stuck (a cycle through a lock
    /// handed to a pending future; lock instance for attribution)?
    Stuck(ContextId, u64, u64),
    /// Does the deferred possible self-deadlock of the wait still stand?
    Deferred(ContextId, u64),
}

/// The confirmation thread's name.
pub(crate) const CONFIRM_THREAD: &str = "async-lockdep-confirm";

/// Checks due, with their time; the thread runs while there are some.
static CONFIRMATIONS: Mutex<Vec<(std::time::Instant, Confirm)>> = Mutex::new(Vec::new());

/// Whether the confirmation thread runs.
static CONFIRMING: AtomicBool = AtomicBool::new(false);

/// Runs `check` after `delay`, on the confirmation thread (started when
/// needed, gone when nothing is due).
fn schedule(delay: std::time::Duration, check: Confirm) {
    let due = std::time::Instant::now() + delay;
    lock_ignoring_poison(&CONFIRMATIONS).push((due, check));
    if CONFIRMING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name(CONFIRM_THREAD.into())
        .spawn(confirm_loop);
    if let Err(error) = spawned {
        CONFIRMING.store(false, Ordering::Release);
        let dropped = std::mem::take(&mut *lock_ignoring_poison(&CONFIRMATIONS));
        let state = engine_state();
        state.log_error(&format!(
            "async-lockdep: could not start a thread to confirm reports: {error}"
        ));
        // Decide now what could not wait.
        for (_, check) in dropped {
            if let Confirm::Deferred(context, seq) = check {
                state.confirm_deferred(context, seq, Panic::Never);
            }
        }
    }
}

fn confirm_loop() {
    let state = engine_state();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = std::time::Instant::now();
        let due: Vec<Confirm> = {
            let mut queue = lock_ignoring_poison(&CONFIRMATIONS);
            let (due, later): (Vec<_>, Vec<_>) = queue.drain(..).partition(|(at, _)| *at <= now);
            *queue = later;
            due.into_iter().map(|(_, check)| check).collect()
        };
        // No engine lock is held while checking and reporting. A panic (in
        // a user's layer receiving the report) loses that check only.
        for check in due {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match check {
                Confirm::Stuck(context, seq, instance) => {
                    if !state.waits().pending(context, seq) {
                        return; // it ended: nothing to confirm
                    }
                    if let Some(report) = waits::stuck_cycle(state, context, seq) {
                        state.publish_stuck(report, Panic::Never, context, seq, instance);
                    }
                }
                Confirm::Deferred(context, seq) => {
                    state.confirm_deferred(context, seq, Panic::Never)
                }
            }));
        }
        let mut queue = lock_ignoring_poison(&CONFIRMATIONS);
        if queue.is_empty() {
            CONFIRMING.store(false, Ordering::Release);
            drop(queue);
            // A check scheduled after the queue was seen empty but before the
            // flag fell started no thread: take it over.
            if lock_ignoring_poison(&CONFIRMATIONS).is_empty()
                || CONFIRMING.swap(true, Ordering::AcqRel)
            {
                return;
            }
        } else {
            queue.shrink_to_fit();
        }
    }
}

/// A possible self-deadlock of a wait, until it is decided (`State::defer`).
pub(crate) struct Deferred {
    pub(crate) report: Report,
    pub(crate) class: ClassId,
    pub(crate) instance: u64,
    /// The held site and the waiting site, for the once-per-sites rule.
    pub(crate) sites: (&'static Location<'static>, &'static Location<'static>),
    pub(crate) conflict: Conflict,
    /// The test it belongs to, found when the wait began.
    pub(crate) test: Option<TestKey>,
    /// When the wait began.
    pub(crate) since: std::time::Instant,
}

/// What the deferred wait conflicts with, in its own context.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Conflict {
    /// The lock the context holds (its token).
    Holds(u64),
    /// An earlier pending wait for the same lock (its sequence number).
    Waits(u64),
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
