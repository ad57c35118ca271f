//! Lockdep's `validate_chain`: a chain of held locks never seen before is
//! checked here. The dependencies "held -> wanted" go into the class graph,
//! a cycle becomes a report, a second wait for an instance the context
//! holds is a self-deadlock, and a chain found clean goes into the chain
//! cache so it is never checked again.

use std::panic::Location;
use std::sync::atomic::Ordering;

use super::class::{self, ClassKind};
use super::held::{chain_after, HeldKey, HeldLock};
use super::{
    dependency_of, describe_instance, lock_ignoring_poison, Acquire, Engine, Panic, TestKey,
};
use crate::graph::{Graph, Insert};
use crate::report::{Dependency, Report, ReportKind};
use crate::vocab::{Access, ClassId, ContextId, LockRef, SiteRef};

/// Most owned guards with provisional dependencies kept at once.
const MAX_PROVISIONAL: usize = 4096;

/// Most provisional dependencies kept for one hold.
const MAX_PROVISIONAL_PER_HOLD: usize = 256;

/// Most pool reports kept for one forgotten permit.
const MAX_FORGOTTEN_REPORTS: usize = 16;

/// A dependency about to be added: `to` was waited for while `from` was held.
pub(crate) struct Provisional {
    from: LockRef,
    to: LockRef,
    info: DependencyInfo,
}

/// The first-seen data of a dependency edge.
#[derive(Clone)]
pub(crate) struct DependencyInfo {
    pub(super) held_as: Access,
    pub(super) held_at: SiteRef,
    pub(super) waited_as: Access,
    pub(super) waited_at: SiteRef,
    /// Where the held and the waited-for lock instances were created.
    pub(super) held_created: &'static Location<'static>,
    pub(super) waited_created: &'static Location<'static>,
    pub(super) context: ContextId,
    pub(super) spans: Vec<String>,
    pub(super) test: Option<std::sync::Arc<str>>,
}

impl DependencyInfo {
    /// The dependency `from -> to` this edge describes, for reports.
    pub(super) fn dependency(&self, from: ClassId, to: ClassId) -> Dependency {
        Dependency {
            held: describe_instance(from, self.held_created),
            held_as: self.held_as,
            held_at: self.held_at.into(),
            waited: describe_instance(to, self.waited_created),
            waited_as: self.waited_as,
            waited_at: self.waited_at.into(),
            context: self.context,
            spans: self.spans.clone(),
            test: self.test.as_ref().map(|t| t.to_string()),
        }
    }
}

impl Engine {
    /// Reports that the calling context waits for work of the executor it is
    /// running (`want.lock`), which cannot start before it finishes.
    pub(crate) fn report_self_wait(&self, want: Acquire) {
        let context = ContextId::current();
        let held = self.held_by(context);
        let Some(held) = held.iter().find(|h| h.lock.instance == want.lock.instance) else {
            return;
        };
        let spans = self.current_spans();
        if let Some(report) = self.self_deadlock(held, want, context, &spans, false, true) {
            self.publish_for(report, Panic::OnReport, || {}, want.lock.instance);
        }
    }

    /// The report for `context` waiting for what it holds (`held`), unless
    /// the same pair of sites was reported before.
    pub(super) fn self_deadlock(
        &self,
        held: &HeldLock,
        want: Acquire,
        context: ContextId,
        spans: &[String],
        needs_writer: bool,
        certain: bool,
    ) -> Option<Report> {
        let kind = if certain {
            ReportKind::SelfDeadlock
        } else {
            ReportKind::PossibleSelfDeadlock
        };
        self.once_per_sites(kind, held, want, context, spans, needs_writer)
    }

    /// The report for `context` waiting for a permit of a semaphore it holds
    /// a permit of (`held`), unless the same pair of sites was reported.
    fn pool_exhaustion(
        &self,
        held: &HeldLock,
        want: Acquire,
        context: ContextId,
        spans: &[String],
    ) -> Option<Report> {
        self.once_per_sites(
            ReportKind::PoolExhaustion,
            held,
            want,
            context,
            spans,
            false,
        )
    }

