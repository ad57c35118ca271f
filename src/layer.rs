//! The tracing layer and the [`Detector`] handle.
//!
//! Wrappers find the detector through the current `tracing` dispatcher, the
//! way `tracing-error` finds its layer: the layer answers `downcast_raw` for
//! a private type, and `Dispatch::downcast_ref` looks through `Layered`
//! stacks. When no detector is installed the look-up answers `None` and the
//! wrappers do nothing more.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::{Arc, Weak};

use tracing_core::dispatcher::{self, Dispatch};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::hooks::DetectorRef;
use crate::report::{render_all, Report};
use crate::state::{Limits, State};

/// What the layer answers to `downcast_raw`: the way in to the detector.
struct LayerHook {
    state: Arc<State>,
}

/// The detector new locks, queues and tasks bind to: the current
/// dispatcher's, else the one this thread reported to last. While no detector
/// exists in the process, this is one atomic load.
#[inline]
pub(crate) fn current_state() -> Option<Arc<State>> {
    dispatcher_state().or_else(thread_hint)
}

/// The detector installed in the current dispatcher, if any.
fn dispatcher_state() -> Option<Arc<State>> {
    if !crate::state::any_detector_alive() {
        return None;
    }
    dispatcher::get_default(|d| {
        d.downcast_ref::<LayerHook>()
            .map(|hook| Arc::clone(&hook.state))
    })
}

/// The detector the task (or thread, outside tasks) running on this thread
/// reported to last: its address, the task, and a weak handle.
type Hint = (
    Cell<usize>,
    Cell<Option<tokio::task::Id>>,
    RefCell<Weak<State>>,
);

thread_local! {
    /// Worker threads have no default dispatcher; a lock, queue or task that
    /// a task creates there belongs to the detector of the locks that task
    /// uses. Keyed by task, so tasks of other tests sharing the thread (a
    /// shared runtime) never inherit it.
    static HINT: Hint = const { (Cell::new(0), Cell::new(None), RefCell::new(Weak::new())) };
}

/// Remembers `state` as the detector the current task works for.
#[inline]
fn note(state: &Arc<State>) {
    let address = Arc::as_ptr(state) as usize;
    let task = tokio::task::try_id();
    let known = HINT
        .try_with(|(last, owner, _)| last.get() == address && owner.get() == task)
        .unwrap_or(true);
    if !known {
        remember(state, address, task);
    }
}

#[cold]
#[inline(never)]
fn remember(state: &Arc<State>, address: usize, task: Option<tokio::task::Id>) {
    let _ = HINT.try_with(|(last, owner, weak)| {
        if let Ok(mut weak) = weak.try_borrow_mut() {
            *weak = Arc::downgrade(state);
            last.set(address);
            owner.set(task);
        }
    });
}

/// The detector the current task reported to last, if it is still alive.
fn thread_hint() -> Option<Arc<State>> {
    if !crate::state::any_detector_alive() {
        return None;
    }
    let task = tokio::task::try_id();
    HINT.try_with(|(_, owner, weak)| {
        if owner.get() != task {
            return None;
        }
        weak.try_borrow().ok().and_then(|w| w.upgrade())
    })
    .ok()
    .flatten()
}

/// The detector a lock bound to `bound` should report to: the current
/// dispatcher's, if it has one, else `bound`. Clones no `Arc` when they are
/// the same (the common case), so the hot path stays free of shared writes.
///
/// With a single detector alive, a bound lock's detector is the only one the
/// current dispatcher could have: no look-up is needed.
#[inline]
pub(crate) fn current_or(bound: Option<&Arc<State>>) -> Option<DetectorRef<'_>> {
    match (crate::state::detectors_alive(), bound) {
        (0, _) => None,
        (1, Some(bound)) => {
            note(bound);
            Some(DetectorRef::Borrowed(bound))
        }
        _ => current_or_look_up(bound),
    }
}

/// [`current_or`] when the dispatcher must be asked.
#[inline(never)]
fn current_or_look_up(bound: Option<&Arc<State>>) -> Option<DetectorRef<'_>> {
    let current = dispatcher::get_default(|d| match d.downcast_ref::<LayerHook>() {
        None => None,
        Some(hook) if bound.is_some_and(|b| Arc::ptr_eq(b, &hook.state)) => Some(None),
        Some(hook) => Some(Some(Arc::clone(&hook.state))),
    });
    let chosen = match current {
        Some(Some(other)) => DetectorRef::Owned(other),
        Some(None) | None => DetectorRef::Borrowed(bound?),
    };
    note(match &chosen {
        DetectorRef::Borrowed(state) => state,
        DetectorRef::Owned(state) => state,
    });
    Some(chosen)
}

