//! Emitting the detector's `ERROR` events to the dispatcher it is installed
//! in, without making that dispatcher the thread's default.
//!
//! `tracing::error!` goes to the current thread's default, which a worker
//! thread may not have, and `dispatcher::with_default` panics when called
//! from inside another layer's callback (tracing-core keeps the default
//! borrowed while it dispatches). So events are built here against one
//! static callsite and handed straight to the detector's own `Dispatch`.

use std::cell::Cell;

use tracing_core::callsite::DefaultCallsite;
use tracing_core::field::Value;
use tracing_core::{dispatcher, Dispatch, Event, Kind, Level, Metadata};

static CALLSITE: DefaultCallsite = DefaultCallsite::new(&META);
static META: Metadata<'static> = tracing_core::metadata! {
    name: "async_lockdep",
    target: "async_lockdep",
    level: Level::ERROR,
    fields: &["message"],
    callsite: &CALLSITE,
    kind: Kind::EVENT,
};

/// Registers the callsite (done when a layer is made, not inside a callback).
pub(crate) fn register_callsite() {
    let _ = CALLSITE.interest();
}

thread_local! {
    /// Set while this thread delivers one of our events to the layers.
    static EMITTING: Cell<bool> = const { Cell::new(false) };
}

/// Emits `message` as an `ERROR` event at target `async_lockdep` to
/// `dispatch`, or to the current default dispatcher if there is none.
///
/// A report found while one of our events is being delivered (a layer that
/// locks in `on_event`) is stored but not delivered, as tracing drops nested
/// events: no recursion through the layers.
pub(crate) fn error(dispatch: Option<&Dispatch>, message: &str) {
    if CALLSITE.interest().is_never() || EMITTING.try_with(Cell::get).unwrap_or(true) {
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
    match dispatch {
        Some(dispatch) => emit_to(dispatch, message),
        None => dispatcher::get_default(|current| emit_to(current, message)),
    }
}

fn emit_to(dispatch: &Dispatch, message: &str) {
    let fields = META.fields();
    let Some(field) = fields.field("message") else {
        return;
    };
    if !dispatch.enabled(&META) {
        return;
    }
    let values = [(&field, Some(&message as &dyn Value))];
    let values = fields.value_set(&values);
    dispatch.event(&Event::new(&META, &values));
}
