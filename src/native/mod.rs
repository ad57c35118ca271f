//! The tokio front end: plain `tokio::sync::{Mutex, RwLock, Semaphore}`,
//! seen through tokio's own instrumentation (`--cfg tokio_unstable` and
//! tokio's `tracing` feature), turned into the engine's seam verbs. The
//! layer calls in here; nothing here is reached without it.
//!
//! What tokio emits (1.54) and what it becomes:
//!
//! | tokio                                                  | engine                         |
//! |--------------------------------------------------------|--------------------------------|
//! | `runtime.resource` span (`concrete_type`, `loc.*`)      | a lock instance of the class of `loc` |
//! | its inner semaphore span (`is_internal=true`)           | the same lock (a semaphore's permits) |
//! | `runtime.resource.async_op` span (`source`)            | an acquisition: access, owned or not |
//! | `runtime::resource::poll_op` pending, first time        | the wait starts (`Waiting`)    |
//! | `runtime::resource::poll_op` ready                      | held (`Holding`)               |
//! | the op span closed before ready                         | the wait cancelled             |
//! | `state_update` `locked` / `write_locked` / `current_readers` with no op | `try_*`: held, no dependency |
//! | `state_update` `locked=false`, `write_locked=false`, readers `sub` | released          |
//! | inner `permits` `sub` with no op; `add`, or permits handed to a waiter | `try_acquire`; released |
//!
//! A release is matched to the releasing context's oldest hold of that
//! lock, else to the oldest hold (the guard or permit moved): tokio's
//! `locked=false` follows the release, so the next holder may already be
//! recorded. The context is [`crate::ContextId::current`], as for the
//! wrappers (the task being polled, or the thread).
//!
//! Our wrappers wrap tokio's types: they make tokio's lock inside
//! [`Ours`], and a resource made there is not followed, so its events are
//! ignored and each lock is counted once, with no cost on the lock path.

mod resource;
mod site;

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::lockdep::class::{self, ClassKind};
use crate::vocab::{Access, LockRef};
use resource::{Kind, Op, Resource};

/// A public resource span we follow.
struct ResourceExt(Arc<Resource>);

/// The inner semaphore span of a resource we follow.
struct InternalExt(Arc<Resource>);

/// An acquisition span of a resource we follow.
struct OpExt(Arc<Op>);

/// A task's `runtime.spawn` span: the key of its spawn site.
struct SpawnExt(u64);

/// A span of ours entered on this thread.
enum Entered {
    /// An acquisition being polled.
    Op(Arc<Op>),
    /// A task being polled, by the key of its spawn site.
    Task(u64),
}

/// What the calling thread is doing with tokio's constructors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Making {
    /// A user's lock: followed.
    Plain,
    /// One of our wrappers: not followed (the wrapper reports it).
    Ours,
    /// The probe of [`check_instrumentation`].
    Probe,
}

thread_local! {
    static MAKING: Cell<Making> = const { Cell::new(Making::Plain) };
    /// The resource whose acquisition an op just recorded on this thread:
    /// tokio's `locked=true` (or readers `add`, `write_locked=true`) that
    /// follows it is the same acquisition.
    static JUST_ACQUIRED: Cell<*const Resource> = const { Cell::new(std::ptr::null()) };
    /// The acquisition and task spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<(Id, Entered)>> = const { RefCell::new(Vec::new()) };
}

/// While alive, tokio's locks made on this thread are ours (a wrapper makes
/// its tokio lock): not followed, as the wrapper reports that lock itself.
/// A guard rather than a closure, so that tokio's `#[track_caller]`
/// constructors still see the wrapper's caller.
pub(crate) struct Ours(Making);

impl Ours {
    #[inline]
    pub(crate) fn making() -> Ours {
        Ours(
            MAKING
                .try_with(|m| m.replace(Making::Ours))
                .unwrap_or(Making::Plain),
        )
    }
}

impl Drop for Ours {
    #[inline]
    fn drop(&mut self) {
        let _ = MAKING.try_with(|m| m.set(self.0));
    }
}