    /// A one-dependency report about `context` waiting for `want` while
    /// holding `held` of the same instance, unless the same pair of sites
    /// (and class) was reported before.
    pub(super) fn once_per_sites(
        &self,
        kind: ReportKind,
        held: &HeldLock,
        want: Acquire,
        context: ContextId,
        spans: &[String],
        needs_writer: bool,
    ) -> Option<Report> {
        if !self.first_at_sites(want.lock.class, held.site, want.site) {
            return None;
        }
        let test = self.current_test_name();
        let mut report = one_dependency_report(
            kind,
            held,
            want,
            context,
            spans,
            test.as_deref(),
            needs_writer,
        );
        if needs_writer {
            // A re-read of a lock made with `with_max_readers(n)` also waits
            // once `n` reads are held, with no writer at all.
            report.reader_cap = self.reader_cap(want.lock.instance);
        }
        Some(report)
    }

    #[inline]
    pub(super) fn check(&self, held: &[HeldLock], want: &Acquire) -> Check {
        if held.is_empty() {
            return Check::Fine; // nothing held: no dependency
        }
        self.check_held(held, want, true)
    }

    /// Whether [`Engine::check`] finds nothing new, without copying what is
    /// held (for the lock path, which holds the record's lock meanwhile).
    #[inline]
    pub(super) fn seen_before(&self, held: &[HeldLock], want: &Acquire) -> bool {
        let Some(top) = held.last() else {
            return true;
        };
        // The common case, checked here without building a `Check`: no
        // span-scoped hold and no hold of the instance wanted (either needs
        // `check_held`'s whole answer), and a chain validated before.
        let mut plain = true;
        for h in held {
            plain &= h.span == 0 && h.lock.instance != want.lock.instance;
        }
        if plain {
            return self
                .chains
                .contains(chain_after(top.chain, want.lock, want.access));
        }
        matches!(self.check_held(held, want, false), Check::Fine)
    }

    /// [`Engine::check`] when something is held; `snapshot`: whether a slow
    /// answer carries a copy of the held locks the waiter sees.
    fn check_held(&self, held: &[HeldLock], want: &Acquire, snapshot: bool) -> Check {
        let Some(top) = held.last() else {
            return Check::Fine;
        };
        // Holds taken inside a span are seen only by code running inside
        // that span: a sibling future's holds do not order this one's locks.
        let visible: Option<Vec<HeldLock>> = if held.iter().any(|h| h.span != 0) {
            Some(
                held.iter()
                    .filter(|h| h.span == 0 || super::context::span_is_entered(h.span))
                    .copied()
                    .collect(),
            )
        } else {
            None
        };
        let held = visible.as_deref().unwrap_or(held);
        let mut same = None;
        let mut pool = None;
        for h in held {
            if h.lock.instance == want.lock.instance
                && h.access == Access::Permits
                && want.access == Access::Permits
                && (!h.movable || h.forgotten)
                // A permit the waiter holds outright is the better evidence.
                && pool.map_or(true, |p: HeldLock| p.forgotten || !h.forgotten)
            {
                pool = Some(*h);
            }
            if h.lock.instance == want.lock.instance && !h.movable {
                if let Some(needs_writer) = self_conflict(h.access, want.access) {
                    // Certain when the waiter itself holds it: nested in the
                    // holder's span, blocking the whole thread, or a work item
                    // waiting for its own executor. A hold of the task outside
                    // any span may be a joined sibling's.
                    // A send waits only when the channel is full: never
                    // certain before it waits.
                    let certain = want.access != Access::Send
                        && (h.span != 0
                            || want.blocking
                            || matches!(h.access, Access::RunWork | Access::RunTask));
                    same = Some(SameInstance {
                        held: *h,
                        needs_writer,
                        certain,
                    });
                }
            }
        }
        let chain = match &visible {
            None => chain_after(top.chain, want.lock, want.access),
            Some(visible) => {
                let below = visible
                    .iter()
                    .fold(0, |chain, h| chain_after(chain, h.lock, h.access));
                if visible.is_empty() {
                    return Check::Fine;
                }
                chain_after(below, want.lock, want.access)
            }
        };
        if same.is_none() && pool.is_none() && self.chains.contains(chain) {
            return Check::Fine;
        }
        Check::Slow(Slow {
            held: if snapshot {
                latest_per_class(held, want)
            } else {
                Vec::new()
            },
            chain,
            same,
            pool,
        })
    }

