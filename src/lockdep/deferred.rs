//! Possible self-deadlocks decided by how the wait ends: a second wait for
//! an instance the context already waits for, a re-lock outside spans. Kept
//! until the wait ends (dropped: a joined sibling let the lock go), is given
//! up after a while, or still lasts after [`CONFIRM_SELF_AFTER`] (reported).

use std::sync::atomic::{AtomicU64, Ordering};

use super::confirm::{schedule, Confirm};
use super::validate::{Conflict, Deferred};
use super::{
    context, describe_instance, lock_ignoring_poison, waits, Acquire, Engine, Panic, TestKey,
};
use crate::report::{self, Dependency, Report};

use crate::vocab::{Access, ClassId, ContextId, SiteRef};

/// How long a possible self-deadlock of a wait (a re-lock in one task,
/// outside spans) must last before it is reported: a future joined in the
/// same task that holds the lock lets it go by then.
pub(super) const CONFIRM_SELF_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// As [`CONFIRM_SELF_AFTER`] for a send into the channel the context drains
/// (or holds a reserved slot of): a consumer joined with its producer in one
/// task may take its time over each value (a slow handler, a rate limit)
/// while the producer waits for room.
pub(super) const CONFIRM_SEND_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a wait with a possible self-deadlock must have lasted for its
/// being given up to report it (a `timeout` running out), rather than a
/// `select!` branch losing the race.
pub(super) const GIVEN_UP_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Most possible self-deadlocks waiting for their confirmation.
pub(super) const MAX_DEFERRED: usize = 4096;

impl Engine {
    /// `context` starts waiting for an instance it already has a pending
    /// wait for: tokio may grant the lock to the earlier future, which is not
    /// polled while this wait lasts. Certain when this wait blocks the
    /// thread; possible otherwise (the earlier wait may be a joined sibling
    /// future's); not reported when the earlier wait belongs to a sibling
    /// future in another span.
    #[cold]
    pub(super) fn second_wait(
        &self,
        context: ContextId,
        want: Acquire,
        earlier: waits::Wait,
        seq: u64,
    ) {
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
            concurrent_futures: false,
            suspended_holder: None,
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
            if let Conflict::Forgotten(_) = deferred.conflict {
                // The forgotten permit may be another context's by now:
                // reported if it is given back here (see `pool_of_forgotten`).
                self.keep_forgotten_report(context, deferred);
                continue;
            }
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
    pub(super) fn defer(&self, context: ContextId, seq: u64, mut deferred: Deferred) {
        let (class, (first, second)) = (deferred.class, deferred.sites);
        if self.seen_at_sites(class, first, second) {
            return; // reported before: once per pair of sites
        }
        deferred.test = self.test_of(deferred.instance);
        let send = deferred
            .report
            .dependencies
            .first()
            .is_some_and(|d| d.waited_as == Access::Send);
        let after = if send {
            CONFIRM_SEND_AFTER
        } else {
            CONFIRM_SELF_AFTER
        };
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
            Ok(()) => schedule(after, Confirm::Deferred(context, seq)),
            // A wait while holding a forgotten permit is never decided by
            // time: too many undecided, it is let go (silence).
            Err(deferred) if matches!(deferred.conflict, Conflict::Forgotten(_)) => {}
            // Too many undecided: report at once, as before deferring.
            Err(deferred) => self.publish_deferred(deferred, Panic::OnReport),
        }
    }

