//! The [`Detector`] handle to the engine, its builder, and [`test_guard`].

use std::fmt;
use std::io::Write as _;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use tracing_core::dispatcher::{self, Dispatch};
use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::layer::DetectorLayer;
use crate::lockdep::{self, Options, TestKey, TestOptions};
use crate::report::{render_all, Report};

/// A handle to the process's lock-order checker. Cheap to clone: there is one
/// engine per process, and every handle reads the same graph and reports.
///
/// Detection is off until something turns it on: adding
/// [`layer`](Detector::layer) to a subscriber, [`test_guard`],
/// [`Detector::install_global`], [`Detector::enable`], or running with the
/// environment variable `ASYNC_LOCKDEP=1`. `ASYNC_LOCKDEP=0` keeps it off
/// whatever the code asks. Once on, it stays on for the rest of the process,
/// and every lock, queue and task of this crate reports to the engine, on
/// every thread, whether or not a subscriber is installed there.
///
/// # Examples
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let detector = async_lockdep::Detector::new();
/// tracing_subscriber::registry().with(detector.layer()).init();
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let accounts = async_lockdep::Mutex::with_class("accounts", 0u64);
/// let ledger = async_lockdep::Mutex::with_class("ledger", Vec::<u64>::new());
/// {
///     let _a = accounts.lock().await;
///     let _l = ledger.lock().await; // accounts -> ledger
/// }
/// {
///     let _l = ledger.lock().await;
///     let _a = accounts.lock().await; // ledger -> accounts: closes a cycle
/// }
/// # });
/// let reports = detector.take_reports();
/// assert_eq!(reports.len(), 1);
/// assert_eq!(reports[0].class_names(), ["ledger", "accounts"]);
/// ```
#[derive(Clone, Default)]
pub struct Detector {
    options: Options,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("status", &self.status())
            .finish()
    }
}

impl Detector {
    /// A handle to the engine with default options. Detection is not turned
    /// on until the handle's layer is installed (or [`Detector::enable`]).
    pub fn new() -> Detector {
        Detector::default()
    }

    /// A builder for limits, panics and the watchdog.
    pub fn builder() -> DetectorBuilder {
        DetectorBuilder::default()
    }

    /// A handle to the engine if detection is on in this process.
    pub fn current() -> Option<Detector> {
        lockdep::enabled().then(Detector::default)
    }

    /// Turns detection on for the process (unless `ASYNC_LOCKDEP=0`) and
    /// applies this handle's options, process-wide. Returns whether
    /// detection is on.
    pub fn enable(&self) -> bool {
        let on = lockdep::enable();
        if on {
            lockdep::ENGINE.configure(&self.options);
        }
        on
    }

