//! The run's store, shared by the processes of one test run.
//!
//! `cargo nextest run` starts a process per test, and `cargo test` one per
//! test binary, so one process sees only part of the suite. Each process
//! appends the class dependencies it learns to a file of its own in the
//! run's directory (one whole line per dependency, written with one
//! `write_all` on a file opened for appending), and reads the other
//! processes' files when a test ends, to find cycles through that test's
//! dependencies. Classes are named by a stable identity (kind, nesting
//! level, and explicit name or creation `file:line:column`), with the sites,
//! test names and spans a report needs.
//!
//! Where: `NEXTEST_RUN_ID` names the run (under the target directory,
//! `target/<profile>/async-lockdep/<run id>/`); `ASYNC_LOCKDEP_DIR=<dir>` opts
//! in for `cargo test` (the run is then named after the `cargo` process that
//! started the test binaries) and moves the store. A new run has a new
//! directory, so an earlier run never produces a report in a later one.
//! `ASYNC_LOCKDEP_STORE=0` turns the store off.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use rustc_hash::{FxHashMap, FxHashSet};

use super::attribution::current_test;
use super::class::{ClassKind, LockClass};
use super::validate::DependencyInfo;
use super::{describe, lock_ignoring_poison, Engine, Panic, TestKey};
use crate::graph::{Graph, Insert, Node};
use crate::report::{Dependency, Report, ReportKind};
use crate::vocab::{Access, ClassId, ContextId, Site};

mod check;
mod format;

pub use check::RunStore;
pub(crate) use format::{identity, StoredDependency};

/// The first line of every store file.
pub(crate) const HEADER: &str = "async-lockdep-store 1";

/// Whether this process may use a store (see `Detector::use_shared_store`).
static ALLOWED: AtomicBool = AtomicBool::new(true);

static STORE: OnceLock<Option<Store>> = OnceLock::new();

/// Lets this process use the run's store, or not (before its first use).
pub(crate) fn allow(yes: bool) {
    ALLOWED.store(yes, Ordering::Relaxed);
}

/// The run's store, if one is configured for this process.
pub(crate) fn store() -> Option<&'static Store> {
    if !ALLOWED.load(Ordering::Relaxed) {
        return None;
    }
    STORE
        .get_or_init(|| {
            run_dir().map(|dir| Store {
                dir,
                pid: std::process::id(),
                file: Mutex::new(None),
                failed: AtomicBool::new(false),
            })
        })
        .as_ref()
}

fn env_set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The directory of this run's store, if one is configured.
fn run_dir() -> Option<PathBuf> {
    if super::switch::env_flag("ASYNC_LOCKDEP_STORE", "the store is used if configured")
        == Some(false)
    {
        return None;
    }
    let run = env_set("NEXTEST_RUN_ID");
    let base = match env_set("ASYNC_LOCKDEP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            run.as_ref()?;
            target_dir()?.join("async-lockdep")
        }
    };
    let run = run.unwrap_or_else(parent_run_id);
    let run: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(base.join(run))
}

/// `target/<profile>`: test binaries live in its `deps` directory.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().map(Path::to_path_buf);
    }
    Some(dir.to_path_buf())
}

/// Under `cargo test`, the test binaries of one run are children of one
/// `cargo` process: its id and start time name the run.
fn parent_run_id() -> String {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let started = fs::read_to_string(format!("/proc/{parent}/stat"))
            .ok()
            .and_then(|stat| {
                // Field 22 (start time) counts after the command in parentheses.
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(19).map(str::to_string)
            })
            .unwrap_or_default();
        format!("cargo-{parent}-{started}")
    }
    #[cfg(not(unix))]
    {
        format!("process-{}", std::process::id())
    }
}

/// The time now, in nanoseconds since the Unix epoch (0 if the clock is
/// before it): orders dependencies written by different processes.
pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A run's store: a directory with one file per process.
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
    pid: u32,
    /// This process's file, opened at the first write.
    file: Mutex<Option<File>>,
    /// Set after a write failed (announced once; nothing more is written).
    failed: AtomicBool,
}

impl Store {
    /// Appends `records` to this process's file, as whole lines.
    pub(crate) fn append(&self, records: &[StoredDependency]) {
        if records.is_empty() || self.failed.load(Ordering::Relaxed) {
            return;
        }
        let text: String = records.iter().map(StoredDependency::to_line).collect();
        let mut file = lock_ignoring_poison(&self.file);
        let result = (|| -> std::io::Result<()> {
            if file.is_none() {
                fs::create_dir_all(&self.dir)?;
                let path = self.dir.join(format!("{}.deps", self.pid));
                let mut new = OpenOptions::new().create(true).append(true).open(path)?;
                if new.metadata()?.len() == 0 {
                    new.write_all(format!("{HEADER} {}\n", self.pid).as_bytes())?;
                }
                *file = Some(new);
            }
            match file.as_mut() {
                Some(f) => f.write_all(text.as_bytes()),
                None => Ok(()),
            }
        })();
        drop(file);
        if let Err(error) = result {
            if !self.failed.swap(true, Ordering::Relaxed) {
                super::publish::to_stderr(&format!(
                    "async-lockdep: cannot write the run's store in {}: {error}; \
                     dependencies of this process are not shared with other test processes\n",
                    self.dir.display()
                ));
            }
        }
    }