/// A lock-order checker. Cheap to clone: all clones share one graph.
///
/// Install its [`layer`](Detector::layer) in a `tracing-subscriber` registry,
/// use [`crate::Mutex`] (and the other wrappers) in place of tokio's, and
/// call [`assert_no_cycles`](Detector::assert_no_cycles) at the end of a test.
///
/// # Examples
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let detector = async_lockdep::Detector::new();
/// let subscriber = tracing_subscriber::registry().with(detector.layer());
/// let _default = tracing::subscriber::set_default(subscriber);
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
/// let reports = detector.reports();
/// assert_eq!(reports.len(), 1);
/// assert_eq!(reports[0].class_names(), ["ledger", "accounts"]);
/// ```
#[derive(Clone)]
pub struct Detector {
    state: Arc<State>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("status", &self.status())
            .finish()
    }
}

impl Detector {
    /// A detector with default limits that records reports (and logs them).
    pub fn new() -> Detector {
        DetectorBuilder::default().build()
    }

    /// A builder for limits and for panicking at the first report.
    pub fn builder() -> DetectorBuilder {
        DetectorBuilder::default()
    }

    /// The detector of the current dispatcher, if one is installed.
    pub fn current() -> Option<Detector> {
        dispatcher_state().map(|state| Detector { state })
    }

    /// The layer to add to a `tracing-subscriber` registry.
    pub fn layer<S>(&self) -> DetectorLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.state.set_span_reader(span_names::<S>);
        crate::emit::register_callsite();
        DetectorLayer {
            hook: LayerHook {
                state: Arc::clone(&self.state),
            },
            _subscriber: PhantomData,
        }
    }

    /// A dispatcher made of a fresh registry and this detector's layer.
    pub fn dispatch(&self) -> Dispatch {
        use tracing_subscriber::layer::SubscriberExt;
        Dispatch::new(tracing_subscriber::registry().with(self.layer()))
    }

    /// Installs this detector (on a bare registry) as the default for the
    /// current thread until the guard is dropped.
    ///
    /// Locks and queues created while it is installed keep reporting to this
    /// detector from every thread, so this also covers multi-thread runtimes.
    /// Use [`Detector::install_global`] for locks created on worker threads by
    /// tasks not started with [`crate::spawn`].
    pub fn set_default(&self) -> dispatcher::DefaultGuard {
        dispatcher::set_default(&self.dispatch())
    }

    /// Installs this detector (on a bare registry) as the process-wide
    /// default. Fails if a global default was already set.
    pub fn install_global(&self) -> Result<(), dispatcher::SetGlobalDefaultError> {
        dispatcher::set_global_default(self.dispatch())
    }

    /// Every report found so far, in the order found.
    pub fn reports(&self) -> Vec<Report> {
        self.state.reports()
    }

    /// Whether any report was found.
    pub fn has_reports(&self) -> bool {
        self.state.report_count() > 0
    }

    /// Returns the reports found so far and forgets them (the graph is kept,
    /// so the same cycles are not reported again).
    pub fn take_reports(&self) -> Vec<Report> {
        self.state.take_reports()
    }

    /// Forgets the reports found so far (the graph is kept, so the same
    /// cycles are not reported again).
    pub fn clear_reports(&self) {
        self.state.clear_reports();
    }

    /// Panics with every report, in lockdep's format, if there is any: lock
    /// order cycles, self-deadlocks, recursive locking, live deadlocks and
    /// watchdog long waits alike.
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

    /// Counters describing the detector's state.
    pub fn status(&self) -> Status {
        Status {
            edges: self.state.edge_count(),
            reports: self.state.report_count(),
            dropped_reports: self.state.dropped_reports(),
            contexts_holding_locks: self.state.live_contexts(),
            contexts_waiting: self.state.waits().len(),
            overflowed: self.state.overflowed(),
        }
    }

    /// The locks the calling task (or thread) holds, as `(class name, site)`.
    pub fn held_locks(&self) -> Vec<(String, &'static std::panic::Location<'static>)> {
        let context = crate::context::ContextId::current();
        self.state
            .held_by(context)
            .iter()
            .filter_map(|h| {
                crate::class::describe(h.lock.class).map(|c| (c.name.into_owned(), h.site))
            })
            .collect()
    }
}

