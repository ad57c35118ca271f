//! The one sink for reports: kept in the engine, attributed to their tests,
//! printed to stderr, emitted as `ERROR` events through every subscriber
//! that has the layer, and turned into a panic when asked. No engine lock is
//! held while printing, emitting or panicking. Also the graph's export (DOT).

use std::panic::Location;
use std::sync::atomic::Ordering;

use rustc_hash::FxHashSet;
use tracing_core::dispatcher::{Dispatch, WeakDispatch};

use super::attribution::current_test;
use super::validate::DependencyInfo;
use super::{describe, emit, lock_ignoring_poison, waits, Engine, Panic, TestKey};
use crate::report::{self, Report};
use crate::vocab::{ClassId, ContextId};

/// The key under which a one-dependency report of `class` between two
/// sites is remembered.
pub(super) fn sites_key(
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

#[derive(Default)]
pub(super) struct Reports {
    pub(super) list: Vec<Report>,
    /// Self-deadlocks already reported: (class, held site, wait site).
    pub(super) seen: FxHashSet<(ClassId, usize, usize)>,
    /// Live deadlocks already reported, by the contexts stuck in them.
    pub(super) deadlocks_now: FxHashSet<Vec<ContextId>>,
    pub(super) dropped: usize,
}

/// The sites of a report's dependencies, as `held_at -> waited_at` pairs.
pub(super) fn report_sites(report: &Report) -> String {
    report
        .dependencies
        .iter()
        .map(|d| format!("{} -> {}", d.held_at, d.waited_at))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Engine {
    /// Remembers a dispatcher that has the layer, to emit reports to it.
    pub(crate) fn add_dispatch(&self, dispatch: &Dispatch) {
        let mut dispatches = lock_ignoring_poison(&self.dispatches);
        dispatches.retain(|d| d.upgrade().is_some());
        dispatches.push(dispatch.downgrade());
    }

    /// Whether this pair of sites of `class` was reported already (see
    /// [`Engine::first_at_sites`]), without remembering it.
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

    /// Keeps a report, attributes it to its test, prints it to stderr, and
    /// emits it as an `ERROR` event at target `async_lockdep` through every
    /// subscriber that has the layer; then panics if asked to (`before_panic`
    /// runs first). No internal lock is held while printing, emitting or
    /// panicking.
    pub(crate) fn publish(&self, report: Report, panic: Panic, before_panic: impl FnOnce()) {
        self.publish_to(report, panic, before_panic, None);
    }

    /// As [`Engine::publish`], for a report about waiting for lock instance
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

    /// As [`Engine::publish`], attributed to `tests` when given, else to the
    /// test of the calling context (every live test when unknown).
    pub(super) fn publish_to(
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
                Some(waits::WATCHDOG_THREAD | waits::CONFIRM_THREAD)
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
    pub(super) fn emit(&self, event: &emit::ReportEvent<'_>) {
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

    /// Every dependency in the graph, in the order or not, with its info.
    pub(super) fn all_dependencies(&self) -> Vec<(ClassId, ClassId, DependencyInfo, bool)> {
        lock_ignoring_poison(&self.graph)
            .edges()
            .into_iter()
            .map(|(from, to, info, in_order)| (from, to, info.clone(), in_order))
            .collect()
    }

    /// The graph in DOT (see `Detector::to_dot`).
    pub(crate) fn to_dot(&self) -> String {
        let reports = lock_ignoring_poison(&self.reports).list.clone();
        let cycle_edges = report::cycle_pairs(&reports);
        let edges: Vec<(String, String, bool)> = self
            .all_dependencies()
            .into_iter()
            .map(|(from, to, _, in_order)| {
                let (a, b) = (describe(from).to_string(), describe(to).to_string());
                let in_cycle = !in_order || cycle_edges.contains(&(a.clone(), b.clone()));
                (a, b, in_cycle)
            })
            .collect();
        report::render_dot(&edges)
    }
}