    /// The layer to add to a `tracing-subscriber` registry. Making it turns
    /// detection on (see [`Detector::enable`]).
    pub fn layer<S>(&self) -> DetectorLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.enable();
        DetectorLayer::new()
    }

    /// Built with `--cfg tokio_unstable`: makes sure the layer sees tokio's
    /// lock spans on every thread, by making a registry with the layer the
    /// global default if there is none yet (a default set on this thread,
    /// or a global one set earlier, is left alone: it must have the layer),
    /// and says once if tokio's lock spans still do not reach the layer.
    fn see_tokio_locks(&self) {
        if !cfg!(tokio_unstable) {
            return;
        }
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let _ = dispatcher::set_global_default(self.dispatch());
        });
        crate::native::check_instrumentation();
    }

    /// A dispatcher made of a fresh registry and the layer.
    pub fn dispatch(&self) -> Dispatch {
        use tracing_subscriber::layer::SubscriberExt;
        Dispatch::new(tracing_subscriber::registry().with(self.layer()))
    }

    /// Installs a bare registry with the layer as the current thread's
    /// default until the guard is dropped, and turns detection on. Detection
    /// covers every thread either way; the dispatcher only receives the
    /// report events and gives reports their spans.
    pub fn set_default(&self) -> dispatcher::DefaultGuard {
        dispatcher::set_default(&self.dispatch())
    }

    /// Installs a bare registry with the layer as the process-wide default
    /// subscriber, and turns detection on.
    ///
    /// # Errors
    ///
    /// Fails if a global default was already set; detection is turned on
    /// anyway.
    pub fn install_global(&self) -> Result<(), dispatcher::SetGlobalDefaultError> {
        dispatcher::set_global_default(self.dispatch())
    }

    /// Every report found so far in this process, in the order found.
    pub fn reports(&self) -> Vec<Report> {
        lockdep::ENGINE.reports()
    }

    /// Whether any report was found (and not taken).
    pub fn has_reports(&self) -> bool {
        lockdep::ENGINE.report_count() > 0
    }

    /// Returns the reports found so far and forgets them (the graph is kept,
    /// so the same cycles are not reported again). Reports attributed to a
    /// test still fail it: use [`TestGuard::take_reports`] in tests.
    pub fn take_reports(&self) -> Vec<Report> {
        lockdep::ENGINE.take_reports()
    }

    /// Forgets the reports found so far (see [`Detector::take_reports`]).
    pub fn clear_reports(&self) {
        lockdep::ENGINE.clear_reports();
    }

    /// Panics with every report, in lockdep's format, if there is any: lock
    /// order cycles, self-deadlocks, recursive locking, deadlocks now and
    /// watchdog long waits alike.
    ///
    /// # Panics
    ///
    /// If any report was found in this process and not taken.
    #[track_caller]
    pub fn assert_no_cycles(&self) {
        let reports = self.reports();
        if !reports.is_empty() {
            panic!(
                "async-lockdep: {} possible deadlock(s) found:\n{}",
                reports.len(),
                render_all(&reports)
            );
        }
    }

    /// Counters describing the engine's state.
    pub fn status(&self) -> Status {
        let engine = &*lockdep::ENGINE;
        Status {
            enabled: lockdep::enabled(),
            dependencies: engine.dependency_count(),
            reports: engine.report_count(),
            dropped_reports: engine.dropped_reports(),
            contexts_holding_locks: engine.live_contexts(),
            contexts_waiting: engine.waits().len(),
            overflowed: engine.overflowed(),
            cached_chains: engine.cached_chains(),
            chain_cache_full: engine.chain_cache_full(),
            instance_orders: engine.instance_order_count(),
        }
    }

    /// Whether this process shares its dependencies with the other test
    /// processes of the run through the run's store (on by default when a
    /// store is configured: under `cargo nextest run`, or with
    /// `ASYNC_LOCKDEP_DIR`). Call it before the first lock is taken; tests
    /// that must not see the rest of the run call it with `false`.
    pub fn use_shared_store(&self, yes: bool) {
        crate::lockdep::store::allow(yes);
    }

    /// The dependency graph learned in this process, in Graphviz DOT: one
    /// arrow `"held" -> "waited"` per class dependency, sorted by when each
    /// class was first seen, and the dependencies of reported cycles in red.
    ///
    /// ```
    /// let dot = async_lockdep::Detector::new().to_dot();
    /// assert!(dot.starts_with("digraph async_lockdep {"));
    /// ```
    pub fn to_dot(&self) -> String {
        lockdep::ENGINE.to_dot()
    }

    /// Every report found so far, as JSON lines (one object per line; see
    /// [`Report::to_json`]).
    pub fn reports_json(&self) -> String {
        self.reports().iter().map(|r| r.to_json() + "\n").collect()
    }

    /// The locks the calling task (or thread) holds, as `(class name, site)`.
    pub fn held_locks(&self) -> Vec<(String, &'static Location<'static>)> {
        let context = crate::vocab::ContextId::current();
        lockdep::ENGINE
            .held_by(context)
            .iter()
            .filter_map(|h| {
                crate::lockdep::class::lookup(h.lock.class)
                    .map(|c| (c.name.into_owned(), h.site.location()))
            })
            .collect()
    }
}

