//! Deadlock now: the live check. Every pending wait of every context is
//! kept (`waits.rs`); when a new wait starts, the engine finds the waits that
//! can never end (a greatest fixed point: a wait needs any of its holders
//! stuck, or all of them for permits and reads at the reader cap) and, if a
//! cycle of them comes back to the new waiter, the tasks are deadlocked now.
//! Only real waits get here (a lock taken without waiting, or a join of a
//! finished task, never registers), so the cost stays off the hot path.
//! Checks that must wait (a lock handed to a future not polled yet, a busy
//! process) run later on the confirmation thread, also here.

use rustc_hash::FxHashMap;

use super::confirm::{expect_waker, schedule, Confirm, CONFIRM_AFTER};
use super::held::{dependency_of, HeldLock};
use super::waits::Wait;
use super::{lock_ignoring_poison, Acquire, Engine, Panic};
use crate::report::{Report, ReportKind};
use crate::vocab::{Access, ClassId, ContextId, LockRef};

/// Whether a holder holding with `held` blocks a waiter wanting `wanted`.
fn blocks(held: Access, wanted: Access) -> bool {
    match (held, wanted) {
        // Semaphores block only when every permit is taken: not knowable here.
        (Access::Permits, _) | (_, Access::Permits) => false,
        (Access::Read, Access::Read) => false,
        (Access::RunWork | Access::RunTask, wanted) => wanted.is_executor_wait(),
        // A receiver busy between two `recv` calls keeps a full channel full,
        // and does not answer the requests queued in it (a reply awaited
        // for a request sent into it).
        (Access::Receive, wanted) => matches!(wanted, Access::Send | Access::Event),
        (_, Access::Send) => false,
        // Nobody holds an event: a wait for one is linked to its signaller
        // elsewhere, if at all.
        (_, Access::Event) | (Access::Event | Access::Signal, _) => false,
        (_, wanted) => !wanted.is_executor_wait(),
    }
}

/// Whether the wait `seq` of `waiter` may be part of a cycle of waits now:
/// the cheap checks before the analysis.
pub(crate) fn may_close_cycle(state: &Engine, waiter: ContextId, seq: u64) -> bool {
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
/// later, if it still waits (see `Engine::register_wait`): each analysis
/// reads every pending wait and held lock, so with many waits pending it is
/// dear, and most waits of a busy process (tasks holding a permit while
/// queued on a lock) end long before.
pub(crate) const ANALYSE_AT_ONCE_UP_TO: usize = 1024;

impl Engine {
    /// Looks for a cycle of waits through `waiter`, which started the wait
    /// `seq` (for the confirmation thread). Returns the report if the
    /// contexts are stuck now.
    pub(super) fn confirm_deadlock_now(&self, waiter: ContextId, seq: u64) -> Option<Report> {
        if !may_close_cycle(self, waiter, seq) {
            return None;
        }
        deadlock_now_report(self, waiter, seq)
    }
}

/// [`Engine::confirm_deadlock_now`] once [`may_close_cycle`] said yes: the
/// analysis.
pub(crate) fn deadlock_now_report(state: &Engine, waiter: ContextId, seq: u64) -> Option<Report> {
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
    let reads_blocked: Vec<&Holder> = (0..n)
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
        concurrent_futures: false,
        suspended_holder: None,
    };
    // A read blocked by reads: name the reader cap when it, not a queued
    // writer, is what blocks it.
    report.reader_cap = reads_blocked.iter().find_map(|b| b.at_cap);
    Some(report)
}

/// Whether the wait `seq` of `context` is for semaphore permits (it can be
/// stuck on its own permits alone).
fn waits_for_permits(state: &Engine, context: ContextId, seq: u64) -> bool {
    state
        .waits()
        .of(context)
        .iter()
        .any(|w| w.seq == seq && w.want.access == Access::Permits)
}

/// A cycle of waits: the waits in order, and for each the hold (of the next
/// one's context, of the first one's for the last) that blocks it.
type Cycle = (Vec<(ContextId, Wait)>, Vec<Holder>);

/// A lock held by a context, as one of the things a wait waits for.
#[derive(Clone, Copy, Debug)]
struct Holder {
    pub(super) holder: ContextId,
    pub(super) held: HeldLock,
    /// Not held yet: the lock is free of holders and this is the oldest
    /// pending wait for it (its sequence number), which tokio hands the lock
    /// to (its FIFO order) whether or not its future is polled again.
    pub(super) granted: Option<u64>,
    /// For a read blocked by reads at the reader cap: that cap.
    pub(super) at_cap: Option<u32>,
}

