//! The one sink for reports: kept in the engine, attributed to their tests,
//! printed to stderr, emitted as `ERROR` events through every subscriber
//! that has the layer, and turned into a panic when asked. No engine lock is
//! held while printing, emitting or panicking. Also the graph's export (DOT).

use std::sync::atomic::Ordering;

use rustc_hash::FxHashSet;
use tracing_core::dispatcher::{Dispatch, WeakDispatch};

use std::sync::Arc;

use super::attribution::{current_test, test_of_this_thread};
use super::confirm;
use super::validate::DependencyInfo;
use super::{describe, emit, lock_ignoring_poison, to_stderr, waits, Engine, Panic, TestKey};
use crate::report::{self, Report};
use crate::vocab::{ClassId, ContextId, SiteRef};

/// The key under which a one-dependency report of `class` between two
/// sites is remembered.
pub(super) fn sites_key(
    class: ClassId,
    first: SiteRef,
    second: SiteRef,
) -> (ClassId, usize, usize) {
    (class, first.addr(), second.addr())
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

/// Whether this is one of the detector's own threads (the watchdog, the
/// confirmation thread): a panic there would only end that thread.
fn on_our_thread() -> bool {
    matches!(
        std::thread::current().name(),
        Some(waits::WATCHDOG_THREAD | waits::CONFIRM_THREAD)
    )
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
    pub(crate) fn seen_at_sites(&self, class: ClassId, first: SiteRef, second: SiteRef) -> bool {
        lock_ignoring_poison(&self.reports)
            .seen
            .contains(&sites_key(class, first, second))
    }

    /// Whether a one-dependency report (self-deadlock, pool exhaustion,
    /// second wait) of `class` between these two sites is new; it is then
    /// remembered, so each pair of sites is reported once.
    pub(crate) fn first_at_sites(&self, class: ClassId, first: SiteRef, second: SiteRef) -> bool {
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
    /// the test that created that lock, if it is alive. Returns as
    /// `publish_to`.
    pub(crate) fn publish_for(
        &self,
        report: Report,
        panic: Panic,
        before_panic: impl FnOnce(),
        lock: u64,
    ) -> bool {
        // Look the test up once here; `publish_to` falls back to every live
        // test only when neither the context's test nor the creator is known.
        let test = self.test_of(lock);
        self.publish_to(report, panic, before_panic, test.map(|key| vec![key]))
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
    ///
    /// A report that a running test's guard will show (the test has not
    /// reached its check yet) is not printed now: the guard shows it, once,
    /// in the test's failure; a panic asked for then carries one line. A
    /// report found on the thread of a test whose guard was already dropped
    /// (`let _ = test_guard()`) ends that test here, with the report.
    ///
    /// Returns true when a panic was asked for but this thread is one of the
    /// detector's own (the confirmation thread): the caller makes a waiter
    /// give up instead (see `confirm::doom`).
    pub(super) fn publish_to(
        &self,
        mut report: Report,
        panic: Panic,
        before_panic: impl FnOnce(),
        tests_given: Option<Vec<TestKey>>,
    ) -> bool {
        self.note_concurrent_futures(&mut report);
        // The run's other processes then do not report it again.
        self.note_reported_in_store(&report);
        let text = report.to_string();
        let headline = report.headline();
        let cycle_line = report.cycle_line();
        let max_reports = self.max_reports.load(Ordering::Relaxed);
        let this_thread = test_of_this_thread();
        let panicking = std::thread::panicking();
        let (test_panics, attributed, shown_by, misuse) = {
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
            // The tests whose guard will show the report.
            let mut shown_by: Vec<(TestKey, Arc<str>)> = Vec::new();
            let mut misuse = None;
            for key in &keys {
                if let Some(record) = tests.get_mut(*key) {
                    if !record.checked {
                        test_panics |= match panic {
                            Panic::OnReport => record.panic_on_report,
                            Panic::OnDeadlock => record.panic_on_deadlock,
                            Panic::Never => false,
                        };
                    }
                    if record.checked && this_thread == Some(*key) && !panicking {
                        // Its guard is gone: the test ends here instead.
                        misuse = Some((Arc::clone(&record.name), record.created_at));
                        continue;
                    }
                    if record.checked {
                        // Its guard ran its check: the test ended for the
                        // detector. The report is printed, and fails nothing
                        // (it must not abort the process at the test's end).
                        continue;
                    }
                    shown_by.push((*key, Arc::clone(&record.name)));
                    if record.reports.len() < max_reports {
                        record.reports.push(report.clone());
                    } else {
                        record.dropped += 1;
                    }
                }
            }
            (test_panics, !keys.is_empty(), shown_by, misuse)
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
        // Zero-code test mode: `ASYNC_LOCKDEP=1` and no guard claims the
        // report: it fails the test that found it, by a panic where it was
        // found (the test's own thread, or any thread of a nextest process).
        let zero_code = !attributed
            && panic != Panic::Never
            && !panicking
            && super::enabled_by_environment()
            && in_a_test()
            && !on_our_thread();
        let print = self.print_reports.load(Ordering::Relaxed);
        if print && shown_by.is_empty() && misuse.is_none() {
            let note = if attributed {
                "(async-lockdep: this report fails the test it belongs to)\n"
            } else {
                ""
            };
            to_stderr(&format!("\n{text}{note}"));
        }
        if print {
            // Shown by the guard when the test ends; printed anyway if it
            // does not (it hangs for another reason).
            for (key, _) in &shown_by {
                confirm::print_if_test_still_runs(*key, Arc::from(text.as_str()));
            }
        }
        self.emit(&emit::ReportEvent {
            message: &headline,
            text: &text,
            kind,
            classes: &classes,
            sites: &sites,
        });
        if panicking {
            return false;
        }
        if let Some((name, created_at)) = misuse {
            before_panic();
            let created_at = created_at.map_or(String::new(), |at| format!(" (created at {at})"));
            panic!(
                "async-lockdep: {headline}, found in test `{name}` after its TestGuard{created_at} \
                 was dropped: was it bound with `let _ = test_guard()`, which drops it at once? \
                 Bind it for the whole test: `let _lockdep = test_guard();`.\n{text}"
            );
        }
        if zero_code {
            before_panic();
            let shown = if print {
                "the report is printed on stderr"
            } else {
                "ASYNC_LOCKDEP_PRINT=0 keeps the report off stderr"
            };
            panic!(
                "async-lockdep found a possible deadlock (ASYNC_LOCKDEP=1, no test_guard() in \
                 this test): {cycle_line}; {shown}"
            );
        }
        let global = match panic {
            Panic::OnReport => self.panic_on_report.load(Ordering::Relaxed),
            Panic::OnDeadlock => self.panic_on_deadlock.load(Ordering::Relaxed),
            Panic::Never => false,
        };
        if !(global || test_panics) {
            return false;
        }
        if on_our_thread() {
            return true;
        }
        before_panic();
        let what = match kind {
            report::ReportKind::DeadlockNow => "a deadlock (tasks stuck now)",
            report::ReportKind::SelfDeadlock => "a deadlock",
            _ => "a possible deadlock",
        };
        if shown_by.is_empty() {
            panic!("async-lockdep found {what}:\n{text}");
        }
        let names: Vec<String> = shown_by.iter().map(|(_, n)| format!("`{n}`")).collect();
        let gives_up = if kind == report::ReportKind::DeadlockNow {
            "; this waiter gives up so that the others can go on"
        } else {
            ""
        };
        panic!(
            "async-lockdep found {what}: {}{gives_up} (the full report fails test {} at its end)",
            cycle_line,
            names.join(", ")
        );
    }

    /// Sets [`Report::concurrent_futures`] for a cycle recorded in one task
    /// outside spans, from whether that task had waits pending side by side.
    fn note_concurrent_futures(&self, report: &mut Report) {
        let Some(first) = report.dependencies.first() else {
            return;
        };
        let context = first.context;
        if report.kind == report::ReportKind::CircularDependency
            && report.dependencies.iter().all(|d| d.context == context)
        {
            report.concurrent_futures = self.waits.had_concurrent_waits(context);
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
            to_stderr(&format!("{message}\n"));
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

/// Whether the calling thread runs a test: any thread of a process nextest
/// started for one test, or a thread libtest named after its test (not
/// `main`, not a tokio worker — `tokio-rt-worker`, `tokio-runtime-worker` —
/// which may run any test's tasks), in a test binary (cargo puts those in
/// a `deps` directory: a program run with `ASYNC_LOCKDEP=1` never panics).
fn in_a_test() -> bool {
    static TEST_BINARY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let test_binary = *TEST_BINARY.get_or_init(|| {
        std::env::current_exe().is_ok_and(|exe| {
            exe.parent()
                .and_then(|dir| dir.file_name())
                .is_some_and(|name| name == "deps")
        })
    });
    if !test_binary {
        return false;
    }
    if std::env::var_os("NEXTEST_TEST_NAME").is_some() {
        return true;
    }
    std::thread::current()
        .name()
        .is_some_and(|name| name != "main" && !name.starts_with("tokio-"))
}
