//! Deadlocks happening now: who waits for what, the wait-for cycle check,
//! and the optional watchdog for long waits.
//!
//! Lock-order cycles are *potential* deadlocks. This module is about tasks
//! that are stuck at this moment: each context that is waiting has one
//! record; when a new wait starts, the detector follows "waits for a lock
//! held by a context that waits for ..." and, if it comes back to the new
//! waiter, the tasks are deadlocked now. Only real waits get here (a lock
//! taken without waiting, or a join of a finished task, never registers), so
//! the cost stays off the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lockdep::held::HeldLock;
use crate::lockdep::{dependency_of, describe, Acquire, State, TestKey};
use crate::report::{LongWait, Report, ReportKind};
use crate::vocab::Access;
use crate::vocab::ContextId;
use rustc_hash::FxHashMap;

/// One wait in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) want: Acquire,
    since: Instant,
    reported_long: bool,
    /// Tells this wait from the other waits of the same context.
    pub(crate) seq: u64,
    /// The last token of the context's shard when the wait began: a lock the
    /// context holds with a larger token was taken while it "waited", so the
    /// context was running (a `select!` branch), not blocked by this wait.
    mark: u64,
    /// The test the waiter belongs to, when a watchdog runs.
    pub(crate) test: Option<TestKey>,
    /// The span (serial) the wait began in, or 0.
    pub(crate) span: u64,
}

/// The waits in progress, by context: a context can have several pending
/// waits (a lock future polled once and kept aside, futures joined in it).
#[derive(Default)]
pub(crate) struct Waits {
    map: Mutex<FxHashMap<ContextId, Vec<Wait>>>,
    next_seq: std::sync::atomic::AtomicU64,
}