    /// Every record other processes wrote so far.
    pub(crate) fn load_others(&self) -> Vec<StoredDependency> {
        load_dir(&self.dir, Some(self.pid))
    }
}

/// Every record in the store directory `dir`, except the files of process
/// `skip`. A damaged or foreign file is skipped with one warning (per file
/// and process); a last line still being written is ignored.
pub(crate) fn load_dir(dir: &Path, skip: Option<u32>) -> Vec<StoredDependency> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut records = Vec::new();
    for path in paths {
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".deps"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            warn_once(&path, "not a store file");
            continue;
        };
        if Some(pid) == skip {
            continue;
        }
        match read_file(&path, pid) {
            Ok(mut read) => records.append(&mut read),
            Err(reason) => warn_once(&path, reason),
        }
    }
    records
}

fn read_file(path: &Path, pid: u32) -> Result<Vec<StoredDependency>, &'static str> {
    let bytes = fs::read(path).map_err(|_| "cannot read it")?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.starts_with(HEADER) && first.ends_with('\n') => {}
        _ => return Err("no async-lockdep store header"),
    }
    let mut records = Vec::new();
    for line in lines {
        let Some(line) = line.strip_suffix('\n') else {
            break; // still being written
        };
        records.push(StoredDependency::from_line(line, pid).ok_or("a damaged line")?);
    }
    Ok(records)
}

fn warn_once(path: &Path, reason: &str) {
    static WARNED: Mutex<Option<FxHashSet<PathBuf>>> = Mutex::new(None);
    let first = lock_ignoring_poison(&WARNED)
        .get_or_insert_with(FxHashSet::default)
        .insert(path.to_path_buf());
    if first {
        super::publish::to_stderr(&format!(
            "async-lockdep: warning: skipping {} in the run's store: {reason}\n",
            path.display()
        ));
    }
}

impl Engine {
    /// New class dependencies were added to the graph: they belong to the
    /// current test (for its cross-process check), and go to the run's store.
    pub(crate) fn learned(&self, new: Vec<(ClassId, ClassId, DependencyInfo)>) {
        let written = now_nanos();
        {
            let mut tests = lock_ignoring_poison(&self.tests);
            if let Some(key) = current_test(&mut tests) {
                if let Some(record) = tests.get_mut(key) {
                    for (from, to, _) in &new {
                        if record.own.len() < super::attribution::MAX_OWN_DEPENDENCIES {
                            record.own.push((*from, *to, written));
                        }
                    }
                }
            }
        }
        if let Some(store) = store() {
            let pid = std::process::id();
            let records: Vec<StoredDependency> = new
                .iter()
                .map(|(from, to, info)| {
                    let dependency = info.dependency(*from, *to);
                    StoredDependency {
                        from: dependency.held,
                        to: dependency.waited,
                        held_as: dependency.held_as,
                        held_at: dependency.held_at,
                        waited_as: dependency.waited_as,
                        waited_at: dependency.waited_at,
                        pid,
                        test: dependency.test,
                        spans: dependency.spans,
                        written,
                    }
                })
                .collect();
            store.append(&records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_line_with_odd_text() {
        let class = |name: &str| LockClass {
            name: name.to_string().into(),
            created_at: Site::new("src/a b.rs", 3, 9),
            kind: ClassKind::RwLock,
            subclass: 2,
            type_name: None,
        };
        let record = StoredDependency {
            from: class("tab\there"),
            to: class("new\nline \\ slash"),
            held_as: Access::Read,
            held_at: Site::new("C:\\x\\y.rs", 10, 4),
            waited_as: Access::Join,
            waited_at: Site::new("src/b.rs", 1, 1),
            pid: 7,
            test: Some("mod::test".into()),
            spans: vec!["a{x=1}".into(), "b\u{1f}c".into()],
            written: 1_700_000_000_123_456_789,
        };
        let line = record.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        let back = StoredDependency::from_line(line.trim_end_matches('\n'), 7).unwrap();
        assert_eq!(back.to_line(), line);
        assert_eq!(back.from.name, "tab\there");
        assert_eq!(back.held_at, Site::new("C:\\x\\y.rs", 10, 4));
        assert_eq!(back.spans, ["a{x=1}", "b\u{1f}c"]);
        assert_eq!(
            StoredDependency::from_line("D\tgarbage", 7).map(|r| r.pid),
            None
        );
    }
}