/// Whether a resource span reached the layer during the probe.
static PROBE_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `--cfg tokio_unstable`: makes a tokio `Mutex` and says once, on
/// stderr, if the layer did not see its span (tokio's `tracing` feature
/// off, no subscriber with the layer on this thread, or a filter that hides
/// tokio's TRACE spans).
pub(crate) fn check_instrumentation() {
    if !cfg!(tokio_unstable) {
        return;
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = MAKING.try_with(|m| m.replace(Making::Probe));
        let _ = tokio::sync::Mutex::new(());
        if let Ok(previous) = previous {
            let _ = MAKING.try_with(|m| m.set(previous));
        }
        if !PROBE_SEEN.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "async-lockdep: built with `--cfg tokio_unstable`, but tokio's lock spans do not \
                 reach the async-lockdep layer: plain `tokio::sync` locks are not checked. Turn \
                 on tokio's `tracing` feature, add `Detector::layer()` to the subscriber of this \
                 thread (or the global one), and let TRACE spans of target `tokio` through to it \
                 (a per-layer filter: see the README, \"With no code change\")."
            );
        }
    });
}

/// What a `runtime.resource` or `runtime.resource.async_op` span says.
#[derive(Default)]
struct SpanFields<'a> {
    concrete_type: Option<Kind>,
    internal: bool,
    file: Option<String>,
    line: u32,
    column: u32,
    source: Option<(Access, bool)>,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Visit for SpanFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "concrete_type" => {
                self.concrete_type = match value {
                    "Mutex" => Some(Kind::Mutex),
                    "RwLock" => Some(Kind::RwLock),
                    "Semaphore" => Some(Kind::Semaphore),
                    _ => None,
                }
            }
            "loc.file" => self.file = Some(value.to_owned()),
            "source" => self.source = op_source(value),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "is_internal" {
            self.internal = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "loc.line" => self.line = u32::try_from(value).unwrap_or(u32::MAX),
            "loc.col" => self.column = u32::try_from(value).unwrap_or(u32::MAX),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// The access and ownership of an acquisition by its `source`.
fn op_source(source: &str) -> Option<(Access, bool)> {
    Some(match source {
        "Mutex::lock" => (Access::Lock, false),
        "Mutex::lock_owned" => (Access::Lock, true),
        "RwLock::read" => (Access::Read, false),
        "RwLock::read_owned" => (Access::Read, true),
        "RwLock::write" => (Access::Write, false),
        "RwLock::write_owned" => (Access::Write, true),
        "Semaphore::acquire" | "Semaphore::acquire_many" => (Access::Permits, false),
        "Semaphore::acquire_owned" | "Semaphore::acquire_many_owned" => (Access::Permits, true),
        _ => return None,
    })
}

/// Locks tokio makes for itself (`OnceCell`'s semaphore) are not followed.
fn made_by_tokio_itself(file: &str) -> bool {
    file.ends_with("once_cell.rs") || file.ends_with("set_once.rs")
}

/// Says once that locks made by `Default` or `From` (their span's site is
/// the `new` call inside tokio) share one class per kind.
fn note_made_inside_tokio(file: &str, line: u32) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::lockdep::to_stderr(&format!(
            "async-lockdep: a plain tokio lock was made inside tokio ({file}:{line}): \
             `Default::default()` or `From::from`, whose site tokio gives as its own `new` \
             call. All such locks of one kind share that one class; make them with `new` \
             (a class per line) to tell them apart.\n"
        ));
    }
}

const RESOURCE: &str = "runtime.resource";
const ASYNC_OP: &str = "runtime.resource.async_op";
const SPAWN: &str = "runtime.spawn";

/// Whether a span is one of tokio's runtime spans (resources, acquisitions,
/// task polls): not a span of the user's, so not a sub-context.
pub(crate) fn is_tokio_span(metadata: &tracing_core::Metadata<'_>) -> bool {
    metadata.name().starts_with("runtime.") && metadata.target().starts_with("tokio")
}

/// A span was made: follows it if it is a lock or an acquisition of one.
pub(crate) fn new_span<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let name = attrs.metadata().name();
    if name == RESOURCE {
        new_resource(attrs, id, ctx);
    } else if name == ASYNC_OP {
        new_op(attrs, id, ctx);
    } else if name == SPAWN {
        new_task(attrs, id, ctx);
    }
}