    pub(super) fn take_deferred(&self, context: ContextId, seq: u64) -> Vec<Deferred> {
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
    pub(super) fn still_conflicts(&self, context: ContextId, deferred: &Deferred) -> bool {
        match deferred.conflict {
            Conflict::Holds(token) | Conflict::Forgotten(token) => self
                .held
                .find(context)
                .is_some_and(|r| r.stack().held().iter().any(|h| h.token == token)),
            Conflict::Waits(seq) => self.waits.pending(context, seq),
        }
    }

    /// Publishes a decided possible self-deadlock to its test, if that
    /// test is still running (not yet checked by its guard); otherwise it
    /// is printed and kept, but fails no test.
    pub(super) fn publish_deferred(&self, deferred: Deferred, panic: Panic) {
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
    pub(super) fn confirm_deferred(&self, context: ContextId, seq: u64, panic: Panic) {
        let mut deferred = self.take_deferred(context, seq);
        if deferred.is_empty() || !self.waits.pending(context, seq) {
            return;
        }
        // A wait while holding a forgotten permit is not decided by time (a
        // pooled object may be in use elsewhere for long): kept until the
        // wait ends (dropped) or is given up (kept for the permit).
        let (kept, due): (Vec<Deferred>, Vec<Deferred>) = deferred
            .drain(..)
            .partition(|d| matches!(d.conflict, Conflict::Forgotten(_)));
        if !kept.is_empty() {
            let mut map = lock_ignoring_poison(&self.deferred);
            map.entry((context, seq)).or_default().extend(kept);
            self.deferred_count.store(map.len(), Ordering::Relaxed);
        }
        for deferred in due {
            if self.still_conflicts(context, &deferred) {
                self.publish_deferred(deferred, panic);
            }
        }
    }
}

/// The classes written (a `write` that could queue) in this run, one bit
/// per class id: a lock-free look-up on the lock path of writes only.
static WRITTEN: [AtomicU64; WRITTEN_WORDS] = [const { AtomicU64::new(0) }; WRITTEN_WORDS];

/// Class ids past this are taken as written (a re-read is then reported at
/// once, as before the rule).
const WRITTEN_WORDS: usize = 1024;

/// Whether a write of `class` was seen in this run.
fn written(class: ClassId) -> bool {
    let (word, bit) = (class as usize / 64, class % 64);
    WRITTEN
        .get(word)
        .map_or(true, |w| w.load(Ordering::Relaxed) & (1 << bit) != 0)
}

impl Engine {
    /// `report` is a re-read of `want`'s lock while it is read-held: it is
    /// returned (to report now) if a write of its class was seen in this run,
    /// else kept back until one is (see [`Engine::note_write`]).
    pub(super) fn unless_never_written(&self, want: Acquire, report: Report) -> Option<Report> {
        let class = want.lock.class;
        if written(class) {
            return Some(report);
        }
        let test = self.test_of(want.lock.instance);
        let mut kept = lock_ignoring_poison(&self.reads_kept_back);
        if written(class) {
            return Some(report); // a writer came meanwhile
        }
        let list = kept.entry(class).or_default();
        if list.len() >= MAX_KEPT_BACK {
            return Some(report); // too many kept: reported now, never lost
        }
        list.push((report, test));
        None
    }

    /// A write of `want`'s class (one that could queue): the first one in the
    /// run reports the re-reads of that class kept back so far.
    #[inline]
    pub(crate) fn note_write(&self, want: &Acquire) {
        if want.access != Access::Write || written(want.lock.class) {
            return;
        }
        self.first_write(want.lock.class);
    }

    #[cold]
    #[inline(never)]
    fn first_write(&self, class: ClassId) {
        let (word, bit) = (class as usize / 64, class % 64);
        let Some(w) = WRITTEN.get(word) else {
            return;
        };
        let kept = {
            let mut kept = lock_ignoring_poison(&self.reads_kept_back);
            w.fetch_or(1 << bit, Ordering::Relaxed);
            kept.remove(&class).unwrap_or_default()
        };
        for (report, test) in kept {
            let tests = {
                let tests = lock_ignoring_poison(&self.tests);
                test.filter(|key| tests.get(*key).is_some_and(|r| !r.checked))
                    .into_iter()
                    .collect()
            };
            self.publish_to(report, Panic::Never, || {}, Some(tests));
        }
    }
}

/// Most re-reads kept back per class.
const MAX_KEPT_BACK: usize = 64;

/// A possible pool exhaustion of a permit taken *without waiting* while the
/// same context, outside spans, held another permit of the pool: a nested
/// call taking a second connection (a hazard), or a sibling future of a
/// limiter over `join_all` (fine). Decided by which is given back first:
/// the later one first is nesting (reported), the earlier one first is
/// siblings taking turns (dropped).
pub(crate) struct PoolHeldBack {
    context: ContextId,
    /// The permit held when the other was taken.
    earlier: u64,
    /// The permit taken (its token, once known; 0 before).
    later: u64,
    report: Report,
    class: ClassId,
    sites: (SiteRef, SiteRef),
    test: Option<TestKey>,
}

/// Most pool reports held back at once (past it, reported at once).
const MAX_POOL_HELD_BACK: usize = 1024;

impl Engine {
    /// Holds back the pool report of `want` taken while holding `held`;
    /// gives it back when too many are held back already (report it now).
    pub(super) fn held_back(
        &self,
        context: ContextId,
        held: &super::held::HeldLock,
        want: Acquire,
        report: Report,
    ) -> Option<Report> {
        if self.seen_at_sites(want.lock.class, held.site, want.site) {
            return None; // reported before: once per pair of sites
        }
        let test = self.test_of(want.lock.instance);
        let mut list = lock_ignoring_poison(&self.pool_held_back);
        if list.len() >= MAX_POOL_HELD_BACK {
            return Some(report);
        }
        list.push(PoolHeldBack {
            context,
            earlier: held.token,
            later: 0,
            report,
            class: want.lock.class,
            sites: (held.site, want.site),
            test,
        });
        self.pool_held_back_count
            .store(list.len(), Ordering::Relaxed);
        None
    }

    /// The permit held back just now was taken as `token` by `context`.
    pub(crate) fn pool_taken(&self, context: ContextId, token: u64) {
        if self.pool_held_back_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for pending in lock_ignoring_poison(&self.pool_held_back).iter_mut() {
            if pending.context == context && pending.later == 0 {
                pending.later = token;
            }
        }
    }

    /// The hold `token` of `context` was given back: decides the pool
    /// reports held back about it.
    pub(crate) fn pool_released(&self, context: ContextId, token: u64) {
        let decided: Vec<(bool, PoolHeldBack)> = {
            let mut list = lock_ignoring_poison(&self.pool_held_back);
            let mut decided = Vec::new();
            let mut i = 0;
            while i < list.len() {
                let p = &list[i];
                if p.context == context && (p.earlier == token || p.later == token) {
                    let nested = p.later == token;
                    decided.push((nested, list.swap_remove(i)));
                } else {
                    i += 1;
                }
            }
            self.pool_held_back_count
                .store(list.len(), Ordering::Relaxed);
            decided
        };
        for (nested, pending) in decided {
            if !nested || !self.first_at_sites(pending.class, pending.sites.0, pending.sites.1) {
                continue;
            }
            let report = pending.report;
            let tests = {
                let tests = lock_ignoring_poison(&self.tests);
                pending
                    .test
                    .filter(|key| tests.get(*key).is_some_and(|r| !r.checked))
                    .into_iter()
                    .collect()
            };
            self.publish_to(report, Panic::OnReport, || {}, Some(tests));
        }
    }
}