    /// The slow path: a chain never validated before.
    #[cold]
    ///
    /// With `defer` (a wait that has begun), a possible self-deadlock (the
    /// context holds the lock outside spans: maybe a joined sibling future's
    /// hold) is returned to be decided later instead of being reported.
    pub(super) fn record(
        &self,
        context: ContextId,
        want: Acquire,
        slow: Slow,
        defer: bool,
    ) -> Option<Deferred> {
        let spans = self.current_spans();
        let test = self.current_test_name();
        let mut reports = Vec::new();
        let mut deferred = None;
        match slow.same {
            Some(same) if defer && !same.certain => {
                deferred = Some(Deferred {
                    report: one_dependency_report(
                        ReportKind::PossibleSelfDeadlock,
                        &same.held,
                        want,
                        context,
                        &spans,
                        test.as_deref(),
                        same.needs_writer,
                    ),
                    class: want.lock.class,
                    instance: want.lock.instance,
                    sites: (same.held.site, want.site),
                    conflict: Conflict::Holds(same.held.token),
                    test: None,
                    since: std::time::Instant::now(),
                });
            }
            // A send that did not wait (or a `blocking_send`, which is not
            // followed): nothing to decide.
            Some(_) if want.access == Access::Send => {}
            Some(same) => {
                let report = self.self_deadlock(
                    &same.held,
                    want,
                    context,
                    &spans,
                    same.needs_writer,
                    same.certain,
                );
                // A re-read deadlocks only behind a queued writer: with no
                // write of this class seen yet in the run, kept back until
                // the first one (a lock only ever read stays silent).
                match report {
                    Some(report)
                        if same.needs_writer
                            && self.class_reader_cap(want.lock.class).is_none() =>
                    {
                        if let Some(report) = self.unless_never_written(want, report) {
                            reports.push(report);
                        }
                    }
                    report => reports.extend(report),
                }
            }
            None => {}
        }
        if let Some(held) = slow.pool.filter(|held| held.forgotten) {
            deferred = self.pool_of_forgotten(context, &held, want, &spans, defer, deferred);
        } else if let Some(held) = slow.pool {
            // Certain when the waiter itself holds the permit (in its span,
            // or blocking the thread); otherwise it may be a joined
            // sibling's (a limiter over `join_all`), or a probe poll whose
            // permit is given back before the next poll: decided by how
            // the wait ends, as a possible self-deadlock is.
            let certain = held.span != 0 || want.blocking;
            if defer && !certain && deferred.is_none() {
                deferred = Some(Deferred {
                    report: one_dependency_report(
                        ReportKind::PoolExhaustion,
                        &held,
                        want,
                        context,
                        &spans,
                        test.as_deref(),
                        false,
                    ),
                    class: want.lock.class,
                    instance: want.lock.instance,
                    sites: (held.site, want.site),
                    conflict: Conflict::Holds(held.token),
                    test: None,
                    since: std::time::Instant::now(),
                });
            } else if !defer && !certain {
                // Taken without waiting: decided by which permit is given
                // back first (see `Engine::held_back`).
                let report = one_dependency_report(
                    ReportKind::PoolExhaustion,
                    &held,
                    want,
                    context,
                    &spans,
                    test.as_deref(),
                    false,
                );
                // Too many held back already: reported now, once per sites.
                let overflow = self.held_back(context, &held, want, report);
                if let Some(report) = overflow {
                    if self.first_at_sites(want.lock.class, held.site, want.site) {
                        reports.push(report);
                    }
                }
            } else {
                reports.extend(self.pool_exhaustion(&held, want, context, &spans));
            }
        }
        let mut now = Vec::new();
        let mut provisional = Vec::new();
        let mut cacheable = slow.same.is_none() && slow.pool.is_none();
        // Of the other instances of the wanted class held, only the last one
        // taken orders the wanted one: each earlier one already precedes it
        // through the orders recorded when the later ones were taken.
        let last_of_class = slow.held.iter().rposition(|held| {
            held.lock.class == want.lock.class && held.lock.instance != want.lock.instance
        });
        for (i, held) in slow.held.iter().enumerate() {
            if held.lock.instance == want.lock.instance {
                cacheable = false;
                continue;
            }
            if held.drives && want.access == Access::Send {
                // A thread driving a service in lockstep through channels it
                // made: its sends are not waits of that section.
                cacheable = false;
                continue;
            }
            if held.lock.class == want.lock.class {
                if class::kind_of(held.lock.class) == ClassKind::Task {
                    // A task joining a task spawned at the same site (recursive
                    // spawning) waits downward only: not a dependency.
                    continue;
                }
                // Judged by instance order, which a chain of classes does not
                // show: never cached.
                cacheable = false;
                if Some(i) != last_of_class {
                    continue;
                }
            }
            let dependency = Provisional {
                from: held.lock,
                to: want.lock,
                info: DependencyInfo {
                    held_as: held.access,
                    held_at: held.site,
                    waited_as: want.access,
                    waited_at: want.site,
                    held_created: held.created,
                    waited_created: want.created,
                    context,
                    spans: spans.clone(),
                    test: test.clone(),
                },
            };
            if held.movable {
                // Held through an owned guard that may move to another task:
                // provisional until the guard is released (see `movable_released`).
                cacheable = false;
                provisional.push((HeldKey::of(context, held), dependency));
            } else {
                now.push(dependency);
            }
        }
        let complete = self.add_dependencies(now, &mut reports);
        if !provisional.is_empty() {
            self.keep_provisional(provisional);
        }
        if complete && cacheable {
            self.chains.insert(slow.chain);
        }
        for report in reports {
            self.publish_for(report, Panic::OnReport, || {}, want.lock.instance);
        }
        deferred
    }