/// What one wait waits for: `Any` such hold staying held blocks it (a lock
/// one holder at a time, reads behind a queued writer, work), or `All` of
/// them (permits, reads at the reader cap: any release may let it through).
#[derive(Debug)]
struct Blocked {
    pub(super) holds: Vec<Holder>,
    pub(super) all: bool,
}

/// The waits around one new wait, and which of them can never end.
struct Analysis {
    /// Every explored context's pending waits, with what blocks each (`None`:
    /// nothing known blocks it, so it may end).
    pub(super) waits: Vec<(ContextId, Wait, Option<Blocked>)>,
    /// `stuck[i]`: waits[i] can never end, as far as the detector can see.
    pub(super) stuck: Vec<bool>,
    /// The indices in `waits` of each context's waits.
    pub(super) by_context: FxHashMap<ContextId, Vec<usize>>,
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
    pub(super) fn new(state: &Engine, start: ContextId) -> Analysis {
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
    pub(super) fn wait_stuck(&self, i: usize) -> bool {
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
    pub(super) fn keeping(&self, hold: &Holder) -> impl Iterator<Item = usize> + '_ {
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
    pub(super) fn hold_stuck(&self, hold: &Holder) -> bool {
        let mut keeping = self.keeping(hold).peekable();
        keeping.peek().is_some() && keeping.all(|j| self.stuck[j])
    }

    /// A cycle of stuck waits through the wait `seq` of `waiter`: the waits
    /// in order, and for each the hold (of the next one's context) that
    /// blocks it.
    pub(super) fn cycle_through(&self, waiter: ContextId, seq: u64) -> Option<Cycle> {
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
    pub(super) fn extend(
        &self,
        path: &mut Vec<usize>,
        holds: &mut Vec<Holder>,
        visited: &mut [bool],
    ) -> bool {
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
        let mut candidates: Vec<&Holder> = blocked
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
    state: &Engine,
    context: ContextId,
    wait: Wait,
    all_waits: &[(ContextId, Wait)],
    all_holders: &FxHashMap<u64, Vec<(ContextId, HeldLock)>>,
) -> Option<Blocked> {
    let want = wait.want;
    let instance = want.lock.instance;
    let holders = all_holders.get(&instance).cloned().unwrap_or_default();
    let hold = |(holder, held): (ContextId, HeldLock)| Holder {
        holder,
        held,
        granted: None,
        at_cap: None,
    };
    match want.access {
        // Permits: any release may be enough, so every permit must stay held
        // (its own ones too). A moved permit may be anywhere.
        Access::Permits => {
            let holds: Vec<Holder> = holders
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
                    let holds: Vec<Holder> = holders
                        .into_iter()
                        .filter(|(_, h)| h.access == Access::Read)
                        .map(|h| Holder {
                            at_cap: Some(cap),
                            ..hold(h)
                        })
                        .collect();
                    return all_of(holds, context, wait);
                }
            }
            let holds: Vec<Holder> = holders
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
    let mut holds: Vec<Holder> = blocking
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
                holds.push(Holder {
                    holder,
                    held: HeldLock {
                        lock: earlier.want.lock,
                        access: earlier.want.access,
                        site: earlier.want.site,
                        created: earlier.want.created,
                        movable: false,
                        forgotten: false,
                        drives: false,
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
fn all_of(holds: Vec<Holder>, context: ContextId, wait: Wait) -> Option<Blocked> {
    let followed = |h: &Holder| {
        !h.held.movable
            && (h.holder != context
                || wait.want.blocking
                || (h.held.span != 0 && h.held.span == wait.span))
    };
    (!holds.is_empty() && holds.iter().all(followed)).then_some(Blocked { holds, all: true })
}

/// Live deadlocks remembered for de-duplication before the memory is reset.
pub(super) const MAX_DEADLOCKS_NOW_REMEMBERED: usize = 4096;

impl Engine {
    /// Registers the wait of `context` (for the wait-for check and the
    /// watchdog) and reports the tasks stuck now, if it closes a cycle.
    /// Returns the wait's sequence number.
    pub(crate) fn register_wait(&self, context: ContextId, want: Acquire, mark: u64) -> u64 {
        self.register_wait_as(context, want, mark, false)
    }

    /// As [`Engine::register_wait`]; `doomable`: the waiting future takes
    /// the engine's word to give up when polled (a lock future of this
    /// crate), so a cycle its wait closes can be confirmed later.
    pub(crate) fn register_wait_as(
        &self,
        context: ContextId,
        want: Acquire,
        mark: u64,
        doomable: bool,
    ) -> u64 {
        let test = self.test_for_watchdog();
        let (seq, earlier) = self.waits.begin(context, want, mark, test);
        if let Some(earlier) = earlier {
            self.second_wait(context, want, earlier, seq);
        }
        if !may_close_cycle(self, context, seq) {
            return seq;
        }
        if self.waits.total() > ANALYSE_AT_ONCE_UP_TO {
            // A busy process: analysed later, if it still waits then (a
            // real deadlock does not move), on the confirmation thread.
            expect_waker(context, seq);
            schedule(
                CONFIRM_AFTER,
                Confirm::DeadlockNow(context, seq, want.lock.instance),
            );
            return seq;
        }
        let Some(report) = deadlock_now_report(self, context, seq) else {
            return seq;
        };
        let through_a_reply = report
            .dependencies
            .iter()
            .any(|d| d.waited_as == Access::Event);
        if report.pending_wait || through_a_reply || (doomable && !want.blocking) {
            // It goes through a lock tokio handed to a pending future: its
            // task may only not have polled it yet (`join!`, `select!`).
            // Or through a reply tied to the channel its request went into
            // (by the order of sends): confirmed once it lasted a while.
            // Or a lock future's wait, which may be a `select!` branch
            // racing a timer (a back-off: holding `b`, try `a` for 20 ms,
            // let `b` go): a real deadlock does not move, a back-off does.
            // Confirm it once that task had time to run. A blocking wait
            // (a thread) is reported at once, before the thread blocks, and
            // so is a wait whose future cannot be told to give up later
            // (plain tokio locks, sends, joins).
            expect_waker(context, seq);
            schedule(
                CONFIRM_AFTER,
                Confirm::DeadlockNow(context, seq, want.lock.instance),
            );
            return seq;
        }
        self.publish_deadlock_now(report, Panic::OnDeadlock, context, seq, want.lock.instance);
        seq
    }

    /// Publishes a "stuck now" report once per set of stuck contexts (two
    /// waiters closing one cycle at once may both find it). Returns true when
    /// a panic was asked for but cannot happen on this thread (see
    /// `Engine::publish_to`).
    pub(super) fn publish_deadlock_now(
        &self,
        report: Report,
        panic: Panic,
        context: ContextId,
        seq: u64,
        instance: u64,
    ) -> bool {
        let mut stuck: Vec<ContextId> = report.dependencies.iter().map(|d| d.context).collect();
        stuck.sort_by_key(|c| c.to_string());
        let first_time = {
            let mut reports = lock_ignoring_poison(&self.reports);
            if reports.deadlocks_now.len() >= MAX_DEADLOCKS_NOW_REMEMBERED {
                reports.deadlocks_now.clear();
            }
            reports.deadlocks_now.insert(stuck)
        };
        first_time && self.publish_for(report, panic, || self.wait_end(context, seq), instance)
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
}

impl Engine {
    /// A blocking wait of `context` (a task, on this thread) for `want`
    /// while the lock is held by this thread's own code outside any task (a
    /// `block_on` body, `#[tokio::test]`'s body): that code is suspended in
    /// an `.await` while the task runs on its thread, and cannot release the
    /// lock before the thread is free again. Certain: reported before the
    /// thread blocks.
    pub(super) fn check_suspended_holder(&self, context: ContextId, want: Acquire, seq: u64) {
        let this_thread = super::context::this_thread();
        if context == this_thread {
            return; // the thread's own re-lock: an ordinary self-deadlock
        }
        let holders = self.held.holders_of(want.lock.instance);
        let Some((holder, held)) = holders
            .into_iter()
            .find(|(c, h)| *c == this_thread && !h.movable && blocks(h.access, want.access))
        else {
            return;
        };
        let spans = self.current_spans();
        let kind = ReportKind::SelfDeadlock;
        let Some(mut report) = self.once_per_sites(kind, &held, want, context, &spans, false)
        else {
            return;
        };
        report.suspended_holder = Some(holder);
        self.publish_for(
            report,
            Panic::OnDeadlock,
            || self.wait_end(context, seq),
            want.lock.instance,
        );
    }
}
