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

/// The chains (see [`Engine::new_chain_key`]) whose line was looked up already.
static LOOKED_UP: Mutex<Option<FxHashSet<u64>>> = Mutex::new(None);

/// `want` with the line of the calling code as its site, if its chain is
/// new (the first time this class is taken with nothing held, or on top of
/// these held classes, by a task spawned at this place or by a thread) and
/// the line can be found; `want` as it is otherwise. The chain counts as
/// looked up once the returned guard is dropped: after the caller recorded
/// the acquisition, so that a racer of the same chain that records its
/// dependency first looks the line up too.
pub(super) fn with_line(engine: &Engine, mut want: Acquire) -> (Acquire, LookedUp) {
    if NO_LINES.load(Ordering::Relaxed) {
        return (want, LookedUp(None));
    }
    let Some(chain) = engine.new_chain_key(&want) else {
        return (want, LookedUp(None));
    };
    // Per spawn site of the task: the first lock of a class taken by tasks
    // spawned at different places (or by a thread) is looked up for each.
    let chain = crate::lockdep::held::mix(chain, super::current_task());
    let seen = |looked_up: &Option<FxHashSet<u64>>| {
        looked_up
            .as_ref()
            .is_some_and(|set| set.len() >= MAX_CHAINS || set.contains(&chain))
    };
    if seen(&lock_ignoring_poison(&LOOKED_UP)) {
        return (want, LookedUp(None));
    }
    if let Some(site) = caller_line() {
        want.site = site;
    }
    (want, LookedUp(Some(chain)))
}

/// A chain being looked up: remembered as looked up when dropped.
pub(super) struct LookedUp(Option<u64>);

impl Drop for LookedUp {
    fn drop(&mut self) {
        if let Some(chain) = self.0 {
            lock_ignoring_poison(&LOOKED_UP)
                .get_or_insert_with(Default::default)
                .insert(chain);
        }
    }
}

/// Set once a backtrace had no lines at all (no debug info, or no
/// backtraces on this platform): no later one will, so none is taken.
static NO_LINES: AtomicBool = AtomicBool::new(false);

/// The first frame of the calling thread's stack that is not tokio's,
/// `tracing`'s, this crate's, the standard library's or `futures`', as a
/// site; `None` (said once on stderr, with the reason) if there is none.
fn caller_line() -> Option<SiteRef> {
    let backtrace = Backtrace::force_capture();
    if backtrace.status() != BacktraceStatus::Captured {
        NO_LINES.store(true, Ordering::Relaxed);
        say_once("backtraces are not supported on this platform");
        return None;
    }
    let cwd = std::env::current_dir().ok();
    match first_users_line(&format!("{backtrace:#}")) {
        Found::Line(file, line, column) => {
            let file = cwd
                .as_deref()
                .and_then(|cwd| std::path::Path::new(file).strip_prefix(cwd).ok())
                .and_then(|relative| relative.to_str())
                .unwrap_or(file);
            Some(SiteRef::found(file, line, column))
        }
        Found::NoUsersLine => {
            say_once(
                "no frame of the acquiring stack outside tokio, tracing, futures, async-lockdep \
                 and std has a line (is the calling crate built without debug info?)",
            );
            None
        }
        Found::NoLines => {
            NO_LINES.store(true, Ordering::Relaxed);
            say_once(
                "the backtrace has no file names: this build has no debug info (set \
                 `debug = \"line-tables-only\"` or more in the profile)",
            );
            None
        }
    }
}

/// What a backtrace says of its caller.
#[derive(Debug, PartialEq, Eq)]
enum Found<'a> {
    /// The first frame of the user's, innermost first.
    Line(&'a str, u32, u32),
    /// Frames with lines, none of them the user's.
    NoUsersLine,
    /// No frame with a line (no debug info).
    NoLines,
}

/// The first frame of the user's in a backtrace formatted with `{:#}`,
/// above the bottom of its thread.
fn first_users_line(text: &str) -> Found<'_> {
    let mut any_file = false;
    for line in text.lines() {
        let Some(place) = line.trim_start().strip_prefix("at ") else {
            if line.contains("__rust_begin_short_backtrace") {
                // The bottom of a Rust thread (std's marker): below are the
                // thread's start and the C library's, never the caller.
                break;
            }
            continue;
        };
        let Some((file, line, column)) = split_place(place) else {
            continue;
        };
        any_file = true;
        if is_users(file) {
            return Found::Line(file, line, column);
        }
    }
    if any_file {
        Found::NoUsersLine
    } else {
        Found::NoLines
    }
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
    !in_crates(file, NOT_USERS)
}

/// Whether `file` is in a directory of one of `crates`: `name-1.2.3/` (the
/// registry, vendored) or `name/src/` (a git checkout's, a path
/// dependency's).
pub(super) fn in_crates(file: &str, crates: &[&str]) -> bool {
    let names: Vec<&str> = std::path::Path::new(file)
        .components()
        .map(|component| component.as_os_str().to_str().unwrap_or(""))
        .collect();
    names.iter().enumerate().any(|(i, name)| {
        crates.iter().any(|krate| {
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

    const TOKIO: &str = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1";

    #[test]
    fn the_first_users_frame_above_the_threads_bottom_is_the_line() {
        let text = format!(
            "   0: std::backtrace::Backtrace::force_capture
             at /rustc/5980/library/std/src/backtrace.rs:312:13
   1: <tokio::sync::mutex::Mutex<T>>::lock::{{{{closure}}}}
             at {TOKIO}/src/sync/mutex.rs:600:10
   2: app::transfer::{{{{closure}}}}
             at /home/u/app/src/transfer.rs:40:25
   3: std::sys::backtrace::__rust_begin_short_backtrace
             at /rustc/5980/library/std/src/sys/backtrace.rs:152:18
   4: __libc_start_call_main
             at ./csu/../sysdeps/nptl/libc_start_call_main.h:58:16"
        );
        assert_eq!(
            first_users_line(&text),
            Found::Line("/home/u/app/src/transfer.rs", 40, 25)
        );
    }

    #[test]
    fn no_lines_or_only_others_lines_say_so() {
        // A build without debug info: names, no lines; the C library's
        // frames below the thread's bottom are not the caller.
        let stripped = "   0: std::backtrace::Backtrace::force_capture
   1: app::transfer::{{closure}}
   2: std::sys::backtrace::__rust_begin_short_backtrace
   3: __libc_start_call_main
             at ./csu/../sysdeps/nptl/libc_start_call_main.h:58:16";
        assert_eq!(first_users_line(stripped), Found::NoLines);
        let others = format!(
            "   0: tokio::sync::mutex::Mutex<T>::lock
             at {TOKIO}/src/sync/mutex.rs:600:10
   1: app::transfer::{{{{closure}}}}"
        );
        assert_eq!(first_users_line(&others), Found::NoUsersLine);
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