    /// The pool report of `context` waiting for `want` while it holds the
    /// `forget()`-ed permit `held` of the same semaphore (a pooled object:
    /// deadpool's). The object may have moved to another context, so the
    /// report is provisional, as the dependencies of an owned guard are:
    /// published when `add_permits` gives that permit back in this context,
    /// dropped when it is given back elsewhere (see
    /// `Engine::forgotten_reports`). Certain (inside the span that took it,
    /// or blocking): kept so at once. A wait outside spans may be a joined
    /// sibling's turn: kept so only if the wait is given up with the permit
    /// still held (`deferred`); ended with a permit, it is dropped. A
    /// permit taken at once outside spans is not judged: permits given
    /// back with `add_permits` are interchangeable, so which one goes back
    /// first (nesting or siblings taking turns) cannot be told.
    fn pool_of_forgotten(
        &self,
        context: ContextId,
        held: &HeldLock,
        want: Acquire,
        spans: &[String],
        defer: bool,
        deferred: Option<Deferred>,
    ) -> Option<Deferred> {
        let certain = held.span != 0 || want.blocking;
        if !certain && (!defer || deferred.is_some()) {
            return deferred;
        }
        let test = self.current_test_name();
        let pending = Deferred {
            report: one_dependency_report(
                ReportKind::PoolExhaustion,
                held,
                want,
                context,
                spans,
                test.as_deref(),
                false,
            ),
            class: want.lock.class,
            instance: want.lock.instance,
            sites: (held.site, want.site),
            conflict: Conflict::Forgotten(held.token),
            test: None,
            since: std::time::Instant::now(),
        };
        if certain {
            self.keep_forgotten_report(context, pending);
            deferred
        } else {
            Some(pending)
        }
    }

    /// Keeps the pool report `pending` (its conflict: a forgotten permit
    /// of `context`) until that permit is given back (`movable_released`).
    pub(super) fn keep_forgotten_report(&self, context: ContextId, mut pending: Deferred) {
        let Conflict::Forgotten(token) = pending.conflict else {
            return;
        };
        let (first, second) = pending.sites;
        if self.seen_at_sites(pending.class, first, second) {
            return; // reported before: once per pair of sites
        }
        if pending.test.is_none() {
            pending.test = self.test_of(pending.instance);
        }
        let key = HeldKey { context, token };
        let mut kept = lock_ignoring_poison(&self.forgotten_reports);
        if kept.len() >= MAX_PROVISIONAL && !kept.contains_key(&key) {
            return; // permits forgotten for good: stop keeping more (silence)
        }
        let list = kept.entry(key).or_default();
        if list.len() < MAX_FORGOTTEN_REPORTS {
            list.push(pending);
        }
        self.forgotten_reports_count
            .store(kept.len(), Ordering::Relaxed);
    }