/// Counters from [`Detector::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Whether detection is on in this process.
    pub enabled: bool,
    /// Dependencies recorded between classes (was `edges`).
    pub dependencies: usize,
    /// Reports found and not taken.
    pub reports: usize,
    /// Reports not kept because the report limit was reached.
    pub dropped_reports: usize,
    /// Tasks and threads that hold at least one lock right now.
    pub contexts_holding_locks: usize,
    /// Tasks and threads waiting for a contended lock (or executor) right now.
    pub contexts_waiting: usize,
    /// True once a limit was hit: no new dependencies are recorded since.
    pub overflowed: bool,
    /// Chains of held classes validated and cached (lockdep's chain cache):
    /// a lock taken with a cached chain costs one lookup.
    pub cached_chains: usize,
    /// True once the chain cache ran out of room (after growing to its
    /// largest size): chains not cached are validated again each time,
    /// which is slower, never wrong.
    pub chain_cache_full: bool,
    /// Orders recorded between instances of one class nested in each other
    /// (one per instance taken after another of its class, so a task
    /// holding n locks of one class adds n - 1).
    pub instance_orders: usize,
}

/// Configures the engine, for a program ([`DetectorBuilder::build`]) or for
/// one test ([`DetectorBuilder::test_guard`]).
///
/// Limits, printing and the watchdog are process-wide (there is one engine);
/// they apply when detection is turned on through the built handle. The two
/// panic options are process-wide too when set through a handle, and apply
/// to one test only when set through [`DetectorBuilder::test_guard`].
#[derive(Clone, Debug, Default)]
pub struct DetectorBuilder {
    options: Options,
}

impl DetectorBuilder {
    /// Most lock classes (and subclasses) to track; default 65 536.
    pub fn max_classes(mut self, n: usize) -> Self {
        self.options.max_classes = Some(n);
        self
    }

    /// Most class dependencies to record; default 1 048 576.
    pub fn max_dependencies(mut self, n: usize) -> Self {
        self.options.max_dependencies = Some(n);
        self
    }

    /// The former name of [`DetectorBuilder::max_dependencies`].
    #[deprecated(since = "0.1.0", note = "renamed to `max_dependencies`")]
    pub fn max_edges(self, n: usize) -> Self {
        self.max_dependencies(n)
    }

    /// Most reports to keep; default 1024. Later ones are still printed and
    /// emitted, and still fail the test they belong to.
    pub fn max_reports(mut self, n: usize) -> Self {
        self.options.max_reports = Some(n);
        self
    }

    /// Panic in the context that closes a cycle (or waits for what it holds),
    /// right after printing the report, so a test fails at the faulty line.
    pub fn panic_on_report(mut self, yes: bool) -> Self {
        self.options.panic_on_report = Some(yes);
        self
    }

    /// When tasks are deadlocked right now (a cycle in the live wait-for
    /// graph), panic in the waiting future that closes the cycle, right after
    /// printing the report, instead of hanging. The report fails the test it
    /// belongs to whatever happens to the panic (a queue or task may catch it).
    pub fn panic_on_deadlock(mut self, yes: bool) -> Self {
        self.options.panic_on_deadlock = Some(yes);
        self
    }

    /// Print each report to stderr once, the moment it is found (default on;
    /// the environment variable `ASYNC_LOCKDEP_PRINT=0` turns it off).
    pub fn print_reports(mut self, yes: bool) -> Self {
        self.options.print_reports = Some(yes);
        self
    }

    /// Report any wait (lock, flush, join) that lasts longer than
    /// `threshold`, once per wait, naming the waiter and the holders with
    /// their acquire sites. Off by default. One background thread checks every
    /// `threshold / 4`; asking again with a lower threshold lowers it.
    pub fn watchdog(mut self, threshold: Duration) -> Self {
        self.options.watchdog = Some(threshold);
        self
    }

