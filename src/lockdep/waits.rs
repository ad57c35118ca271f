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
    /// The last token of the context's record when the wait began: a lock the
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
    map: Mutex<Pending>,
    next_seq: std::sync::atomic::AtomicU64,
}

/// The pending waits by context, and how many wait for each instance.
#[derive(Default)]
struct Pending {
    by_context: FxHashMap<ContextId, Vec<Wait>>,
    by_instance: FxHashMap<u64, u32>,
    /// How many waits are pending, in all.
    total: usize,
}

// Read-only access to the waits by context; changes go through `begin` and
// `end`, which keep `by_instance` in step.
impl std::ops::Deref for Pending {
    type Target = FxHashMap<ContextId, Vec<Wait>>;

    fn deref(&self) -> &Self::Target {
        &self.by_context
    }
}

impl Waits {
    fn map(&self) -> MutexGuard<'_, Pending> {
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
    fn of(&self, context: ContextId) -> Vec<Wait> {
        self.map().get(&context).cloned().unwrap_or_default()
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
    fn all(&self) -> Vec<(ContextId, Wait)> {
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

/// Whether the wait `seq` of `waiter` may be part of a cycle of waits now:
/// the cheap checks before the analysis.
pub(crate) fn may_close_cycle(state: &State, waiter: ContextId, seq: u64) -> bool {
    if state.waits().len() < 2 && !waits_for_permits(state, waiter, seq) {
        return false; // a cycle of waits needs another waiter (this one is registered)
    }
    // A waiter with no other pending wait, none of whose holds anybody
    // waits for, blocks nobody now: no cycle of waits goes through it (if
    // one forms later, the wait that closes it finds it). Thousands of tasks
    // queued on one busy mutex, holding nothing or locks of their own, are
    // this case; the analysis would read every context's holds for each.
    state
        .waits()
        .may_block_others(waiter, &state.held_instances(waiter))
}

/// Past this many pending waits, a wait that may close a cycle is analysed
/// later, if it still waits (see `State::register_wait`): each analysis
/// reads every pending wait and held lock, so with many waits pending it is
/// dear, and most waits of a busy process (tasks holding a permit while
/// queued on a lock) end long before.
pub(crate) const ANALYSE_AT_ONCE_UP_TO: usize = 1024;

/// Looks for a cycle of waits through `waiter`, which started the wait
/// `seq`. Returns the report if the contexts are stuck now.
pub(crate) fn stuck_cycle(state: &State, waiter: ContextId, seq: u64) -> Option<Report> {
    if !may_close_cycle(state, waiter, seq) {
        return None;
    }
    cycle_report(state, waiter, seq)
}

/// [`stuck_cycle`] once [`may_close_cycle`] said yes: the analysis.
pub(crate) fn cycle_report(state: &State, waiter: ContextId, seq: u64) -> Option<Report> {
    // The analysis reads holders and waits at different moments; a task that
    // released a lock and started another wait in between could join two
    // states into a cycle that never existed, and a lock granted to a
    // waiting future is taken as soon as its task polls it. A real deadlock
    // does not move: find it, give the other threads a moment, find it again.
    Analysis::new(state, waiter).cycle_through(waiter, seq)?;
    std::thread::yield_now();
    let (chain, blockers) = Analysis::new(state, waiter).cycle_through(waiter, seq)?;
    // blockers[i] is held by chain[i + 1] (by the waiter for the last one)
    // and blocks chain[i]'s wait.
    let n = chain.len();
    let dependencies: Vec<_> = (0..n)
        .map(|i| {
            let (context, wait) = chain[i];
            let held = blockers[(i + n - 1) % n].held;
            dependency_of(&held, wait.want, context, &[])
        })
        .collect();
    let reads_blocked: Vec<&Hold> = (0..n)
        .filter(|&i| {
            chain[i].1.want.access == Access::Read && blockers[i].held.access == Access::Read
        })
        .map(|i| &blockers[i])
        .collect();
    let mut report = Report {
        kind: ReportKind::DeadlockNow,
        dependencies,
        needs_writer: !reads_blocked.is_empty(),
        long_wait: None,
        pending_wait: blockers.iter().any(|b| b.granted.is_some()),
        reader_cap: None,
    };
    // A read blocked by reads: name the reader cap when it, not a queued
    // writer, is what blocks it.
    report.reader_cap = reads_blocked.iter().find_map(|b| b.at_cap);
    Some(report)
}

/// Whether the wait `seq` of `context` is for semaphore permits (it can be
/// stuck on its own permits alone).
fn waits_for_permits(state: &State, context: ContextId, seq: u64) -> bool {
    state
        .waits()
        .of(context)
        .iter()
        .any(|w| w.seq == seq && w.want.access == Access::Permits)
}

/// A cycle of waits: the waits in order, and for each the hold (of the next
/// one's context, of the first one's for the last) that blocks it.
type Cycle = (Vec<(ContextId, Wait)>, Vec<Hold>);

/// A lock held by a context, as one of the things a wait waits for.
#[derive(Clone, Copy, Debug)]
struct Hold {
    holder: ContextId,
    held: HeldLock,
    /// Not held yet: the lock is free of holders and this is the oldest
    /// pending wait for it (its sequence number), which tokio hands the lock
    /// to (its FIFO order) whether or not its future is polled again.
    granted: Option<u64>,
    /// For a read blocked by reads at the reader cap: that cap.
    at_cap: Option<u32>,
}

/// What one wait waits for: `Any` such hold staying held blocks it (a lock
/// one holder at a time, reads behind a queued writer, work), or `All` of
/// them (permits, reads at the reader cap: any release may let it through).
#[derive(Debug)]
struct Blocked {
    holds: Vec<Hold>,
    all: bool,
}

/// The waits around one new wait, and which of them can never end.
struct Analysis {
    /// Every explored context's pending waits, with what blocks each (`None`:
    /// nothing known blocks it, so it may end).
    waits: Vec<(ContextId, Wait, Option<Blocked>)>,
    /// `stuck[i]`: waits[i] can never end, as far as the detector can see.
    stuck: Vec<bool>,
    /// The indices in `waits` of each context's waits.
    by_context: FxHashMap<ContextId, Vec<usize>>,
}

/// How many contexts the analysis explores around a new wait.
const MAX_CONTEXTS: usize = 64;

/// Past this many pending waits in the process, new waits are not analysed:
/// the watchdog still reports long waits. Waits that block nobody (most of
/// a crowd queued on one lock) skip the analysis before this bound counts;
/// the bound caps the rest (futures joined on a limiter, hand-over-hand
/// chains), whose every wait reads every pending wait and held lock.
const MAX_WAITS: usize = 8_192;

impl Analysis {
    /// Explores the contexts reachable from `start` through holds and finds
    /// the waits that can never end: the greatest set where each wait's
    /// holds (any or all, as it needs) belong to contexts whose waits begun
    /// after taking them are all in the set.
    fn new(state: &State, start: ContextId) -> Analysis {
        if state.waits().total() > MAX_WAITS {
            return Analysis {
                waits: Vec::new(),
                stuck: Vec::new(),
                by_context: FxHashMap::default(),
            };
        }
        let all_waits = state.waits().all();
        let mut waits_of: FxHashMap<ContextId, Vec<Wait>> = FxHashMap::default();
        for (context, wait) in &all_waits {
            waits_of.entry(*context).or_default().push(*wait);
        }
        let holders = state.all_holders();
        let mut contexts = vec![start];
        let mut waits = Vec::new();
        let mut next = 0;
        while next < contexts.len() && next < MAX_CONTEXTS {
            let context = contexts[next];
            next += 1;
            for &wait in waits_of.get(&context).map_or(&[][..], Vec::as_slice) {
                let blocked = blocked_by(state, context, wait, &all_waits, &holders);
                if let Some(blocked) = &blocked {
                    for hold in &blocked.holds {
                        if !contexts.contains(&hold.holder) {
                            contexts.push(hold.holder);
                        }
                    }
                }
                waits.push((context, wait, blocked));
            }
        }
        let mut by_context: FxHashMap<ContextId, Vec<usize>> = FxHashMap::default();
        for (i, (context, ..)) in waits.iter().enumerate() {
            by_context.entry(*context).or_default().push(i);
        }
        let mut analysis = Analysis {
            stuck: vec![true; waits.len()],
            waits,
            by_context,
        };
        loop {
            let mut changed = false;
            for i in 0..analysis.waits.len() {
                if analysis.stuck[i] && !analysis.wait_stuck(i) {
                    analysis.stuck[i] = false;
                    changed = true;
                }
            }
            if !changed {
                return analysis;
            }
        }
    }

    /// Whether the wait `i` stays blocked given the current `stuck` set.
    fn wait_stuck(&self, i: usize) -> bool {
        let (_, _, Some(blocked)) = &self.waits[i] else {
            return false;
        };
        if blocked.all {
            blocked.holds.iter().all(|h| self.hold_stuck(h))
        } else {
            blocked.holds.iter().any(|h| self.hold_stuck(h))
        }
    }

    /// The waits of `hold`'s holder that keep it held: those begun after it
    /// was taken (a wait begun before, with the lock taken since, shows the
    /// holder ran meanwhile: a `select!` branch, a future kept aside).
    fn keeping(&self, hold: &Hold) -> impl Iterator<Item = usize> + '_ {
        let hold = *hold;
        let of_holder = self
            .by_context
            .get(&hold.holder)
            .map_or(&[][..], Vec::as_slice);
        of_holder.iter().copied().filter(move |&j| {
            let wait = &self.waits[j].1;
            match hold.granted {
                Some(granted) => wait.seq > granted,
                None => wait.mark >= hold.held.token,
            }
        })
    }

    /// Whether `hold` is never released: every wait keeping it is stuck (and
    /// there is one).
    fn hold_stuck(&self, hold: &Hold) -> bool {
        let mut keeping = self.keeping(hold).peekable();
        keeping.peek().is_some() && keeping.all(|j| self.stuck[j])
    }

    /// A cycle of stuck waits through the wait `seq` of `waiter`: the waits
    /// in order, and for each the hold (of the next one's context) that
    /// blocks it.
    fn cycle_through(&self, waiter: ContextId, seq: u64) -> Option<Cycle> {
        let first = (0..self.waits.len())
            .find(|&i| self.waits[i].0 == waiter && self.waits[i].1.seq == seq)?;
        if !self.stuck[first] {
            return None;
        }
        let mut path = vec![first];
        let mut holds = Vec::new();
        let mut visited = vec![false; self.waits.len()];
        self.extend(&mut path, &mut holds, &mut visited).then(|| {
            let chain = path
                .iter()
                .map(|&i| (self.waits[i].0, self.waits[i].1))
                .collect();
            (chain, holds)
        })
    }

    /// Follows stuck holds from the last wait of `path` back to its first
    /// context. Each wait is entered once (`visited`): the search stays
    /// linear, at the price of a cycle only reachable along a path the first
    /// visit's prefix excluded.
    fn extend(&self, path: &mut Vec<usize>, holds: &mut Vec<Hold>, visited: &mut [bool]) -> bool {
        let Some(&last) = path.last() else {
            return false;
        };
        if path.len() > MAX_DEPTH {
            return false;
        }
        let (context, _, Some(blocked)) = &self.waits[last] else {
            return false;
        };
        let start = self.waits[path[0]].0;
        // Holds of other contexts first: a cycle through another task reads
        // better than "it holds a permit itself".
        let mut candidates: Vec<&Hold> = blocked
            .holds
            .iter()
            .filter(|h| self.hold_stuck(h))
            .collect();
        candidates.sort_by_key(|h| h.holder == *context);
        for hold in candidates {
            if hold.holder == start {
                holds.push(*hold);
                return true;
            }
            if path.iter().any(|&i| self.waits[i].0 == hold.holder) {
                continue;
            }
            for j in self.keeping(hold).collect::<Vec<_>>() {
                if std::mem::replace(&mut visited[j], true) {
                    continue;
                }
                path.push(j);
                holds.push(*hold);
                if self.extend(path, holds, visited) {
                    return true;
                }
                path.pop();
                holds.pop();
            }
        }
        false
    }
}

const MAX_DEPTH: usize = 16;

/// What blocks the wait `wait` of `context`, from the holders of its lock now
/// and the other pending waits (`None`: nothing known blocks it).
fn blocked_by(
    state: &State,
    context: ContextId,
    wait: Wait,
    all_waits: &[(ContextId, Wait)],
    all_holders: &FxHashMap<u64, Vec<(ContextId, HeldLock)>>,
) -> Option<Blocked> {
    let want = wait.want;
    let instance = want.lock.instance;
    let holders = all_holders.get(&instance).cloned().unwrap_or_default();
    let hold = |(holder, held): (ContextId, HeldLock)| Hold {
        holder,
        held,
        granted: None,
        at_cap: None,
    };
    match want.access {
        // Permits: any release may be enough, so every permit must stay held
        // (its own ones too). A moved permit may be anywhere.
        Access::Permits => {
            let holds: Vec<Hold> = holders
                .into_iter()
                .filter(|(_, h)| h.access == Access::Permits)
                .map(hold)
                .collect();
            return all_of(holds, context, wait);
        }
        Access::Read => {
            // tokio's RwLock is write-preferring: a read waits behind a
            // queued writer, so then every hold blocks it.
            let writer_queued = all_waits.iter().any(|(c, w)| {
                *c != context && w.want.lock.instance == instance && w.want.access == Access::Write
            });
            let reads = holders
                .iter()
                .filter(|(_, h)| h.access == Access::Read)
                .count();
            let cap = state
                .reader_cap(instance)
                .filter(|&cap| reads >= cap as usize);
            if !writer_queued {
                if let Some(cap) = cap {
                    let holds: Vec<Hold> = holders
                        .into_iter()
                        .filter(|(_, h)| h.access == Access::Read)
                        .map(|h| Hold {
                            at_cap: Some(cap),
                            ..hold(h)
                        })
                        .collect();
                    return all_of(holds, context, wait);
                }
            }
            let holds: Vec<Hold> = holders
                .into_iter()
                .filter(|(holder, h)| {
                    *holder != context && !h.movable && (h.access != Access::Read || writer_queued)
                })
                .map(hold)
                .collect();
            return (!holds.is_empty()).then_some(Blocked { holds, all: false });
        }
        _ => {}
    }
    let blocking: Vec<(ContextId, HeldLock)> = holders
        .into_iter()
        .filter(|(_, h)| blocks(h.access, want.access))
        .collect();
    let mut holds: Vec<Hold> = blocking
        .iter()
        .copied()
        .filter(|(holder, h)| *holder != context && !h.movable)
        .map(hold)
        .collect();
    if blocking.is_empty() && matches!(want.access, Access::Lock | Access::Write) {
        // Nobody holds it, yet this wait waits: tokio handed the lock to an
        // earlier pending wait, which owns it whether or not it is polled.
        let granted = all_waits
            .iter()
            .filter(|(_, w)| w.want.lock.instance == instance && w.seq < wait.seq)
            .min_by_key(|(_, w)| w.seq);
        if let Some(&(holder, earlier)) = granted {
            if holder != context {
                holds.push(Hold {
                    holder,
                    held: HeldLock {
                        lock: earlier.want.lock,
                        access: earlier.want.access,
                        site: earlier.want.site,
                        created: earlier.want.created,
                        movable: false,
                        token: 0,
                        span: earlier.span,
                        chain: 0,
                    },
                    granted: Some(earlier.seq),
                    at_cap: None,
                });
            }
        }
    }
    (!holds.is_empty()).then_some(Blocked { holds, all: false })
}

/// A wait blocked until `holds` are all released, if they can all be
/// followed: a moved guard or permit may be anywhere, and a hold of the
/// waiting context itself counts only when that very code holds it (a
/// blocking wait, or the same span): a future joined with the waiting one
/// may hold it and release it any time.
fn all_of(holds: Vec<Hold>, context: ContextId, wait: Wait) -> Option<Blocked> {
    let followed = |h: &Hold| {
        !h.held.movable
            && (h.holder != context
                || wait.want.blocking
                || (h.held.span != 0 && h.held.span == wait.span))
    };
    (!holds.is_empty() && holds.iter().all(followed)).then_some(Blocked { holds, all: true })
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
        reader_cap: None,
    }
}