    /// The forgotten permit `key` is gone without being given back (its
    /// semaphore dropped): what was kept for it is dropped, not committed.
    pub(crate) fn discard_provisional(&self, key: HeldKey) {
        lock_ignoring_poison(&self.provisional).remove(&key);
        if self.forgotten_reports_count.load(Ordering::Relaxed) != 0 {
            let mut kept = lock_ignoring_poison(&self.forgotten_reports);
            kept.remove(&key);
            self.forgotten_reports_count
                .store(kept.len(), Ordering::Relaxed);
        }
    }

    /// Adds dependencies to the class graph (or, between two instances of
    /// one class, to the instance order) and collects the cycles they close.
    /// Returns false if a limit kept some out.
    fn add_dependencies(&self, dependencies: Vec<Provisional>, reports: &mut Vec<Report>) -> bool {
        if dependencies.is_empty() {
            return true;
        }
        let mut complete = true;
        let mut cycles = Vec::new();
        let mut new = Vec::new();
        {
            let mut graph = lock_ignoring_poison(&self.graph);
            for Provisional { from, to, info } in dependencies {
                if from.class == to.class {
                    let mut instances = lock_ignoring_poison(&self.instances);
                    match instances.insert(from.instance, to.instance, info) {
                        Some(edges) => cycles.push((
                            true,
                            edges
                                .into_iter()
                                .map(|e| (from.class, to.class, e))
                                .collect(),
                        )),
                        None if instances.full() => complete = false,
                        None => {}
                    }
                    continue;
                }
                if self.over_limits(&graph, from.class, to.class) {
                    complete = false;
                    continue;
                }
                let mut info = Some(info);
                match graph.insert(from.class, to.class, || info.take().expect("called once")) {
                    Insert::Known => {
                        // Keep the strongest kind seen: a dependency first
                        // seen between reads and later with a write blocks
                        // without any extra writer (lockdep merges these too).
                        if let (Some(new), Some(old)) = (info, graph.edge_mut(from.class, to.class))
                        {
                            if strength(&new) > strength(old) {
                                *old = new;
                            }
                        }
                    }
                    Insert::New => {
                        self.new_dependencies.fetch_add(1, Ordering::Relaxed);
                        if let Some(info) = graph.edge(from.class, to.class) {
                            new.push((from.class, to.class, info.clone()));
                        }
                    }
                    Insert::Cycle(path) => {
                        let closing = graph.edge(from.class, to.class).cloned();
                        if let Some(info) = &closing {
                            // To the run's store too: its cycles are counted
                            // and drawn from it (`RunStore`).
                            new.push((from.class, to.class, info.clone()));
                        }
                        let mut edges: Vec<_> = closing
                            .into_iter()
                            .map(|e| (from.class, to.class, e))
                            .collect();
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
            if receives_its_own_messages(&edges) {
                continue;
            }
            reports.push(cycle_report(recursive, edges, |class| {
                self.class_reader_cap(class)
            }));
        }
        if !complete {
            self.announce_overflow();
        }
        if !new.is_empty() {
            self.learned(new);
        }
        complete
    }

    /// Keeps dependencies recorded while an owned guard was held, until it
    /// is released.
    ///
    /// Each dependency is kept once per hold (a chain through a movable hold
    /// is never cached, so a permit forgotten for good would otherwise add
    /// one per lock taken after), and at most [`MAX_PROVISIONAL_PER_HOLD`].
    fn keep_provisional(&self, provisional: Vec<(HeldKey, Provisional)>) {
        let mut moved = lock_ignoring_poison(&self.provisional);
        for (key, dependency) in provisional {
            if moved.len() >= MAX_PROVISIONAL && !moved.contains_key(&key) {
                continue; // forgotten owned guards: stop keeping more (silence)
            }
            let kept = moved.entry(key).or_default();
            let same = |p: &Provisional| {
                p.from == dependency.from
                    && p.to == dependency.to
                    && (p.info.held_as, p.info.waited_as)
                        == (dependency.info.held_as, dependency.info.waited_as)
            };
            if kept.len() < MAX_PROVISIONAL_PER_HOLD && !kept.iter().any(same) {
                kept.push(dependency);
            }
        }
    }

    /// How many provisional dependencies are kept for the hold `key`.
    #[cfg(test)]
    pub(crate) fn provisional_count(&self, key: HeldKey) -> usize {
        lock_ignoring_poison(&self.provisional)
            .get(&key)
            .map_or(0, Vec::len)
    }

    /// An owned guard or permit was released (and is no longer in its
    /// context's record): its provisional dependencies
    /// are committed (and checked) if the context that took it released it,
    /// and dropped if it was released elsewhere (it moved: the context that
    /// took it no longer held it when it waited afterwards).
    pub(crate) fn movable_released(&self, key: HeldKey) {
        if self.forgotten_reports_count.load(Ordering::Relaxed) != 0 {
            let reports = {
                let mut kept = lock_ignoring_poison(&self.forgotten_reports);
                let reports = kept.remove(&key);
                self.forgotten_reports_count
                    .store(kept.len(), Ordering::Relaxed);
                reports
            };
            if ContextId::current() == key.context {
                for pending in reports.into_iter().flatten() {
                    self.publish_deferred(pending, Panic::OnReport);
                }
            }
        }
        let pending = lock_ignoring_poison(&self.provisional).remove(&key);
        let Some(pending) = pending else { return };
        if ContextId::current() != key.context {
            return;
        }
        let lock = pending.first().map_or(0, |p| p.to.instance);
        let mut reports = Vec::new();
        self.add_dependencies(pending, &mut reports);
        for report in reports {
            self.publish_for(report, Panic::OnReport, || {}, lock);
        }
    }

    fn over_limits(&self, graph: &Graph<DependencyInfo>, from: ClassId, to: ClassId) -> bool {
        if graph.edge(from, to).is_some() {
            return false;
        }
        let new_nodes = usize::from(!graph.has_node(from)) + usize::from(!graph.has_node(to));
        let over = graph.edge_count() >= self.max_dependencies.load(Ordering::Relaxed)
            || graph.node_count() + new_nodes > self.max_classes.load(Ordering::Relaxed);
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
                self.max_classes.load(Ordering::Relaxed),
                self.max_dependencies.load(Ordering::Relaxed)
            ));
        }
    }
}