/// Counters from [`Detector::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Dependencies recorded between classes (including rejected ones).
    pub edges: usize,
    /// Reports found.
    pub reports: usize,
    /// Reports not kept because the report limit was reached.
    pub dropped_reports: usize,
    /// Tasks and threads that hold at least one lock right now.
    pub contexts_holding_locks: usize,
    /// Tasks and threads waiting for a contended lock (or executor) right now.
    pub contexts_waiting: usize,
    /// True once a limit was hit: no new dependencies are recorded since.
    pub overflowed: bool,
}

/// Configures a [`Detector`].
#[derive(Clone, Debug, Default)]
pub struct DetectorBuilder {
    limits: Limits,
    panic_on_report: bool,
    panic_on_deadlock: bool,
    watchdog: Option<std::time::Duration>,
}

impl DetectorBuilder {
    /// Most lock classes (and subclasses) to track; default 65 536.
    pub fn max_classes(mut self, n: usize) -> Self {
        self.limits.max_classes = n;
        self
    }

    /// Most class dependencies to record; default 1 048 576.
    pub fn max_edges(mut self, n: usize) -> Self {
        self.limits.max_edges = n;
        self
    }

    /// Most reports to keep; default 1024. Later ones are still logged.
    pub fn max_reports(mut self, n: usize) -> Self {
        self.limits.max_reports = n;
        self
    }

    /// Panic in the task that closes a cycle, right after logging the report,
    /// so a test fails at the faulty line instead of later (or hanging).
    pub fn panic_on_report(mut self, yes: bool) -> Self {
        self.panic_on_report = yes;
        self
    }

    /// When tasks are deadlocked right now (a cycle in the live wait-for
    /// graph), panic in the waiting future that closes the cycle, right after
    /// logging the report: the test fails at once instead of hanging.
    pub fn panic_on_deadlock(mut self, yes: bool) -> Self {
        self.panic_on_deadlock = yes;
        self
    }

    /// Report any wait (lock, flush, join) that lasts longer than
    /// `threshold`, once per wait, naming the waiter and the holders with
    /// their acquire sites. Off by default. A background thread checks every
    /// `threshold / 4` and stops when the detector is dropped.
    pub fn watchdog(mut self, threshold: std::time::Duration) -> Self {
        self.watchdog = Some(threshold);
        self
    }

    /// The detector.
    pub fn build(self) -> Detector {
        let state = Arc::new(State::new(
            self.limits,
            self.panic_on_report,
            self.panic_on_deadlock,
        ));
        if let Some(threshold) = self.watchdog {
            crate::waits::start_watchdog(&state, threshold);
        }
        Detector { state }
    }
}

/// The `tracing-subscriber` layer of a [`Detector`].
///
/// It records the fields of new spans (for reports) and lets the lock
/// wrappers find the detector. It holds no global state.
pub struct DetectorLayer<S> {
    hook: LayerHook,
    _subscriber: PhantomData<fn(S)>,
}

impl<S> fmt::Debug for DetectorLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectorLayer").finish_non_exhaustive()
    }
}

/// The formatted fields of a span, kept in its extensions for reports.
struct SpanFields(String);

struct FieldWriter<'a>(&'a mut String);

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={:?}", field.name(), value);
    }
}

impl<S> Layer<S> for DetectorLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        self.hook.state.set_dispatch(dispatch);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = String::new();
        attrs.record(&mut FieldWriter(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
                values.record(&mut FieldWriter(fields));
            }
        }
    }

    // SAFETY: the pointers returned point to `self` or to its field of the
    // requested type, which live as long as the `&self` they come from; this
    // is the contract `Dispatch::downcast_ref` relies on.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<LayerHook>() {
            Some(&self.hook as *const LayerHook as *const ())
        } else {
            None
        }
    }
}

/// The current span and its parents, innermost first, as `name{fields}`.
fn span_names<S>(dispatch: &Dispatch) -> Vec<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return Vec::new();
    };
    let current = dispatch.current_span();
    let Some(id) = current.id() else {
        return Vec::new();
    };
    let Some(span) = subscriber.span(id) else {
        return Vec::new();
    };
    span.scope()
        .take(8)
        .map(|s| {
            let extensions = s.extensions();
            match extensions.get::<SpanFields>() {
                Some(SpanFields(fields)) if !fields.is_empty() => {
                    format!("{}{{{}}}", s.name(), fields)
                }
                _ => s.name().to_string(),
            }
        })
        .collect()
}