impl Waits {
    fn map(&self) -> MutexGuard<'_, FxHashMap<ContextId, Vec<Wait>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let waits = map.entry(context).or_default();
        let earlier = waits
            .iter()
            .find(|w| w.want.lock.instance == want.lock.instance)
            .copied();
        waits.push(wait);
        (seq, earlier)
    }

    /// The wait `seq` of `context` ended.
    pub(crate) fn end(&self, context: ContextId, seq: u64) {
        let mut map = self.map();
        if let Some(waits) = map.get_mut(&context) {
            waits.retain(|w| w.seq != seq);
            if waits.is_empty() {
                map.remove(&context);
            }
        }
    }

    /// The pending waits of `context`.
    fn of(&self, context: ContextId) -> Vec<Wait> {
        self.map().get(&context).cloned().unwrap_or_default()
    }

    /// Whether a context other than `except` waits to write `instance`.
    fn writer_queued(&self, instance: u64, except: ContextId) -> bool {
        self.map().iter().any(|(context, waits)| {
            *context != except
                && waits
                    .iter()
                    .any(|w| w.want.lock.instance == instance && w.want.access == Access::Write)
        })
    }

    /// Whether the wait `seq` of `context` is still pending.
    fn pending(&self, context: ContextId, seq: u64) -> bool {
        self.map()
            .get(&context)
            .is_some_and(|waits| waits.iter().any(|w| w.seq == seq))
    }

    /// Waits older than `threshold` not reported yet; marks them reported.
    fn take_long(&self, threshold: Duration) -> Vec<(ContextId, Wait)> {
        let mut map = self.map();
        let mut long = Vec::new();
        for (context, waits) in map.iter_mut() {
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

/// Whether a holder holding with `held` blocks a waiter wanting `wanted`.
fn blocks(held: Access, wanted: Access) -> bool {
    match (held, wanted) {
        // Semaphores block only when every permit is taken: not knowable here.
        (Access::Permits, _) | (_, Access::Permits) => false,
        (Access::Read, Access::Read) => false,
        (Access::RunWork | Access::RunTask, wanted) => wanted.is_executor_wait(),
        // A receiver busy between two `recv` calls keeps a full channel full.
        (Access::Receive, wanted) => wanted == Access::Send,
        (_, Access::Send) => false,
        (_, wanted) => !wanted.is_executor_wait(),
    }
}

/// Looks for a cycle of waits through `waiter`, which just started waiting
/// for `want`. Returns the report if the contexts are stuck now.
pub(crate) fn stuck_cycle(state: &State, waiter: ContextId, seq: u64) -> Option<Report> {
    if state.waits().len() < 2 {
        return None; // a cycle of waits needs another waiter (this one is registered)
    }
    let first = state
        .waits()
        .of(waiter)
        .into_iter()
        .find(|w| w.seq == seq)?;
    let mut chain = vec![(waiter, first)];
    let mut blockers = Vec::new();
    if !search(state, &mut chain, &mut blockers) {
        return None;
    }
    // The search read holders and waits at different moments; a task that
    // released a lock and started another wait in between could join two
    // states into a cycle that never existed. A real deadlock does not move:
    // check every link against the live state, give the other threads a
    // moment, and check again.
    if !still_stuck(state, &chain, &blockers) {
        return None;
    }
    std::thread::yield_now();
    if !still_stuck(state, &chain, &blockers) {
        return None;
    }
    // blockers[i] is held by chain[i + 1] (by the waiter for the last one)
    // and blocks chain[i]'s wait.
    let n = chain.len();
    let dependencies: Vec<_> = (0..n)
        .map(|i| {
            let (context, wait) = chain[i];
            let held = blockers[(i + n - 1) % n];
            dependency_of(&held, wait.want, context, &[])
        })
        .collect();
    // blockers[i] blocks chain[i]'s wait: a read blocked by a read is one
    // queued behind a writer.
    let behind_writer = (0..n)
        .any(|i| chain[i].1.want.access == Access::Read && blockers[i].access == Access::Read);
    Some(Report {
        kind: ReportKind::DeadlockNow,
        dependencies,
        needs_writer: behind_writer,
        long_wait: None,
        pending_wait: false,
    })
}

const MAX_DEPTH: usize = 16;

fn search(state: &State, chain: &mut Vec<(ContextId, Wait)>, blockers: &mut Vec<HeldLock>) -> bool {
    let Some(&(context, wait)) = chain.last() else {
        return false;
    };
    if chain.len() > MAX_DEPTH {
        return false;
    }
    let want = wait.want;
    // tokio's RwLock is write-preferring: a read waits behind a queued writer,
    // so readers then block readers; so they do once the reader cap is reached.
    let holders = state.holders_of(want.lock.instance);
    let at_cap = || {
        state.reader_cap(want.lock.instance).is_some_and(|cap| {
            let reads = holders
                .iter()
                .filter(|(_, h)| h.access == Access::Read)
                .count();
            reads >= cap as usize
        })
    };
    let reads_blocked = want.access == Access::Read
        && (state.waits().writer_queued(want.lock.instance, context) || at_cap());
    for (holder, held) in holders.iter().copied() {
        let read_behind_writer =
            reads_blocked && held.access == Access::Read && want.access == Access::Read;
        // An owned guard may have moved to a task that is not stuck at all.
        if holder == context
            || held.movable
            || !(blocks(held.access, want.access) || read_behind_writer)
        {
            continue;
        }
        if holder == chain[0].0 {
            blockers.push(held);
            return true;
        }
        if chain.iter().any(|(c, _)| *c == holder) {
            continue;
        }
        for next in state.waits().of(holder) {
            if held.token > next.mark {
                continue; // taken after its wait began: the holder is running
            }
            chain.push((holder, next));
            blockers.push(held);
            if search(state, chain, blockers) {
                return true;
            }
            chain.pop();
            blockers.pop();
        }
    }
    false
}

/// Whether every context of `chain` still waits the same wait, and still
/// holds the lock that blocks the previous one.
fn still_stuck(state: &State, chain: &[(ContextId, Wait)], blockers: &[HeldLock]) -> bool {
    let n = chain.len();
    (0..n).all(|i| {
        let (context, wait) = chain[i];
        let same_wait = state.waits().pending(context, wait.seq);
        let holder = chain[(i + 1) % n].0;
        let blocker = blockers[i];
        let still_held = state
            .held_by(holder)
            .iter()
            .any(|h| h.token == blocker.token && h.lock.instance == blocker.lock.instance);
        same_wait && still_held
    })
}

/// The watchdog's threshold in nanoseconds (0: no watchdog running).
static WATCHDOG_NANOS: AtomicU64 = AtomicU64::new(0);

/// The watchdog thread's name.
pub(crate) const WATCHDOG_THREAD: &str = "async-lockdep-watchdog";

/// Whether the watchdog thread runs.
pub(crate) fn watchdog_running() -> bool {
    WATCHDOG_NANOS.load(Ordering::Relaxed) != 0
}

/// Starts the watchdog thread (once per process), or lowers its threshold:
/// every `threshold / 4` it reports waits older than `threshold`, once
/// each, naming the waiter and the holders.
pub(crate) fn start_watchdog(state: &'static State, threshold: Duration) {
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

fn long_wait_report(state: &State, waiter: ContextId, wait: Wait) -> Report {
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
    }
}