/// How many sides of a dependency block regardless of queued writers.
fn strength(edge: &DependencyInfo) -> u8 {
    u8::from(edge.held_as != Access::Read) + u8::from(edge.waited_as != Access::Read)
}

/// For a second acquisition of the same instance: `Some(needs_writer)` when
/// it can deadlock, `None` when it cannot (semaphore permits).
fn self_conflict(held: Access, wanted: Access) -> Option<bool> {
    match (held, wanted) {
        (Access::Permits, _) | (_, Access::Permits) => None,
        (Access::RunTask, _) => None,
        // Sending into the channel one drains, or holding a reserved slot
        // of: only this context could make room, when it is full. Decided
        // by how the wait ends (a send that did not wait is silent).
        (Access::Receive | Access::Send, Access::Send) => Some(false),
        (Access::Receive, _) | (_, Access::Send | Access::Receive) => None,
        // An event is not held: waiting for it twice is not a re-lock.
        (Access::Event | Access::Signal, _) | (_, Access::Event | Access::Signal) => None,
        (Access::RunWork, Access::Flush | Access::Destroy) => Some(false),
        (Access::RunWork, _) => None,
        (Access::Read, Access::Read) => Some(true),
        _ => Some(false),
    }
}

pub(super) enum Check {
    Fine,
    Slow(Slow),
}

pub(super) struct Slow {
    /// The held locks the waiter sees (see `check`).
    held: Vec<HeldLock>,
    chain: u64,
    same: Option<SameInstance>,
    /// A permit of the semaphore waited for, held by the waiter.
    pool: Option<HeldLock>,
}

