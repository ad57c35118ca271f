//! The on/off switch: detection is off until a layer, a test guard,
//! `Detector::install_global()` or `ASYNC_LOCKDEP=1` turns it on, and then a
//! wrapper costs one relaxed load to find the engine. Also the one reader
//! of the crate's boolean environment variables ([`env_flag`]).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::LazyLock;

use super::{Engine, ENGINE};

/// Whether detection is on: not decided yet (the environment is read at the
/// first use), off, on, or forced off by `ASYNC_LOCKDEP=0`.
static MODE: AtomicU8 = AtomicU8::new(MODE_UNKNOWN);
const MODE_UNKNOWN: u8 = 0;
const MODE_OFF: u8 = 1;
const MODE_ON: u8 = 2;
const MODE_FORCED_OFF: u8 = 3;

/// Detection was turned on by `ASYNC_LOCKDEP=1` (an unmodified test suite).
static FROM_ENVIRONMENT: AtomicBool = AtomicBool::new(false);

/// Whether detection was turned on by `ASYNC_LOCKDEP=1` and reports fail
/// the test that finds them (zero-code test mode), unless
/// `ASYNC_LOCKDEP_PANIC=0` asks only to print them.
pub(crate) fn enabled_by_environment() -> bool {
    static PANICS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    FROM_ENVIRONMENT.load(Ordering::Relaxed)
        && *PANICS.get_or_init(|| {
            env_flag(
                "ASYNC_LOCKDEP_PANIC",
                "reports fail the test that finds them",
            )
            .unwrap_or(true)
        })
}

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

/// Reads `ASYNC_LOCKDEP` once: true enables detection, false forces it off.
#[cold]
#[inline(never)]
fn mode_from_env() -> Option<&'static Engine> {
    let mode = match env_flag("ASYNC_LOCKDEP", "off until a layer, a guard or `enable()`") {
        Some(true) => MODE_ON,
        Some(false) => MODE_FORCED_OFF,
        None => MODE_OFF,
    };
    let set = MODE.compare_exchange(MODE_UNKNOWN, mode, Ordering::Relaxed, Ordering::Relaxed);
    if set.is_ok() && mode == MODE_ON {
        FROM_ENVIRONMENT.store(true, Ordering::Relaxed);
    }
    if MODE.load(Ordering::Relaxed) == MODE_ON {
        Some(&ENGINE)
    } else {
        None
    }
}

/// A boolean value, as every variable of the crate reads it: `1`, `true`,
/// `on`, `yes` or `0`, `false`, `off`, `no`, in any case, around spaces.
pub(crate) fn parse_flag(value: &str) -> Option<bool> {
    let value = value.trim();
    const TRUE: [&str; 4] = ["1", "true", "on", "yes"];
    const FALSE: [&str; 4] = ["0", "false", "off", "no"];
    if TRUE.iter().any(|t| value.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| value.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// The boolean environment variable `name`: `None` when it is unset or
/// blank, or holds anything [`parse_flag`] does not read, which is said
/// once on stderr with `default` (what the caller does then).
pub(crate) fn env_flag(name: &'static str, default: &str) -> Option<bool> {
    let value = match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => return None,
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => return None,
        Err(std::env::VarError::NotUnicode(value)) => value.to_string_lossy().into_owned(),
    };
    let flag = parse_flag(&value);
    if flag.is_none() {
        static WARNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut warned = super::lock_ignoring_poison(&WARNED);
        if !warned.contains(&name) {
            warned.push(name);
            drop(warned);
            super::to_stderr(&format!(
                "async-lockdep: warning: {name}={value:?} is not a boolean (1/0, true/false, \
                 on/off, yes/no): {default}\n"
            ));
        }
    }
    flag
}

/// Turns detection on for the rest of the process, unless `ASYNC_LOCKDEP=0`
/// forces it off. Returns whether it is on.
pub(crate) fn enable() -> bool {
    if !cfg!(feature = "detect") {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            super::to_stderr(
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

#[cfg(test)]
mod tests {
    use super::parse_flag;

    #[test]
    fn flags_read_one_way() {
        for yes in [
            "1", "true", "TRUE", "True", "on", "ON", "yes", "Yes", " 1", "true\n", "\tOn ",
        ] {
            assert_eq!(parse_flag(yes), Some(true), "{yes:?}");
        }
        for no in [
            "0", "false", "FALSE", "off", "Off", "no", "NO", " 0", "0 ", "\tno\n",
        ] {
            assert_eq!(parse_flag(no), Some(false), "{no:?}");
        }
        for neither in [
            "", " ", "banana", "2", "-1", "y", "n", "t", "f", "01", "true1", "o n", "néin",
        ] {
            assert_eq!(parse_flag(neither), None, "{neither:?}");
        }
    }
}