/// A task's span: keeps the key of its spawn site, which tells apart the
/// look-ups of acquisition lines of tasks spawned at different places.
fn new_task<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if crate::lockdep::engine().is_none() {
        return;
    }
    let mut fields = SpanFields::default();
    attrs.record(&mut fields);
    let Some(file) = fields.file else { return };
    let key = std::hash::BuildHasher::hash_one(
        &rustc_hash::FxBuildHasher,
        (file, fields.line, fields.column),
    );
    if let Some(span) = ctx.span(id) {
        span.extensions_mut().insert(SpawnExt(key | 1));
    }
}

fn new_resource<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let making = MAKING.try_with(Cell::get).unwrap_or(Making::Plain);
    if making == Making::Probe {
        PROBE_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if making != Making::Plain || crate::lockdep::engine().is_none() {
        return;
    }
    let mut fields = SpanFields::default();
    attrs.record(&mut fields);
    let Some(kind) = fields.concrete_type else {
        return;
    };
    let Some(span) = ctx.span(id) else { return };
    if fields.internal {
        // Made while its public resource is entered (it has no parent).
        let outer = ctx
            .lookup_current()
            .and_then(|outer| outer.extensions().get::<ResourceExt>().map(|r| r.0.clone()));
        if let Some(outer) = outer {
            span.extensions_mut().insert(InternalExt(outer));
        }
        return;
    }
    let Some(file) = fields.file else { return };
    if made_by_tokio_itself(&file) {
        return;
    }
    if site::in_crates(&file, &["tokio"]) {
        note_made_inside_tokio(&file, fields.line);
    }
    let class_kind = match kind {
        Kind::Mutex => ClassKind::Mutex,
        Kind::RwLock => ClassKind::RwLock,
        Kind::Semaphore => ClassKind::Semaphore,
    };
    let class = class::for_site_parts(&file, fields.line, fields.column, class_kind);
    let resource = Resource::new(LockRef::new(class), kind);
    span.extensions_mut()
        .insert(ResourceExt(Arc::new(resource)));
}

fn new_op<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let Some(parent) = span.parent() else { return };
    let Some(resource) = parent
        .extensions()
        .get::<ResourceExt>()
        .map(|r| r.0.clone())
    else {
        return;
    };
    let mut fields = SpanFields::default();
    attrs.record(&mut fields);
    let Some((access, movable)) = fields.source else {
        return;
    };
    let op = Op::new(resource, access, movable);
    span.extensions_mut().insert(OpExt(Arc::new(op)));
}

/// A span was entered: an acquisition of ours is being polled (or made).
#[inline]
pub(crate) fn entered<S>(id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let entered = match span.name() {
        ASYNC_OP => span
            .extensions()
            .get::<OpExt>()
            .map(|op| Entered::Op(op.0.clone())),
        SPAWN => span
            .extensions()
            .get::<SpawnExt>()
            .map(|task| Entered::Task(task.0)),
        _ => None,
    };
    if let Some(entered) = entered {
        let _ = ENTERED.try_with(|spans| spans.borrow_mut().push((id.clone(), entered)));
    }
}

/// A span was exited.
#[inline]
pub(crate) fn exited(id: &Id) {
    let _ = ENTERED.try_with(|ops| {
        let mut ops = ops.borrow_mut();
        if ops.last().is_some_and(|(entered, _)| entered == id) {
            ops.pop();
        }
    });
}