/// A wait for an instance the context holds.
#[derive(Clone, Copy)]
pub(super) struct SameInstance {
    held: HeldLock,
    needs_writer: bool,
    /// The waiter itself holds it (not possibly a joined sibling future).
    certain: bool,
}

/// A report of one dependency: `context`, holding `held`, waits for `want`
/// of the same instance (self-deadlock, pool exhaustion), in test `test`.
fn one_dependency_report(
    kind: ReportKind,
    held: &HeldLock,
    want: Acquire,
    context: ContextId,
    spans: &[String],
    test: Option<&str>,
    needs_writer: bool,
) -> Report {
    let mut dependency = dependency_of(held, want, context, spans);
    dependency.test = test.map(str::to_string);
    Report {
        kind,
        dependencies: vec![dependency],
        needs_writer,
        long_wait: None,
        pending_wait: false,
        reader_cap: None,
        concurrent_futures: false,
        suspended_holder: None,
    }
}

/// Whether the cycle `edges` goes through a channel's messages waited for
/// and sent by one context: a channel has one receiver, so the context that
/// waits for its messages is not delayed by the messages it sent itself
/// before (a test body sending into channels it then drains). Not a cycle
/// between parties.
fn receives_its_own_messages(edges: &[(ClassId, ClassId, DependencyInfo)]) -> bool {
    let n = edges.len();
    (0..n).any(|i| {
        let (_, messages, wait) = &edges[i];
        let (from, _, signal) = &edges[(i + 1) % n];
        from == messages
            && wait.waited_as == Access::Event
            && signal.held_as == Access::Signal
            && wait.context == signal.context
            && class::kind_of(*messages) == ClassKind::Messages
    })
}

fn cycle_report(
    recursive: bool,
    edges: Vec<(ClassId, ClassId, DependencyInfo)>,
    reader_cap: impl Fn(ClassId) -> Option<u32>,
) -> Report {
    let waited: Vec<ClassId> = edges.iter().map(|(_, to, _)| *to).collect();
    let dependencies: Vec<Dependency> = edges
        .into_iter()
        .map(|(from, to, e)| e.dependency(from, to))
        .collect();
    let n = dependencies.len();
    // Links where a read waits on a read: they block once a writer queues,
    // or once the class's reader cap is reached.
    let reads_on_reads: Vec<usize> = (0..n)
        .filter(|&i| {
            dependencies[i].waited_as == Access::Read
                && dependencies[(i + 1) % n].held_as == Access::Read
        })
        .collect();
    let kind = if recursive {
        ReportKind::RecursiveLocking
    } else {
        ReportKind::CircularDependency
    };
    Report {
        kind,
        needs_writer: !reads_on_reads.is_empty(),
        reader_cap: reads_on_reads
            .iter()
            .filter_map(|&i| reader_cap(waited[i]))
            .min(),
        dependencies,
        long_wait: None,
        pending_wait: false,
        concurrent_futures: false,
        suspended_holder: None,
    }
}

/// The order in which instances of one class were nested: a graph over
/// instance ids, kept for same-class nesting only. Instances of one class
/// nested in one fixed order (two fields of a struct, parent then child) are
/// fine; nested in orders that form a cycle they can deadlock.
///
/// Linear: a context holding instances `x1, ..., xn` of one class records
/// only `x(i) -> x(i+1)`, each wanted instance after the last one held
/// (`Engine::record`); `x1` precedes `xn` through the chain, so the same
/// cycles are found as with every pair, from n - 1 orders instead of n²/2.
/// A cycle shows a long run of orders one context recorded by its ends.
///
/// Bounded: past `MAX_INSTANCES` instances or `MAX_INSTANCE_ORDERS` orders
/// nothing new is recorded (no report rather than a wrong one).
#[derive(Default)]
pub(crate) struct InstanceOrder {
    nodes: rustc_hash::FxHashMap<u64, crate::graph::Node>,
    graph: Graph<DependencyInfo>,
}

const MAX_INSTANCES: usize = 65_536;
const MAX_INSTANCE_ORDERS: usize = 1 << 20;

