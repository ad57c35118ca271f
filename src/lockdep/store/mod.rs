//! The run's store, shared by the processes of one test run.
//!
//! `cargo nextest run` starts a process per test, and `cargo test` one per
//! test binary, so one process sees only part of the suite. Each process
//! appends the class dependencies it learns to a file of its own in the
//! run's directory (`<pid>-<start>.deps`) (one whole line per dependency, written with one
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
            run_dir().map(|dir| {
                let pid = std::process::id();
                Store {
                    dir,
                    pid,
                    // The start of this process's use of the store tells its
                    // file from one an earlier process with the same id left.
                    name: format!("{pid}-{:x}.deps", now_nanos()),
                    file: Mutex::new(None),
                    failed: AtomicBool::new(false),
                }
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
    /// This process's file name in `dir`: `<pid>-<start in hex>.deps`.
    name: String,
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
        self.append_text(&text);
    }

    /// Appends whole lines to this process's file (created with its header
    /// at the first write); a failure is reported once and ends the writes.
    fn append_text(&self, text: &str) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut file = lock_ignoring_poison(&self.file);
        let result = (|| -> std::io::Result<()> {
            if file.is_none() {
                fs::create_dir_all(&self.dir)?;
                let path = self.dir.join(&self.name);
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
                super::to_stderr(&format!(
                    "async-lockdep: cannot write the run's store in {}: {error}; \
                     dependencies of this process are not shared with other test processes\n",
                    self.dir.display()
                ));
            }
        }
    }

    /// Every record other processes wrote so far (an earlier process with
    /// this process's id included: only this process's own file is left).
    pub(crate) fn load_others(&self) -> Loaded {
        load_dir(&self.dir, Some(&self.name))
    }

    /// Records that this process reported the cycle `signature` (the sorted
    /// identities of its classes): no other process reports it again.
    pub(crate) fn append_cycle(&self, signature: &[String]) {
        self.append_text(&format::cycle_line(signature));
    }
}

/// The process id in a store file's name: `<pid>.deps` (written before
/// names carried the start) or `<pid>-<start in hex>.deps`.
fn pid_of_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".deps")?;
    let pid = match stem.split_once('-') {
        Some((pid, start)) => {
            if start.is_empty() || !start.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            pid
        }
        None => stem,
    };
    pid.parse().ok()
}

/// Every record in the store directory `dir`, except the file named
/// `skip`. Only regular files are opened (a FIFO or a directory is skipped
/// without blocking); a foreign file is skipped, and a damaged line of a
/// store file, each with one warning (per file and process); a last line
/// still being written is ignored.
/// A cycle's signature: the sorted identities of its classes (the same
/// cycle found by two processes, from either end, has one signature).
pub(crate) fn cycle_signature(dependencies: &[Dependency]) -> Vec<String> {
    let mut signature: Vec<String> = dependencies.iter().map(|d| identity(&d.held)).collect();
    signature.sort();
    signature.dedup();
    signature
}

/// What a store directory holds: the dependencies, and the cycles already
/// reported (by the sorted identities of their classes).
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) records: Vec<StoredDependency>,
    pub(crate) cycles: Vec<Vec<String>>,
}

pub(crate) fn load_dir(dir: &Path, skip: Option<&str>) -> Loaded {
    let Ok(entries) = fs::read_dir(dir) else {
        return Loaded::default();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut loaded = Loaded::default();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str());
        if name.is_some() && name == skip {
            continue;
        }
        let skipping =
            |reason: &str| format!("skipping {} in the run's store: {reason}", path.display());
        let Some(pid) = name.and_then(pid_of_file_name) else {
            warn_once(&path, || skipping("not a store file"));
            continue;
        };
        match read_file(&path, pid) {
            Ok(read) => {
                loaded.records.extend(read.records);
                loaded.cycles.extend(read.cycles);
                if read.damaged > 0 {
                    warn_once(&path, || {
                        format!(
                            "skipping {} damaged line(s) of {} in the run's store (its other \
                             lines are read)",
                            read.damaged,
                            path.display()
                        )
                    });
                }
            }
            Err(reason) => warn_once(&path, || skipping(reason)),
        }
    }
    loaded
}

/// The records of the store file at `path`, if it is a regular file (the
/// type is checked before opening, so that a FIFO never blocks, and again
/// on the file opened).
fn read_file(path: &Path, pid: u32) -> Result<format::Parsed, &'static str> {
    let regular = |metadata: std::io::Result<fs::Metadata>| metadata.is_ok_and(|m| m.is_file());
    if !regular(fs::metadata(path)) {
        return Err("not a regular file");
    }
    let file = File::open(path).map_err(|_| "cannot read it")?;
    if !regular(file.metadata()) {
        return Err("not a regular file");
    }
    format::read_records(std::io::BufReader::new(file), pid)
}