/// The innermost acquisition being polled on this thread, if it is of `resource`.
fn entered_op(resource: &Arc<Resource>) -> Option<Arc<Op>> {
    ENTERED
        .try_with(|spans| match spans.borrow().last() {
            Some((_, Entered::Op(op))) if Arc::ptr_eq(&op.resource, resource) => Some(op.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// The key of the spawn site of the task being polled on this thread, or 0
/// outside any task.
fn current_task() -> u64 {
    ENTERED
        .try_with(|spans| {
            spans
                .borrow()
                .iter()
                .rev()
                .find_map(|(_, entered)| match entered {
                    Entered::Task(key) => Some(*key),
                    Entered::Op(_) => None,
                })
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// What a `runtime::resource` event says.
#[derive(Default)]
struct EventFields {
    is_ready: Option<bool>,
    locked: Option<bool>,
    write_locked: Option<bool>,
    readers_op: Option<bool>, // add: true, sub: false
    permits: Option<u64>,
    permits_op: Option<PermitsOp>,
    permits_requested: Option<u64>,
    permits_obtained: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PermitsOp {
    Add,
    Sub,
    Override,
}

impl Visit for EventFields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "is_ready" => self.is_ready = Some(value),
            "locked" => self.locked = Some(value),
            "write_locked" => self.write_locked = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match (field.name(), value) {
            ("current_readers.op", "add") => self.readers_op = Some(true),
            ("current_readers.op", "sub") => self.readers_op = Some(false),
            ("permits.op", "add") => self.permits_op = Some(PermitsOp::Add),
            ("permits.op", "sub") => self.permits_op = Some(PermitsOp::Sub),
            ("permits.op", "override") => self.permits_op = Some(PermitsOp::Override),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "permits" => self.permits = Some(value),
            "permits_requested" => self.permits_requested = Some(value),
            "permits_obtained" => self.permits_obtained = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

fn permits(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An event: tokio's `poll_op` and `state_update` events of the locks we
/// follow become acquisitions and releases; everything else is ignored at
/// the cost of a prefix check.
#[inline]
pub(crate) fn event<S>(event: &Event<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !event.metadata().target().starts_with("runtime::resource") {
        return;
    }
    if crate::lockdep::engine().is_none() {
        return;
    }
    resource_event(event, ctx);
}

#[inline(never)]
fn resource_event<S>(event: &Event<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.event_span(event) else {
        return;
    };
    let mut fields = EventFields::default();
    event.record(&mut fields);
    let target = event.metadata().target();
    if target == "runtime::resource::poll_op" {
        // Inside the op's poll span, child of the op span.
        let Some(ready) = fields.is_ready else { return };
        let Some(op) = span
            .parent()
            .and_then(|op| op.extensions().get::<OpExt>().map(|op| op.0.clone()))
        else {
            return;
        };
        if op.polled(ready) && op.resource.kind != Kind::Semaphore {
            let _ = JUST_ACQUIRED.try_with(|j| j.set(Arc::as_ptr(&op.resource)));
        }
        return;
    }
    let public = span.extensions().get::<ResourceExt>().map(|r| r.0.clone());
    if let Some(resource) = public {
        lock_state(&resource, &fields);
        return;
    }
    // The inner semaphore: its own span, or one of its acquisitions.
    let internal = span
        .extensions()
        .get::<InternalExt>()
        .map(|r| r.0.clone())
        .or_else(|| {
            span.parent()
                .and_then(|p| p.extensions().get::<InternalExt>().map(|r| r.0.clone()))
        });
    if let Some(resource) = internal.filter(|r| r.kind == Kind::Semaphore) {
        semaphore_state(&resource, &fields);
    }
}

/// A `state_update` of a `Mutex` or `RwLock`.
fn lock_state(resource: &Arc<Resource>, fields: &EventFields) {
    let (access, acquired) = match (fields.locked, fields.write_locked, fields.readers_op) {
        (Some(locked), ..) => (Access::Lock, locked),
        (_, Some(locked), _) => (Access::Write, locked),
        (.., Some(add)) => (Access::Read, add),
        _ => return,
    };
    if !acquired {
        resource.released(access, 1);
        return;
    }
    let just = JUST_ACQUIRED
        .try_with(|j| j.replace(std::ptr::null()))
        .unwrap_or(std::ptr::null());
    if !std::ptr::eq(just, Arc::as_ptr(resource)) {
        resource.acquired_without_waiting(access, 1);
    }
}

/// A `state_update` of a `Semaphore`'s inner semaphore.
fn semaphore_state(resource: &Arc<Resource>, fields: &EventFields) {
    let op = entered_op(resource);
    if let Some(requested) = fields.permits_requested {
        if let Some(op) = op {
            op.set_permits(permits(requested));
        }
        return;
    }
    if let Some(obtained) = fields.permits_obtained {
        // Handed to a waiter by a release (outside the waiter's own poll).
        if fields.permits_op == Some(PermitsOp::Add) && op.is_none() && obtained > 0 {
            resource.released(Access::Permits, permits(obtained));
        }
        return;
    }
    match (fields.permits, fields.permits_op) {
        (Some(n), Some(PermitsOp::Sub)) if op.is_none() => {
            resource.acquired_without_waiting(Access::Permits, permits(n));
        }
        (Some(n), Some(PermitsOp::Add)) if op.is_none() => {
            resource.released(Access::Permits, permits(n));
        }
        _ => {}
    }
}