    /// A handle carrying these options; they apply when detection is turned
    /// on through it ([`Detector::layer`], [`Detector::enable`], ...).
    pub fn build(self) -> Detector {
        Detector {
            options: self.options,
        }
    }

    /// As [`test_guard`], with these options: the panic options apply to
    /// this test only; limits, printing and the watchdog to the process.
    #[track_caller]
    pub fn test_guard(self) -> TestGuard {
        let test = TestOptions {
            panic_on_report: self.options.panic_on_report.unwrap_or(false),
            // A test with a guard does not hang on tasks stuck now: one
            // waiter gives up, and the guard fails the test with the report.
            panic_on_deadlock: self.options.panic_on_deadlock.unwrap_or(true),
            watchdog: self.options.watchdog.is_some(),
            created_at: Some(Location::caller()),
        };
        let global = Options {
            panic_on_report: None,
            panic_on_deadlock: None,
            ..self.options
        };
        TestGuard::new(Detector { options: global }, test, Location::caller())
    }
}

/// Turns detection on and fails the calling test if it creates a possible
/// deadlock.
///
/// Call it on the first line of a test (`#[tokio::test]` of either flavor,
/// or a plain `#[test]`). It leaves the test's `tracing` subscriber alone.
/// At the end of the test, the guard panics with every report that belongs
/// to this test; a test that already panics (an `expect` on a timeout, say)
/// prints them instead. Every report is also printed to stderr the moment it
/// is found, so a test that hangs still shows it.
///
/// A report belongs to the test whose code closed the cycle: code on the
/// test's thread, or on the runtime the guard was created in (tasks started
/// with plain `tokio::spawn` included). A report found where no test can be
/// told (a thread of its own) belongs to every test whose guard is alive.
/// Dependencies are kept for the whole process, so a cycle whose halves are
/// in two tests fails the test that closes it, with the other half's test,
/// task and sites in the report.
///
/// `let _ = test_guard();` still checks the test: the guard ends its check
/// at once, but the test stays registered until its thread ends, and a
/// report found after that aborts the test process with the report.
///
/// # Examples
///
/// ```should_panic
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let _lockdep = async_lockdep::test_guard();
///     let a = async_lockdep::Mutex::with_class("doc-a", ());
///     let b = async_lockdep::Mutex::with_class("doc-b", ());
///     {
///         let _a = a.lock().await;
///         let _b = b.lock().await;
///     }
///     let _b = b.lock().await;
///     let _a = a.lock().await; // b -> a closes a cycle: the test fails
/// }
/// ```
#[track_caller]
pub fn test_guard() -> TestGuard {
    DetectorBuilder::default().test_guard()
}

/// Returned by [`test_guard`]: at its drop, panics with the reports that
/// belong to the test.
#[must_use = "bind it (`let _lockdep = test_guard();`) so the test is checked at its end"]
pub struct TestGuard {
    detector: Detector,
    key: Option<TestKey>,
    name: Arc<str>,
    created_at: &'static Location<'static>,
}

thread_local! {
    /// The test registered on this thread; it is forgotten when the thread
    /// ends (or the next test registers), not when its guard drops, so that
    /// `let _ = test_guard()` still checks the test.
    static REGISTERED: std::cell::RefCell<Option<Registration>> =
        const { std::cell::RefCell::new(None) };
}

/// A test's registration, owned by its thread.
struct Registration {
    key: TestKey,
    name: Arc<str>,
    created_at: &'static Location<'static>,
    /// Its guard is not dropped yet (a second guard then is a mistake).
    guard_alive: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (reports, dropped) = lockdep::ENGINE.unregister_test(self.key);
        if reports.is_empty() && dropped == 0 {
            return;
        }
        // Found after the guard's check: fail loudly rather than pass. A
        // panic here (a thread-local destructor) would abort without a word.
        let _ = writeln!(
            std::io::stderr(),
            "async-lockdep: {} possible deadlock(s) found in test `{}` after its TestGuard \
             (created at {}) was dropped; was it bound with `let _ = test_guard()`? Bind it \
             with `let _lockdep = test_guard();`.\n{}",
            reports.len() + dropped,
            self.name,
            self.created_at,
            render_all(&reports)
        );
        std::process::abort();
    }
}