fn warn_once(path: &Path, message: impl FnOnce() -> String) {
    static WARNED: Mutex<Option<FxHashSet<PathBuf>>> = Mutex::new(None);
    let first = lock_ignoring_poison(&WARNED)
        .get_or_insert_with(FxHashSet::default)
        .insert(path.to_path_buf());
    if first {
        super::to_stderr(&format!("async-lockdep: warning: {}\n", message()));
    }
}

impl Engine {
    /// A report about to be published: a cycle is written to the run's store
    /// as reported, so the run's other processes do not report it again.
    pub(crate) fn note_reported_in_store(&self, report: &Report) {
        if !matches!(
            report.kind,
            ReportKind::CircularDependency | ReportKind::RecursiveLocking
        ) {
            return;
        }
        if let Some(store) = store() {
            store.append_cycle(&cycle_signature(&report.dependencies));
        }
    }

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
    use std::io::Read as _;

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

    /// A store file: the header, then `lines`.
    fn file_of(lines: &[&[u8]]) -> Vec<u8> {
        let mut bytes = format!("{HEADER} 7\n").into_bytes();
        for line in lines {
            bytes.extend_from_slice(line);
        }
        bytes
    }

    fn a_line(name: &str) -> String {
        format!("D\t1\t0\t{name}\tsrc/a.rs:1:1\t1\t0\tother\tsrc/b.rs:2:2\t1\tsrc/a.rs:3:3\t1\tsrc/b.rs:4:4\ttest\t\t5\n")
    }

    #[test]
    fn only_damaged_lines_are_skipped() {
        let (first, second) = (a_line("first"), a_line("second"));
        let long = vec![b'x'; format::MAX_LINE_BYTES + 10];
        let bytes = file_of(&[
            first.as_bytes(),
            b"D\tgarbage\n",
            b"\xff\xfe not UTF-8\n",
            &long,
            b"\n",
            second.as_bytes(),
            b"D\tstill being wri",
        ]);
        let parsed = format::read_records(&bytes[..], 7).unwrap();
        let names: Vec<_> = parsed.records.iter().map(|r| r.from.name.clone()).collect();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(parsed.damaged, 3);
        assert!(format::read_records(&b"no header\n"[..], 7).is_err());
        assert!(format::read_records(&b""[..], 7).is_err());
    }

    #[test]
    fn a_long_line_is_not_kept() {
        let mut input =
            std::io::BufReader::with_capacity(1024, std::io::repeat(b'x').take(1 << 22));
        let mut line = Vec::new();
        let kind = format::read_line(&mut input, &mut line).unwrap();
        assert_eq!(kind, Some(format::Line::Unfinished));
        assert!(
            line.capacity() <= 2 * format::MAX_LINE_BYTES,
            "{}",
            line.capacity()
        );
    }

    #[test]
    fn file_names_give_the_process() {
        assert_eq!(pid_of_file_name("12.deps"), Some(12));
        assert_eq!(pid_of_file_name("12-18f3a.deps"), Some(12));
        assert_eq!(pid_of_file_name("12-.deps"), None);
        assert_eq!(pid_of_file_name("12-zz.deps"), None);
        assert_eq!(pid_of_file_name("x.deps"), None);
        assert_eq!(pid_of_file_name("12.txt"), None);
    }

    use proptest::prelude::*;

    /// Bytes near the format: valid lines, their pieces, and noise.
    fn store_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(a_line("x").into_bytes()),
            Just(b"\t".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"D".to_vec()),
            Just(HEADER.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(vec![0x1f]),
        ];
        (any::<bool>(), proptest::collection::vec(piece, 0..48)).prop_map(|(header, pieces)| {
            let mut bytes = if header {
                format!("{HEADER} 3\n").into_bytes()
            } else {
                Vec::new()
            };
            pieces.into_iter().for_each(|p| bytes.extend(p));
            bytes
        })
    }

    proptest! {
        // `PROPTEST_CASES=<n>` runs it longer.
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes: no panic, at most one record or damaged line per
        /// line, and each record smaller than its line.
        #[test]
        fn any_bytes_parse_without_panic(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4096),
            store_bytes(),
        ]) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            if let Ok(parsed) = format::read_records(&bytes[..], 3) {
                prop_assert!(parsed.records.len() + parsed.damaged < lines.max(1));
                for record in &parsed.records {
                    prop_assert!(record.from.name.len() + record.to.name.len() <= bytes.len());
                    prop_assert!(record.spans.len() <= bytes.len());
                }
            }
            for line in bytes.split(|&b| b == b'\n') {
                if let Ok(text) = std::str::from_utf8(line) {
                    let _ = StoredDependency::from_line(text, 3);
                }
            }
        }
    }
}
