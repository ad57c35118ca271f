//! The on/off switch: detection is off until a layer, a test guard,
//! `Detector::install_global()` or `ASYNC_LOCKDEP=1` turns it on, and then a
//! wrapper costs one relaxed load to find the engine.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::LazyLock;

use super::{Engine, ENGINE};

/// Whether detection is on: not decided yet (the environment is read at the
/// first use), off, on, or forced off by `ASYNC_LOCKDEP=0`.
static MODE: AtomicU8 = AtomicU8::new(MODE_UNKNOWN);
const MODE_UNKNOWN: u8 = 0;
const MODE_OFF: u8 = 1;
const MODE_ON: u8 = 2;
const MODE_FORCED_OFF: u8 = 3;

/// The engine, if detection is enabled in this process: one relaxed load
/// while it is off.
#[inline]
pub(crate) fn engine() -> Option<&'static Engine> {
    if !cfg!(feature = "detect") {
        return None; // compiled out: everything behind this is dead code
    }
    match MODE.load(Ordering::Relaxed) {
        MODE_ON => Some(&ENGINE),
        MODE_UNKNOWN => mode_from_env(),
        _ => None,
    }
}

/// Reads `ASYNC_LOCKDEP` once: `1` enables detection, `0` forces it off.
#[cold]
#[inline(never)]
fn mode_from_env() -> Option<&'static Engine> {
    let mode = match std::env::var("ASYNC_LOCKDEP").as_deref().map(str::trim) {
        Ok("1" | "true" | "on" | "yes") => MODE_ON,
        Ok("0" | "false" | "off" | "no") => MODE_FORCED_OFF,
        _ => MODE_OFF,
    };
    let _ = MODE.compare_exchange(MODE_UNKNOWN, mode, Ordering::Relaxed, Ordering::Relaxed);
    if MODE.load(Ordering::Relaxed) == MODE_ON {
        Some(&ENGINE)
    } else {
        None
    }
}

/// Turns detection on for the rest of the process, unless `ASYNC_LOCKDEP=0`
/// forces it off. Returns whether it is on.
pub(crate) fn enable() -> bool {
    if !cfg!(feature = "detect") {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            super::publish::to_stderr(
                "async-lockdep: detection is compiled out (the `detect` feature is off): \
                 nothing is checked\n",
            );
        });
        return false;
    }
    let _ = engine();
    LazyLock::force(&ENGINE);
    MODE.compare_exchange(MODE_OFF, MODE_ON, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        || MODE.load(Ordering::Relaxed) == MODE_ON
}

/// Whether detection is on in this process.
pub(crate) fn enabled() -> bool {
    engine().is_some()
}