impl InstanceOrder {
    /// Whether no new instance can be recorded.
    fn full(&self) -> bool {
        self.nodes.len() >= MAX_INSTANCES || self.graph.edge_count() >= MAX_INSTANCE_ORDERS
    }

    /// How many orders between instances are recorded.
    pub(crate) fn len(&self) -> usize {
        self.graph.edge_count()
    }

    fn node(&mut self, instance: u64) -> Option<crate::graph::Node> {
        if let Some(node) = self.nodes.get(&instance) {
            return Some(*node);
        }
        if self.full() {
            return None;
        }
        let node = self.nodes.len() as crate::graph::Node;
        self.nodes.insert(instance, node);
        Some(node)
    }

    /// Records that `to` was waited for while `from` (same class) was held;
    /// returns the cycle it closes, closing dependency first.
    fn insert(&mut self, from: u64, to: u64, info: DependencyInfo) -> Option<Vec<DependencyInfo>> {
        let (Some(a), Some(b)) = (self.node(from), self.node(to)) else {
            return None;
        };
        if self.graph.edge_count() >= MAX_INSTANCE_ORDERS && self.graph.edge(a, b).is_none() {
            return None;
        }
        let mut info = Some(info);
        match self
            .graph
            .insert(a, b, || info.take().expect("called once"))
        {
            Insert::Cycle(path) => {
                let mut edges: Vec<DependencyInfo> =
                    self.graph.edge(a, b).cloned().into_iter().collect();
                let path: Vec<&DependencyInfo> = path
                    .windows(2)
                    .filter_map(|pair| self.graph.edge(pair[0], pair[1]))
                    .collect();
                edges.extend(shorten_runs(&path).into_iter().cloned());
                Some(edges)
            }
            Insert::New | Insert::Known => None,
        }
    }
}

/// The longest run of orders one context recorded that a cycle shows whole.
const MAX_RUN_SHOWN: usize = 8;

/// The links of a cycle's path, each run of more than [`MAX_RUN_SHOWN`]
/// orders recorded by one context (the chain of a task holding many
/// instances) cut to its first and last two: every link shown was recorded,
/// and a report through 4 000 held instances stays a few lines long.
fn shorten_runs<'a>(path: &[&'a DependencyInfo]) -> Vec<&'a DependencyInfo> {
    let mut shown = Vec::new();
    for run in path.chunk_by(|a, b| a.context == b.context) {
        if run.len() > MAX_RUN_SHOWN {
            shown.extend_from_slice(&run[..2]);
            shown.extend_from_slice(&run[run.len() - 2..]);
        } else {
            shown.extend_from_slice(run);
        }
    }
    shown
}

/// A possible self-deadlock of a wait, until it is decided (`Engine::defer`).
pub(crate) struct Deferred {
    pub(crate) report: Report,
    pub(crate) class: ClassId,
    pub(crate) instance: u64,
    /// The held site and the waiting site, for the once-per-sites rule.
    pub(crate) sites: (SiteRef, SiteRef),
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
    /// A `forget()`-ed permit of the semaphore the context holds (its
    /// token): decided when the wait is given up, and then only when the
    /// permit is given back in this context (`keep_forgotten_report`).
    Forgotten(u64),
}

/// The held locks a new dependency can come from: the latest hold of each
/// (class, access, movable), since dependencies join classes and the order
/// of instances of one class is taken from the last one held; plus any hold
/// of the instance wanted. A task holding many locks of few classes (every
/// shard of a map) then costs one dependency per class, not per hold.
fn latest_per_class(held: &[HeldLock], want: &Acquire) -> Vec<HeldLock> {
    if held.len() <= 8 {
        return held.to_vec();
    }
    // Few distinct classes in practice: a linear look-up beats hashing.
    let mut seen: Vec<(ClassId, Access, bool)> = Vec::new();
    let mut kept: Vec<HeldLock> = Vec::new();
    for h in held.iter().rev() {
        let key = (h.lock.class, h.access, h.movable);
        let new = !seen.contains(&key);
        if new {
            seen.push(key);
        }
        if new || h.lock.instance == want.lock.instance {
            kept.push(*h);
        }
    }
    kept.reverse();
    kept
}
