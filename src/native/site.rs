//! The line of an acquisition of a plain tokio lock: tokio gives none, so
//! it is read from a backtrace taken in the acquiring context (tokio's
//! events are emitted inside the poll of its lock future, below the user's
//! frames) — only when the acquisition's chain of held classes is new to
//! the front end, so the common path takes none.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashSet;

use crate::lockdep::{lock_ignoring_poison, Acquire, Engine};
use crate::vocab::SiteRef;

/// At most this many chains are looked up (a backtrace each, once).
const MAX_CHAINS: usize = 1 << 16;

/// The chains (see [`Engine::chain_key`]) whose line was looked up already.
static LOOKED_UP: Mutex<Option<FxHashSet<u64>>> = Mutex::new(None);

/// `want` with the line of the calling code as its site, if its chain is
/// new (the first time this class is taken with nothing held, or on top of
/// these held classes) and the line can be found; `want` as it is otherwise.
pub(super) fn with_line(engine: &Engine, mut want: Acquire) -> Acquire {
    let Some(chain) = engine.new_chain_key(&want) else {
        return want;
    };
    let seen = |looked_up: &Option<FxHashSet<u64>>| {
        looked_up
            .as_ref()
            .is_some_and(|set| set.len() >= MAX_CHAINS || set.contains(&chain))
    };
    if seen(&lock_ignoring_poison(&LOOKED_UP)) {
        return want;
    }
    // Remembered once found, not before: a racer of the same chain that
    // records the dependency first looks its line up too.
    let site = caller_line();
    lock_ignoring_poison(&LOOKED_UP)
        .get_or_insert_with(Default::default)
        .insert(chain);
    if let Some(site) = site {
        want.site = site;
    }
    want
}

/// The first frame of the calling thread's stack that is not tokio's,
/// `tracing`'s, this crate's, the standard library's or `futures`', as a
/// site; `None` (said once on stderr, with the reason) if there is none.
fn caller_line() -> Option<SiteRef> {
    let backtrace = Backtrace::force_capture();
    if backtrace.status() != BacktraceStatus::Captured {
        say_once("backtraces are not supported on this platform");
        return None;
    }
    let text = format!("{backtrace:#}");
    let cwd = std::env::current_dir().ok();
    let mut any_file = false;
    for line in text.lines() {
        let Some(place) = line.trim_start().strip_prefix("at ") else {
            continue;
        };
        let Some((file, line, column)) = split_place(place) else {
            continue;
        };
        any_file = true;
        if !is_users(file) {
            continue;
        }
        let file = cwd
            .as_deref()
            .and_then(|cwd| std::path::Path::new(file).strip_prefix(cwd).ok())
            .and_then(|relative| relative.to_str())
            .unwrap_or(file);
        return Some(SiteRef::found(file, line, column));
    }
    say_once(if any_file {
        "no frame of the acquiring stack outside tokio, tracing, futures, async-lockdep and \
         std has a line (is the calling crate built without debug info?)"
    } else {
        "the backtrace has no file names: this build has no debug info (set \
         `debug = \"line-tables-only\"` or more in the profile)"
    });
    None
}

/// `file:line:column` of a backtrace's `at` line.
fn split_place(place: &str) -> Option<(&str, u32, u32)> {
    let (rest, column) = place.rsplit_once(':')?;
    let (file, line) = rest.rsplit_once(':')?;
    Some((file, line.parse().ok()?, column.parse().ok()?))
}

/// Crates whose frames are not the user's: the lock, its instrumentation,
/// the detector, and futures' combinators (`join!`, `select!`).
const NOT_USERS: &[&str] = &[
    "tokio",
    "tracing",
    "tracing-core",
    "tracing-subscriber",
    "futures",
    "futures-util",
    "futures-core",
    "futures-executor",
    "async-lockdep",
];

/// Whether a frame's file is the user's: not the standard library's, not
/// this crate's sources, and not in a directory of a crate of
/// [`NOT_USERS`]: `name-1.2.3/` (the registry, vendored) or `name/src/` (a
/// git checkout's or a path dependency's).
fn is_users(file: &str) -> bool {
    if file.starts_with("/rustc/") || file.contains("/library/std/src/") {
        return false;
    }
    let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    if file.starts_with(ours) {
        return false;
    }
    let names: Vec<&str> = std::path::Path::new(file)
        .components()
        .map(|component| component.as_os_str().to_str().unwrap_or(""))
        .collect();
    !names.iter().enumerate().any(|(i, name)| {
        NOT_USERS.iter().any(|krate| {
            let versioned = name
                .strip_prefix(krate)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()));
            versioned || (name == krate && names.get(i + 1) == Some(&"src"))
        })
    })
}

/// Says once why the line of a plain tokio lock's acquisition is unknown.
fn say_once(why: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::lockdep::to_stderr(&format!(
            "async-lockdep: reports show `{}` where a plain tokio lock was taken: {why}.\n",
            crate::vocab::UNKNOWN_SITE_TEXT
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_split_at_the_last_two_colons() {
        assert_eq!(
            split_place("/a:b/src/x.rs:12:5"),
            Some(("/a:b/src/x.rs", 12, 5))
        );
        assert_eq!(split_place("/a/x.rs"), None);
    }

    #[test]
    fn frames_of_tokio_std_and_this_crate_are_not_the_users() {
        let registry = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert!(!is_users(&format!(
            "{registry}/tokio-1.54.1/src/sync/mutex.rs"
        )));
        assert!(!is_users(&format!(
            "{registry}/tracing-core-0.1.33/src/dispatcher.rs"
        )));
        assert!(!is_users(
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/future/mod.rs"
        ));
        assert!(!is_users(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/native/mod.rs"
        )));
        assert!(!is_users(
            "/home/u/.cargo/git/checkouts/tokio-3f2c/1a2b3c4/tokio/src/sync/rwlock.rs"
        ));
        assert!(is_users(&format!("{registry}/tokio-util-0.7.1/src/x.rs")));
        assert!(is_users("/home/u/tokio/examples/x.rs"));
        assert!(is_users(&format!("{registry}/hyper-1.0.0/src/x.rs")));
        assert!(is_users("/home/u/project/src/main.rs"));
        assert!(is_users(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/native/tests/native.rs"
        )));
    }
}
