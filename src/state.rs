//! The detector's shared state and the one bookkeeping path every wrapper and
//! executor goes through (through the handles in `hooks.rs`): `lock_now`,
//! `wait_start` / `record_wait_edges` + `register_wait`, `acquired`,
//! `try_acquired`, `release` and `wait_end`.
//!
//! Hot path: a lock taken with nothing held touches one shard of the
//! held-locks map. A lock taken on top of held locks also hashes the held
//! chain and looks it up in a lock-free set of chains already validated (the
//! kernel's lockdep chain cache); only a chain never seen before takes the
//! graph's mutex. No internal lock is held while calling user code, awaiting,
//! or emitting tracing events.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing_core::dispatcher::{self, Dispatch, WeakDispatch};

use crate::class::{self, ClassId, ClassKind};
use crate::context::{chain_after, ContextId, HeldKey, HeldLock, HeldLocks, LockRef};
use crate::fxhash::FxHashSet;
use crate::graph::{Graph, Insert};
use crate::report::{Access, Dependency, Report, ReportKind};
use crate::waits::{self, Waits};

/// Limits on what the detector records (see [`crate::DetectorBuilder`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_classes: usize,
    pub(crate) max_edges: usize,
    pub(crate) max_reports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_classes: 65_536,
            max_edges: 1 << 20,
            max_reports: 1024,
        }
    }
}

/// The first-seen data of a dependency edge.
#[derive(Clone)]
struct EdgeInfo {
    held_as: Access,
    held_at: &'static Location<'static>,
    waited_as: Access,
    waited_at: &'static Location<'static>,
    context: ContextId,
    spans: Vec<String>,
}

/// A lock, how it is wanted, and where.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acquire {
    pub(crate) lock: LockRef,
    pub(crate) access: Access,
    pub(crate) site: &'static Location<'static>,
    /// Through an owned guard or permit, which may move to another task.
    pub(crate) movable: bool,
}

impl Acquire {
    /// The same acquisition, through an owned guard.
    pub(crate) fn movable(self) -> Acquire {
        Acquire {
            movable: true,
            ..self
        }
    }
}

