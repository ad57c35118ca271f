//! The `tracing-subscriber` layer: where in the program the engine is.
//!
//! The engine is one per process and needs no layer to check locks. The layer
//! does three things: installing it turns detection on; it keeps, per thread,
//! the stack of entered spans (`on_enter` / `on_exit`), which gives reports
//! their span context on any thread (a span carries its own subscriber, so a
//! worker thread with no default dispatcher still sees its enters and exits);
//! and the engine emits each report as an `ERROR` event through every
//! dispatcher the layer is registered in.
//!
//! The span stack also makes spans sub-contexts: a lock taken inside span
//! `S` is held by the code running inside `S` (its callees included), not by
//! a sibling future in another span of the same task; when `S` closes while
//! the guard lives, the hold passes to `S`'s parent.
//!
//! A subscriber with the layer added twice works as with one: the outermost
//! copy (the one `Dispatch::downcast_ref` finds first, as tracing-error's
//! `ErrorLayer` is found) does the work, the others are inert.

use std::any::TypeId;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tracing_core::dispatcher::Dispatch;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The `tracing-subscriber` layer of async-lockdep, made by
/// [`Detector::layer`](crate::Detector::layer).
///
/// Adding it to a subscriber turns detection on for the process. It keeps
/// the per-thread stack of entered spans that reports show, and receives
/// each report as an `ERROR` event at target `async_lockdep` with the fields
/// `message` (the rendered report), `kind`, `classes` and `sites`. It holds
/// no state of its own: every layer reports to the one engine.
pub struct DetectorLayer<S> {
    copy: LayerCopy,
    /// Another copy of the layer is outermost in this layer's subscriber:
    /// this one does nothing.
    inert: AtomicBool,
    _subscriber: PhantomData<fn(S)>,
}

/// Which copy of the layer this is, process-wide; found in a subscriber
/// through `downcast_raw`, which returns the outermost copy.
struct LayerCopy(u64);

impl<S> DetectorLayer<S> {
    pub(crate) fn new() -> DetectorLayer<S> {
        static COPIES: AtomicU64 = AtomicU64::new(0);
        crate::lockdep::emit::register_callsites();
        DetectorLayer {
            copy: LayerCopy(COPIES.fetch_add(1, Ordering::Relaxed)),
            inert: AtomicBool::new(false),
            _subscriber: PhantomData,
        }
    }

    fn inert(&self) -> bool {
        self.inert.load(Ordering::Relaxed)
    }
}

impl<S> fmt::Debug for DetectorLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectorLayer").finish_non_exhaustive()
    }
}

/// The formatted fields of a span and its label, kept in its extensions.
struct SpanLabel {
    /// Unique per span instance in the process (registry ids are reused).
    serial: u64,
    name: &'static str,
    fields: String,
    label: Arc<str>,
}

impl SpanLabel {
    fn relabel(&mut self) {
        self.label = if self.fields.is_empty() {
            Arc::from(self.name)
        } else {
            Arc::from(format!("{}{{{}}}", self.name, self.fields))
        };
    }
}

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
        let outermost = dispatch.downcast_ref::<LayerCopy>();
        if outermost.is_some_and(|copy| copy.0 != self.copy.0) {
            self.inert.store(true, Ordering::Relaxed);
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                crate::lockdep::to_stderr(
                    "async-lockdep: warning: the detector's layer was added twice to one \
                     subscriber; the second copy does nothing\n",
                );
            });
            return;
        }
        if crate::lockdep::enable() {
            crate::lockdep::ENGINE.add_dispatch(dispatch);
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        if crate::native::is_tokio_span(attrs.metadata()) {
            // tokio's own spans (locks, acquisitions, task polls) are not
            // the user's: no sub-context, not shown in reports.
            crate::native::new_span(attrs, id, &ctx);
            return;
        }
        let mut label = SpanLabel {
            serial: crate::lockdep::context::new_span_serial(),
            name: attrs.metadata().name(),
            fields: String::new(),
            label: Arc::from(""),
        };
        attrs.record(&mut FieldWriter(&mut label.fields));
        label.relabel();
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            // Labelled already: by another copy that was not told it is one.
            if extensions.get_mut::<SpanLabel>().is_none() {
                extensions.insert(label);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(label) = extensions.get_mut::<SpanLabel>() {
                values.record(&mut FieldWriter(&mut label.fields));
                label.relabel();
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let (serial, label) = match span.extensions().get::<SpanLabel>() {
            Some(label) => (label.serial, Arc::clone(&label.label)),
            None => return crate::native::entered(id, &ctx),
        };
        crate::lockdep::context::span_entered(id, serial, label);
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        crate::lockdep::context::span_exited(id);
        crate::native::exited(id);
    }

    fn on_event(&self, event: &tracing_core::Event<'_>, ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        crate::native::event(event, &ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.inert() {
            return;
        }
        let Some(engine) = crate::lockdep::engine() else {
            return;
        };
        let Some(span) = ctx.span(&id) else { return };
        let Some(serial) = span.extensions().get::<SpanLabel>().map(|l| l.serial) else {
            return;
        };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanLabel>().map(|l| l.serial))
            .unwrap_or(0);
        engine.span_closed(serial, parent);
    }

    /// Finds this layer as [`Layer`]'s default does, and its [`LayerCopy`]
    /// (which subscribers search outermost first).
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<LayerCopy>() {
            Some(&self.copy as *const LayerCopy as *const ())
        } else {
            None
        }
    }
}
