//! Emitting the engine's `ERROR` events to the dispatchers that have the
//! layer, without making them the thread's default.
//!
//! `tracing::error!` goes to the current thread's default, which a worker
//! thread may not have, and `dispatcher::with_default` panics when called
//! from inside another layer's callback (tracing-core keeps the default
//! borrowed while it dispatches). So events are built here against static
//! callsites and handed straight to each `Dispatch`.

use std::cell::Cell;

use tracing_core::callsite::DefaultCallsite;
use tracing_core::field::Value;
use tracing_core::{Dispatch, Event, Kind, Level, Metadata};

use crate::report::ReportKind;

static REPORT_CALLSITE: DefaultCallsite = DefaultCallsite::new(&REPORT_META);
static REPORT_META: Metadata<'static> = tracing_core::metadata! {
    name: "async_lockdep report",
    target: "async_lockdep",
    level: Level::ERROR,
    fields: &["message", "kind", "classes", "sites", "report"],
    callsite: &REPORT_CALLSITE,
    kind: Kind::EVENT,
};

static MESSAGE_CALLSITE: DefaultCallsite = DefaultCallsite::new(&MESSAGE_META);
static MESSAGE_META: Metadata<'static> = tracing_core::metadata! {
    name: "async_lockdep",
    target: "async_lockdep",
    level: Level::ERROR,
    fields: &["message"],
    callsite: &MESSAGE_CALLSITE,
    kind: Kind::EVENT,
};

/// Registers the callsites (done when a layer is made, not inside a callback).
pub(crate) fn register_callsites() {
    let _ = REPORT_CALLSITE.interest();
    let _ = MESSAGE_CALLSITE.interest();
}

thread_local! {
    /// Set while this thread delivers one of our events to the layers.
    static EMITTING: Cell<bool> = const { Cell::new(false) };
}

/// A report as an event: a one-line message, structured fields, and the
/// rendered text as the field `report`.
pub(crate) struct ReportEvent<'a> {
    /// The kind and the classes, one line ([`crate::Report::headline`]).
    pub(crate) message: &'a str,
    /// The whole report, as printed.
    pub(crate) text: &'a str,
    pub(crate) kind: ReportKind,
    /// The classes of the cycle, `a -> b -> ...`.
    pub(crate) classes: &'a str,
    /// Each dependency's sites, `held_at -> waited_at`, comma-separated.
    pub(crate) sites: &'a str,
}

/// Runs `f` unless this thread is already delivering one of our events (a
/// layer that locks in `on_event`): tracing drops nested events, and so do
/// we, so nothing recurses through the layers. The report is still kept.
fn guarded(f: impl FnOnce()) {
    if EMITTING.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = EMITTING.try_with(|e| e.set(false));
        }
    }
    let _ = EMITTING.try_with(|e| e.set(true));
    let _reset = Reset;
    f();
}

/// Emits a report as an `ERROR` event at target `async_lockdep` with the
/// fields `message` (one line), `kind`, `classes`, `sites` and `report` (the
/// whole text).
pub(crate) fn report(dispatch: &Dispatch, event: &ReportEvent<'_>) {
    if REPORT_CALLSITE.interest().is_never() || !dispatch.enabled(&REPORT_META) {
        return;
    }
    guarded(|| {
        let fields = REPORT_META.fields();
        let (Some(message), Some(kind), Some(classes), Some(sites), Some(report)) = (
            fields.field("message"),
            fields.field("kind"),
            fields.field("classes"),
            fields.field("sites"),
            fields.field("report"),
        ) else {
            return;
        };
        let kind_name = format!("{:?}", event.kind);
        let values = [
            (&message, Some(&event.message as &dyn Value)),
            (&kind, Some(&kind_name.as_str() as &dyn Value)),
            (&classes, Some(&event.classes as &dyn Value)),
            (&sites, Some(&event.sites as &dyn Value)),
            (&report, Some(&event.text as &dyn Value)),
        ];
        dispatch.event(&Event::new(&REPORT_META, &fields.value_set(&values)));
    });
}

/// Emits `text` as an `ERROR` event at target `async_lockdep`.
pub(crate) fn message(dispatch: &Dispatch, text: &str) {
    if MESSAGE_CALLSITE.interest().is_never() || !dispatch.enabled(&MESSAGE_META) {
        return;
    }
    guarded(|| {
        let fields = MESSAGE_META.fields();
        let Some(message) = fields.field("message") else {
            return;
        };
        let values = [(&message, Some(&text as &dyn Value))];
        dispatch.event(&Event::new(&MESSAGE_META, &fields.value_set(&values)));
    });
}