impl TestGuard {
    fn new(
        detector: Detector,
        options: TestOptions,
        created_at: &'static Location<'static>,
    ) -> Self {
        let thread = std::thread::current();
        let name: Arc<str> = Arc::from(thread.name().unwrap_or("<unnamed thread>"));
        if !detector.enable() {
            return TestGuard {
                detector,
                key: None,
                name,
                created_at,
            };
        }
        detector.see_tokio_locks();
        // One guard per test: a second one while the first is alive would
        // split the test's reports between them.
        let first = REGISTERED
            .try_with(|r| {
                r.borrow()
                    .as_ref()
                    .filter(|r| r.guard_alive)
                    .map(|r| r.created_at)
            })
            .ok()
            .flatten();
        if let Some(first) = first {
            panic!(
                "async-lockdep: a second test_guard() in test `{name}` (at {created_at}), while \
                 the first one (created at {first}) is alive: one guard per test checks all of it"
            );
        }
        // A test registered before on this thread ends here.
        let _ = REGISTERED.try_with(|r| r.borrow_mut().take());
        let key = lockdep::ENGINE.register_test(Arc::clone(&name), options);
        let _ = REGISTERED.try_with(|r| {
            *r.borrow_mut() = Some(Registration {
                key,
                name: Arc::clone(&name),
                created_at,
                guard_alive: true,
            });
        });
        TestGuard {
            detector,
            key: Some(key),
            name,
            created_at,
        }
    }

    /// A handle to the engine.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Returns the reports of this test found so far and forgets them, for
    /// tests that expect a report and assert what it says.
    pub fn take_reports(&self) -> Vec<Report> {
        match self.key {
            Some(key) => lockdep::ENGINE.take_test_reports(key).0,
            None => Vec::new(),
        }
    }

    /// Panics with the reports of this test found so far, if there is any.
    ///
    /// # Panics
    ///
    /// If a report belongs to this test.
    #[track_caller]
    pub fn check(&self) {
        let Some(key) = self.key else { return };
        lockdep::ENGINE.check_store(key);
        let (reports, dropped) = lockdep::ENGINE.take_test_reports(key);
        if !reports.is_empty() || dropped > 0 {
            panic!("{}", self.failure(&reports, dropped));
        }
    }

    fn failure(&self, reports: &[Report], dropped: usize) -> String {
        let mut text = format!(
            "async-lockdep: {} possible deadlock(s) found in test `{}` (guard created at {}):\n{}",
            reports.len() + dropped,
            self.name,
            self.created_at,
            render_all(reports)
        );
        if dropped > 0 {
            text.push_str(&format!(
                "\n({dropped} more not kept: the report limit was reached)\n"
            ));
        }
        text
    }
}

impl fmt::Debug for TestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestGuard")
            .field("test", &self.name)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl Drop for TestGuard {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let _ = REGISTERED.try_with(|r| {
            if let Some(r) = r.borrow_mut().as_mut().filter(|r| r.key == key) {
                r.guard_alive = false;
            }
        });
        // Cycles through this test's dependencies and what other test
        // processes of the run wrote meanwhile (the run's store).
        lockdep::ENGINE.check_store(key);
        // Waits of this test still undecided (a re-lock in one task that
        // still waits with its conflict standing) lasted the whole test.
        lockdep::ENGINE.settle_deferred(key);
        lockdep::ENGINE.mark_checked(key);
        let (reports, dropped) = lockdep::ENGINE.take_test_reports(key);
        if reports.is_empty() && dropped == 0 {
            return;
        }
        let text = self.failure(&reports, dropped);
        if std::thread::panicking() {
            // The test fails anyway; show why it may have hung or failed.
            lockdep::to_stderr(&format!("{text}\n"));
        } else {
            panic!("{text}");
        }
    }
}
