//! Deadlocks happening now: who waits for what, the wait-for cycle check,
//! and the optional watchdog for long waits.
//!
//! Lock-order cycles are *potential* deadlocks. This module is about tasks
//! that are stuck at this moment: every pending wait of every context is
//! kept; when a new wait starts, the detector finds the waits that can never
//! end (a greatest fixed point: a wait needs any of its holders stuck, or
//! all of them for permits and reads at the reader cap) and, if a cycle of
//! them comes back to the new waiter, the tasks are deadlocked now. Only real waits get here (a lock
//! taken without waiting, or a join of a finished task, never registers), so
//! the cost stays off the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lockdep::{dependency_of, describe, Acquire, Engine, TestKey};
use crate::report::{LongWait, Report, ReportKind};
use crate::vocab::ContextId;
use rustc_hash::FxHashMap;

/// One wait in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) want: Acquire,
    pub(crate) since: Instant,
    reported_long: bool,
    /// Tells this wait from the other waits of the same context.
    pub(crate) seq: u64,
    /// The last token of the context's record when the wait began: a lock the
    /// context holds with a larger token was taken while it "waited", so the
    /// context was running (a `select!` branch), not blocked by this wait.
    pub(crate) mark: u64,
    /// The test the waiter belongs to, when a watchdog runs.
    pub(crate) test: Option<TestKey>,
    /// The span (serial) the wait began in, or 0.
    pub(crate) span: u64,
}

/// The waits in progress, by context: a context can have several pending
/// waits (a lock future polled once and kept aside, futures joined in it).
#[derive(Default)]
pub(crate) struct Waits {
    map: Mutex<WaitMap>,
    next_seq: std::sync::atomic::AtomicU64,
}

/// The pending waits by context, and how many wait for each instance.
#[derive(Default)]
struct WaitMap {
    by_context: FxHashMap<ContextId, Vec<Wait>>,
    by_instance: FxHashMap<u64, u32>,
    /// How many waits are pending, in all.
    total: usize,
    /// Contexts seen with two waits pending at once: futures running side by
    /// side in one task (`join!`, `select!`). Forgotten when full.
    concurrent: rustc_hash::FxHashSet<ContextId>,
}

/// Most contexts remembered as having had concurrent waits.
const MAX_CONCURRENT_REMEMBERED: usize = 4096;

// Read-only access to the waits by context; changes go through `begin` and
// `end`, which keep `by_instance` in step.
impl std::ops::Deref for WaitMap {
    type Target = FxHashMap<ContextId, Vec<Wait>>;

    fn deref(&self) -> &Self::Target {
        &self.by_context
    }
}

impl Waits {
    fn map(&self) -> MutexGuard<'_, WaitMap> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `context` may block another wait: it has more than one
    /// pending wait (an older one may have been handed its lock), or some
    /// pending wait is for one of the instances it `holds`.
    pub(crate) fn may_block_others(&self, context: ContextId, holds: &[u64]) -> bool {
        let map = self.map();
        map.by_context.get(&context).map_or(0, Vec::len) > 1
            || holds.iter().any(|i| map.by_instance.contains_key(i))
    }

    /// Registers a wait of `context`; returns its sequence number and a
    /// pending wait of the same context for the same instance, if any.
    pub(crate) fn begin(
        &self,
        context: ContextId,
        want: Acquire,
        mark: u64,
        test: Option<TestKey>,
    ) -> (u64, Option<Wait>) {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = Wait {
            want,
            since: Instant::now(),
            reported_long: false,
            seq,
            mark,
            test,
            span: super::context::current_span(),
        };
        let mut map = self.map();
        *map.by_instance.entry(want.lock.instance).or_default() += 1;
        map.total += 1;
        if map.by_context.get(&context).is_some_and(|w| !w.is_empty()) {
            if map.concurrent.len() >= MAX_CONCURRENT_REMEMBERED {
                map.concurrent.clear();
            }
            map.concurrent.insert(context);
        }
        let waits = map.by_context.entry(context).or_default();
        let earlier = waits
            .iter()
            .find(|w| w.want.lock.instance == want.lock.instance)
            .copied();
        waits.push(wait);
        (seq, earlier)
    }