/// Shared state of one detector.
pub(crate) struct State {
    held: HeldLocks,
    chains: ChainCache,
    graph: Mutex<Graph<EdgeInfo>>,
    reports: Mutex<Reports>,
    pub(crate) limits: Limits,
    overflowed: AtomicBool,
    overflow_announced: AtomicBool,
    pub(crate) panic_on_report: bool,
    pub(crate) panic_on_deadlock: bool,
    waits: Waits,
    dispatch: Mutex<Option<WeakDispatch>>,
    spans: OnceLock<fn(&Dispatch) -> Vec<String>>,
    report_count: AtomicUsize,
    new_edges: AtomicU64,
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

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Live deadlocks remembered for de-duplication before the memory is reset.
const MAX_STUCK_REMEMBERED: usize = 4096;

/// How many detectors exist: while none does, wrappers skip the dispatcher
/// look-up entirely.
static DETECTORS_ALIVE: AtomicUsize = AtomicUsize::new(0);

#[inline]
pub(crate) fn any_detector_alive() -> bool {
    detectors_alive() > 0
}

#[inline]
pub(crate) fn detectors_alive() -> usize {
    DETECTORS_ALIVE.load(Ordering::Acquire)
}

impl Drop for State {
    fn drop(&mut self) {
        DETECTORS_ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl State {
    pub(crate) fn new(limits: Limits, panic_on_report: bool, panic_on_deadlock: bool) -> State {
        DETECTORS_ALIVE.fetch_add(1, Ordering::Release);
        State {
            held: HeldLocks::default(),
            chains: ChainCache::new(1 << 14),
            graph: Mutex::new(Graph::default()),
            reports: Mutex::new(Reports::default()),
            limits,
            overflowed: AtomicBool::new(false),
            overflow_announced: AtomicBool::new(false),
            panic_on_report,
            panic_on_deadlock,
            waits: Waits::default(),
            dispatch: Mutex::new(None),
            spans: OnceLock::new(),
            report_count: AtomicUsize::new(0),
            new_edges: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_dispatch(&self, dispatch: &Dispatch) {
        *lock_ignoring_poison(&self.dispatch) = Some(dispatch.downgrade());
    }

    pub(crate) fn set_span_reader(&self, reader: fn(&Dispatch) -> Vec<String>) {
        let _ = self.spans.set(reader);
    }

    /// A `lock()` that got the lock without waiting: checks and records the
    /// dependencies, then marks the lock held, in one visit to the shard.
    #[inline]
    pub(crate) fn lock_now(&self, want: Acquire) -> HeldKey {
        let context = ContextId::current();
        let mut shard = self.held.shard(context);
        let stack = shard.stack_of(context);
        let slow = match self.check(stack.held(), want) {
            Check::Fine => return stack.push(want.lock, want.access, want.site, want.movable),
            Check::Slow(slow) => slow,
        };
        drop(shard);
        self.record(context, want, slow);
        self.acquired(context, want)
    }

    /// A wait for `want` starts: checks and records the dependencies first,
    /// so a real deadlock is reported before it hangs.
    #[inline]
    pub(crate) fn wait_start(&self, want: Acquire) -> ContextId {
        let (context, mark) = self.record_wait_edges(want);
        self.register_wait(context, want, mark);
        context
    }

    /// The dependencies of a wait for `want` (no wait registered). Returns
    /// the context and its shard's last token: acquisitions after the wait
    /// began have larger tokens.
    #[inline]
    pub(crate) fn record_wait_edges(&self, want: Acquire) -> (ContextId, u64) {
        let context = ContextId::current();
        let (check, mark) = {
            let shard = self.held.shard(context);
            (self.check(shard.held(context), want), shard.last_token())
        };
        if let Check::Slow(slow) = check {
            self.record(context, want, slow);
        }
        (context, mark)
    }

    /// Registers the wait of `context` (for the wait-for check and the
    /// watchdog) and reports the tasks stuck now, if it closes a cycle.
    pub(crate) fn register_wait(&self, context: ContextId, want: Acquire, mark: u64) {
        self.waits.begin(context, want, mark);
        let Some(report) = waits::stuck_cycle(self, context) else {
            return;
        };
        // Two waiters closing one cycle at once may both find it.
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
            if self.panic_on_deadlock {
                // The panic unwinds before the caller's wait guard exists.
                self.waits.end(context);
            }
            self.publish(report, self.panic_on_deadlock);
        }
    }

    /// A wait of `context` ended (acquired, or cancelled).
    #[inline]
    pub(crate) fn wait_end(&self, context: ContextId) {
        self.waits.end(context);
    }

    /// Changes how the acquisition `key` holds its lock (`RwLock` downgrade).
    pub(crate) fn change_access(&self, key: HeldKey, access: Access) {
        self.held.shard(key.context).change_access(key, access);
    }

    pub(crate) fn waits(&self) -> &Waits {
        &self.waits
    }

    pub(crate) fn holders_of(&self, instance: u64) -> Vec<(ContextId, HeldLock)> {
        self.held.holders_of(instance)
    }

    /// The lock waited for was acquired by `context`.
    #[inline]
    pub(crate) fn acquired(&self, context: ContextId, want: Acquire) -> HeldKey {
        self.held
            .shard(context)
            .push(context, want.lock, want.access, want.site, want.movable)
    }

    /// A `try_lock` succeeded: held, but no dependency (it never waited).
    #[inline]
    pub(crate) fn try_acquired(&self, want: Acquire) -> HeldKey {
        self.acquired(ContextId::current(), want)
    }

    /// The acquisition `key` ended, wherever the guard is dropped.
    #[inline]
    pub(crate) fn release(&self, key: HeldKey) {
        self.held.shard(key.context).remove(key);
    }

    /// Reports that the calling context waits for work of the executor it is
    /// running (`want.lock`), which cannot start before it finishes.
    pub(crate) fn report_self_wait(&self, want: Acquire) {
        let context = ContextId::current();
        let held = self.held_by(context);
        let Some(held) = held.iter().find(|h| h.lock.instance == want.lock.instance) else {
            return;
        };
        let spans = self.current_spans();
        if let Some(report) = self.self_deadlock(held, want, context, &spans, false) {
            self.publish(report, self.panic_on_report);
        }
    }

    /// The report for `context` waiting for what it holds (`held`), unless
    /// the same pair of sites was reported before.
    fn self_deadlock(
        &self,
        held: &HeldLock,
        want: Acquire,
        context: ContextId,
        spans: &[String],
        needs_writer: bool,
    ) -> Option<Report> {
        let key = (
            want.lock.class,
            held.site as *const _ as usize,
            want.site as *const _ as usize,
        );
        if !lock_ignoring_poison(&self.reports).seen.insert(key) {
            return None;
        }
        Some(Report {
            kind: ReportKind::SelfDeadlock,
            dependencies: vec![dependency_of(held, want, context, spans)],
            needs_writer,
            long_wait: None,
        })
    }

    /// Whether the calling context holds the lock (or executor) `instance`.
    pub(crate) fn current_context_holds(&self, instance: u64) -> bool {
        let context = ContextId::current();
        self.held
            .shard(context)
            .held(context)
            .iter()
            .any(|h| h.lock.instance == instance)
    }

    /// The locks `context` holds now, oldest first.
    pub(crate) fn held_by(&self, context: ContextId) -> Vec<HeldLock> {
        self.held.snapshot_of(context)
    }

    fn check(&self, held: &[HeldLock], want: Acquire) -> Check {
        let Some(top) = held.last() else {
            return Check::Fine;
        };
        let mut same = None;
        for h in held {
            if h.lock.instance == want.lock.instance && !h.movable {
                if let Some(needs_writer) = self_conflict(h.access, want.access) {
                    same = Some((*h, needs_writer));
                }
            }
        }
        let chain = chain_after(top.chain, want.lock, want.access);
        if same.is_none() && self.chains.contains(chain) {
            return Check::Fine;
        }
        Check::Slow(Slow {
            held: held.to_vec(),
            chain,
            same,
        })
    }

    /// The slow path: a chain never validated before.
    #[cold]
    fn record(&self, context: ContextId, want: Acquire, slow: Slow) {
        let spans = self.current_spans();
        let mut reports = Vec::new();
        if let Some((held, needs_writer)) = slow.same {
            reports.extend(self.self_deadlock(&held, want, context, &spans, needs_writer));
        }
        let mut complete = true;
        let mut cycles = Vec::new();
        {
            let mut graph = lock_ignoring_poison(&self.graph);
            for held in &slow.held {
                if held.lock.instance == want.lock.instance {
                    continue;
                }
                if held.lock.class == want.lock.class
                    && class::kind_of(held.lock.class) == ClassKind::Task
                {
                    // A task joining a task spawned at the same site (recursive
                    // spawning) waits downward only: not a dependency.
                    continue;
                }
                if self.over_limits(&graph, held.lock.class, want.lock.class) {
                    complete = false;
                    continue;
                }
                let info = || EdgeInfo {
                    held_as: held.access,
                    held_at: held.site,
                    waited_as: want.access,
                    waited_at: want.site,
                    context,
                    spans: spans.clone(),
                };
                match graph.insert(held.lock.class, want.lock.class, info) {
                    Insert::Known => {
                        // Keep the strongest kind seen: a dependency first
                        // seen between reads and later with a write blocks
                        // without any extra writer (lockdep merges these too).
                        let new = info();
                        if let Some(old) = graph.edge_mut(held.lock.class, want.lock.class) {
                            if strength(&new) > strength(old) {
                                *old = new;
                            }
                        }
                    }
                    Insert::New => {
                        self.new_edges.fetch_add(1, Ordering::Relaxed);
                    }
                    Insert::Cycle(path) => {
                        let mut edges = vec![(held.lock.class, want.lock.class, info())];
                        for pair in path.windows(2) {
                            if let Some(edge) = graph.edge(pair[0], pair[1]) {
                                edges.push((pair[0], pair[1], edge.clone()));
                            }
                        }
                        cycles.push((path.len() == 1, edges));
                    }
                }
            }
        }
        for (recursive, edges) in cycles {
            reports.push(cycle_report(recursive, edges));
        }
        let same_instance_held = slow
            .held
            .iter()
            .any(|h| h.lock.instance == want.lock.instance);
        if complete && slow.same.is_none() && !same_instance_held {
            self.chains.insert(slow.chain);
        }
        if !complete {
            self.announce_overflow();
        }
        for report in reports {
            self.publish(report, self.panic_on_report);
        }
    }

    fn over_limits(&self, graph: &Graph<EdgeInfo>, from: ClassId, to: ClassId) -> bool {
        if graph.edge(from, to).is_some() {
            return false;
        }
        let new_nodes = usize::from(!graph.has_node(from)) + usize::from(!graph.has_node(to));
        let over = graph.edge_count() >= self.limits.max_edges
            || graph.node_count() + new_nodes > self.limits.max_classes;
        if over {
            self.overflowed.store(true, Ordering::Relaxed);
        }
        over
    }

    /// Logs the overflow once, after the graph's lock is released.
    fn announce_overflow(&self) {
        if self.overflowed() && !self.overflow_announced.swap(true, Ordering::Relaxed) {
            self.log_error(&format!(
                "async-lockdep: limit reached (max {} classes, {} dependencies); no new \
                 dependencies are recorded from now on. Locks keep working and cycles already \
                 found stay reported.",
                self.limits.max_classes, self.limits.max_edges
            ));
        }
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
        match self.spans.get() {
            Some(reader) => dispatcher::get_default(reader),
            None => Vec::new(),
        }
    }

    /// Stores a report and logs it as an `ERROR` event at target
    /// `async_lockdep`, with no internal lock held.
    pub(crate) fn publish(&self, report: Report, may_panic: bool) {
        let text = report.to_string();
        {
            let mut reports = lock_ignoring_poison(&self.reports);
            if reports.list.len() >= self.limits.max_reports {
                reports.dropped += 1;
            } else {
                reports.list.push(report);
                self.report_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.log_error(&format!("\n{text}"));
        if may_panic && !std::thread::panicking() {
            panic!("async-lockdep found a possible deadlock:\n{text}");
        }
    }

    /// Logs `message` as an `ERROR` event to the dispatcher this detector is
    /// installed in, from any thread and from inside other layers' callbacks.
    pub(crate) fn log_error(&self, message: &str) {
        let dispatch = lock_ignoring_poison(&self.dispatch)
            .as_ref()
            .and_then(WeakDispatch::upgrade);
        crate::emit::error(dispatch.as_ref(), message);
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

/// How many sides of a dependency block regardless of queued writers.
fn strength(edge: &EdgeInfo) -> u8 {
    u8::from(edge.held_as != Access::Read) + u8::from(edge.waited_as != Access::Read)
}

/// For a second acquisition of the same instance: `Some(needs_writer)` when
/// it can deadlock, `None` when it cannot (semaphore permits).
fn self_conflict(held: Access, wanted: Access) -> Option<bool> {
    match (held, wanted) {
        (Access::Permits, _) | (_, Access::Permits) => None,
        (Access::RunTask, _) => None,
        (Access::RunWork, Access::Flush | Access::Destroy) => Some(false),
        (Access::RunWork, _) => None,
        (Access::Read, Access::Read) => Some(true),
        _ => Some(false),
    }
}

enum Check {
    Fine,
    Slow(Slow),
}

struct Slow {
    held: Vec<HeldLock>,
    chain: u64,
    same: Option<(HeldLock, bool)>,
}

pub(crate) fn describe(class: ClassId) -> crate::class::LockClass {
    class::describe(class).unwrap_or_else(|| crate::class::LockClass {
        name: "<unknown>".into(),
        created_at: Location::caller(),
        kind: ClassKind::Mutex,
        subclass: 0,
    })
}

pub(crate) fn dependency_of(
    held: &HeldLock,
    want: Acquire,
    context: ContextId,
    spans: &[String],
) -> Dependency {
    Dependency {
        held: describe(held.lock.class),
        held_as: held.access,
        held_at: held.site,
        waited: describe(want.lock.class),
        waited_as: want.access,
        waited_at: want.site,
        context,
        spans: spans.to_vec(),
    }
}

fn cycle_report(recursive: bool, edges: Vec<(ClassId, ClassId, EdgeInfo)>) -> Report {
    let dependencies: Vec<Dependency> = edges
        .into_iter()
        .map(|(from, to, e)| Dependency {
            held: describe(from),
            held_as: e.held_as,
            held_at: e.held_at,
            waited: describe(to),
            waited_as: e.waited_as,
            waited_at: e.waited_at,
            context: e.context,
            spans: e.spans,
        })
        .collect();
    let n = dependencies.len();
    let needs_writer = (0..n).any(|i| {
        dependencies[i].waited_as == Access::Read
            && dependencies[(i + 1) % n].held_as == Access::Read
    });
    let kind = if recursive {
        ReportKind::RecursiveLocking
    } else {
        ReportKind::CircularDependency
    };
    Report {
        kind,
        dependencies,
        needs_writer,
        long_wait: None,
    }
}

/// A lock-free, insert-only set of validated chain hashes (open addressing,
/// linear probing). When full, lookups miss and the slow path runs: slower,
/// never wrong.
struct ChainCache {
    slots: Box<[AtomicU64]>,
}

const PROBES: usize = 8;

impl ChainCache {
    fn new(size: usize) -> ChainCache {
        ChainCache {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn contains(&self, chain: u64) -> bool {
        let chain = chain.max(1);
        let mask = self.slots.len() - 1;
        for i in 0..PROBES {
            match self.slots[(chain as usize).wrapping_add(i) & mask].load(Ordering::Acquire) {
                0 => return false,
                found if found == chain => return true,
                _ => {}
            }
        }
        false
    }

    fn insert(&self, chain: u64) {
        let chain = chain.max(1);
        let mask = self.slots.len() - 1;
        for i in 0..PROBES {
            let slot = &self.slots[(chain as usize).wrapping_add(i) & mask];
            match slot.compare_exchange(0, chain, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(found) if found == chain => return,
                Err(_) => {}
            }
        }
    }
}