    /// The wait `seq` of `context` ended.
    pub(crate) fn end(&self, context: ContextId, seq: u64) {
        let mut guard = self.map();
        let map = &mut *guard;
        let Some(waits) = map.by_context.get_mut(&context) else {
            return;
        };
        let Some(pos) = waits.iter().position(|w| w.seq == seq) else {
            return;
        };
        let instance = waits.remove(pos).want.lock.instance;
        if waits.is_empty() {
            map.by_context.remove(&context);
        }
        map.total -= 1;
        if let Some(count) = map.by_instance.get_mut(&instance) {
            *count -= 1;
            if *count == 0 {
                map.by_instance.remove(&instance);
            }
        }
    }

    /// The pending waits of `context`.
    pub(super) fn of(&self, context: ContextId) -> Vec<Wait> {
        self.map().get(&context).cloned().unwrap_or_default()
    }

    /// Whether `context` was seen with two waits pending at once (futures
    /// joined in one task): a sequential future waits for one thing at a time.
    pub(crate) fn had_concurrent_waits(&self, context: ContextId) -> bool {
        self.map().concurrent.contains(&context)
    }

    /// Whether the wait `seq` of `context` is still pending.
    pub(crate) fn pending(&self, context: ContextId, seq: u64) -> bool {
        self.map()
            .get(&context)
            .is_some_and(|waits| waits.iter().any(|w| w.seq == seq))
    }

    /// How many waits are pending, in all.
    pub(crate) fn total(&self) -> usize {
        self.map().total
    }

    /// Every pending wait, with its context.
    pub(super) fn all(&self) -> Vec<(ContextId, Wait)> {
        self.map()
            .iter()
            .flat_map(|(context, waits)| waits.iter().map(move |w| (*context, *w)))
            .collect()
    }

    /// Waits older than `threshold` not reported yet; marks them reported.
    fn take_long(&self, threshold: Duration) -> Vec<(ContextId, Wait)> {
        let mut map = self.map();
        let mut long = Vec::new();
        for (context, waits) in map.by_context.iter_mut() {
            for wait in waits.iter_mut() {
                if !wait.reported_long && wait.since.elapsed() >= threshold {
                    wait.reported_long = true;
                    long.push((*context, *wait));
                }
            }
        }
        long
    }

    /// How many contexts wait.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

/// The watchdog's threshold in nanoseconds (0: no watchdog running).
static WATCHDOG_NANOS: AtomicU64 = AtomicU64::new(0);

/// The watchdog thread's name.
pub(crate) const WATCHDOG_THREAD: &str = "async-lockdep-watchdog";

/// The confirmation thread's name.
pub(crate) const CONFIRM_THREAD: &str = "async-lockdep-confirm";

/// Whether the watchdog thread runs.
pub(crate) fn watchdog_running() -> bool {
    WATCHDOG_NANOS.load(Ordering::Relaxed) != 0
}

/// Starts the watchdog thread (once per process), or lowers its threshold:
/// every `threshold / 4` it reports waits older than `threshold`, once
/// each, naming the waiter and the holders.
pub(crate) fn start_watchdog(state: &'static Engine, threshold: Duration) {
    let nanos = u64::try_from(threshold.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let previous = WATCHDOG_NANOS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        (old == 0 || nanos < old).then_some(nanos)
    });
    if previous != Ok(0) {
        return; // already running; the threshold was lowered if asked
    }
    let spawned = std::thread::Builder::new()
        .name(WATCHDOG_THREAD.into())
        .spawn(move || loop {
            let threshold = Duration::from_nanos(WATCHDOG_NANOS.load(Ordering::Relaxed));
            std::thread::sleep((threshold / 4).max(Duration::from_millis(5)));
            for (waiter, wait) in state.waits().take_long(threshold) {
                state.publish_long_wait(long_wait_report(state, waiter, wait), wait.test);
            }
        });
    if let Err(error) = spawned {
        WATCHDOG_NANOS.store(0, Ordering::Relaxed);
        state.log_error(&format!(
            "async-lockdep: could not start the watchdog: {error}"
        ));
    }
}

fn long_wait_report(state: &Engine, waiter: ContextId, wait: Wait) -> Report {
    let dependencies = state
        .holders_of(wait.want.lock.instance)
        .into_iter()
        .map(|(holder, held)| dependency_of(&held, wait.want, holder, &[]))
        .collect();
    let long_wait = LongWait {
        waiter,
        lock: describe(wait.want.lock.class),
        access: wait.want.access,
        at: wait.want.site.into(),
        elapsed: wait.since.elapsed(),
    };
    Report {
        kind: ReportKind::LongWait,
        dependencies,
        needs_writer: false,
        long_wait: Some(long_wait),
        pending_wait: false,
        reader_cap: None,
        concurrent_futures: false,
        suspended_holder: None,
    }
}
