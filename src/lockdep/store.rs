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

use super::class::{ClassKind, LockClass};
use super::validate::EdgeInfo;
use super::{describe, lock_ignoring_poison, Panic, State, TestKey};
use crate::graph::{Graph, Insert, Node};
use crate::report::{Dependency, Report, ReportKind};
use crate::vocab::{Access, ClassId, ContextId, Site};

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
    if matches!(
        env_set("ASYNC_LOCKDEP_STORE").as_deref().map(str::trim),
        Some("0" | "false" | "off" | "no")
    ) {
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

/// One dependency as the store keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) from: LockClass,
    pub(crate) to: LockClass,
    pub(crate) held_as: Access,
    pub(crate) held_at: Site,
    pub(crate) waited_as: Access,
    pub(crate) waited_at: Site,
    pub(crate) pid: u32,
    pub(crate) test: Option<String>,
    pub(crate) spans: Vec<String>,
    /// When it was written: nanoseconds since the Unix epoch (0: unknown).
    pub(crate) written: u64,
}

/// The time now, in nanoseconds since the Unix epoch (0 if the clock is
/// before it): orders dependencies written by different processes.
pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The stable identity of a class across processes.
pub(crate) fn identity(class: &LockClass) -> String {
    format!(
        "{}|{}|{}",
        kind_code(class.kind),
        class.subclass,
        class.name
    )
}

fn kind_code(kind: ClassKind) -> u8 {
    match kind {
        ClassKind::Mutex => 1,
        ClassKind::RwLock => 2,
        ClassKind::Semaphore => 3,
        ClassKind::WorkQueue => 4,
        ClassKind::Task => 5,
        ClassKind::Channel => 6,
        ClassKind::StdMutex => 7,
        ClassKind::StdRwLock => 8,
        ClassKind::ParkingLotMutex => 9,
        ClassKind::ParkingLotRwLock => 10,
    }
}

fn kind_of_code(code: &str) -> Option<ClassKind> {
    Some(match code {
        "1" => ClassKind::Mutex,
        "2" => ClassKind::RwLock,
        "3" => ClassKind::Semaphore,
        "4" => ClassKind::WorkQueue,
        "5" => ClassKind::Task,
        "6" => ClassKind::Channel,
        "7" => ClassKind::StdMutex,
        "8" => ClassKind::StdRwLock,
        "9" => ClassKind::ParkingLotMutex,
        "10" => ClassKind::ParkingLotRwLock,
        _ => return None,
    })
}

fn access_of_code(code: &str) -> Option<Access> {
    Some(match code.parse::<u8>().ok()? {
        1 => Access::Lock,
        2 => Access::Read,
        3 => Access::Write,
        4 => Access::Permits,
        5 => Access::RunWork,
        6 => Access::RunTask,
        7 => Access::Flush,
        8 => Access::Destroy,
        9 => Access::Join,
        10 => Access::Send,
        11 => Access::Receive,
        12 => Access::Await,
        _ => return None,
    })
}

/// Escapes tabs, newlines, backslashes and the span separator.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1f}' => out.push_str("\\u"),
            c => out.push(c),
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'u' => '\u{1f}',
            _ => return None,
        });
    }
    Some(out)
}

fn parse_site(text: &str) -> Option<Site> {
    let mut parts = text.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    Some(Site::new(file.to_string(), line, column))
}

impl Record {
    /// The record as one line (with its `\n`).
    pub(crate) fn to_line(&self) -> String {
        let mut line = String::from("D");
        for class in [&self.from, &self.to] {
            line.push('\t');
            line.push_str(&kind_code(class.kind).to_string());
            line.push('\t');
            line.push_str(&class.subclass.to_string());
            line.push('\t');
            escape(&class.name, &mut line);
            line.push('\t');
            escape(&class.created_at.to_string(), &mut line);
        }
        for (access, site) in [
            (self.held_as, &self.held_at),
            (self.waited_as, &self.waited_at),
        ] {
            line.push('\t');
            line.push_str(&(access as u8).to_string());
            line.push('\t');
            escape(&site.to_string(), &mut line);
        }
        line.push('\t');
        escape(self.test.as_deref().unwrap_or(""), &mut line);
        line.push('\t');
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                line.push('\u{1f}');
            }
            escape(span, &mut line);
        }
        line.push('\t');
        line.push_str(&self.written.to_string());
        line.push('\n');
        line
    }

    /// A record from one line (without its `\n`), written by process `pid`.
    pub(crate) fn from_line(line: &str, pid: u32) -> Option<Record> {
        let fields: Vec<&str> = line.split('\t').collect();
        // 16 fields; 15 in files written before the write time was added.
        if !(fields.len() == 15 || fields.len() == 16) || fields[0] != "D" {
            return None;
        }
        let written = match fields.get(15) {
            Some(field) => field.parse().ok()?,
            None => 0,
        };
        let class = |at: usize| -> Option<LockClass> {
            Some(LockClass {
                kind: kind_of_code(fields[at])?,
                subclass: fields[at + 1].parse().ok()?,
                name: unescape(fields[at + 2])?.into(),
                created_at: parse_site(&unescape(fields[at + 3])?)?,
                type_name: None,
            })
        };
        let test = unescape(fields[13])?;
        let spans = if fields[14].is_empty() {
            Vec::new()
        } else {
            fields[14]
                .split('\u{1f}')
                .map(unescape)
                .collect::<Option<Vec<_>>>()?
        };
        Some(Record {
            from: class(1)?,
            to: class(5)?,
            held_as: access_of_code(fields[9])?,
            held_at: parse_site(&unescape(fields[10])?)?,
            waited_as: access_of_code(fields[11])?,
            waited_at: parse_site(&unescape(fields[12])?)?,
            pid,
            test: (!test.is_empty()).then_some(test),
            spans,
            written,
        })
    }
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
    pub(crate) fn append(&self, records: &[Record]) {
        if records.is_empty() || self.failed.load(Ordering::Relaxed) {
            return;
        }
        let text: String = records.iter().map(Record::to_line).collect();
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
                eprintln!(
                    "async-lockdep: cannot write the run's store in {}: {error}; \
                     dependencies of this process are not shared with other test processes",
                    self.dir.display()
                );
            }
        }
    }

    /// Every record other processes wrote so far.
    pub(crate) fn load_others(&self) -> Vec<Record> {
        load_dir(&self.dir, Some(self.pid))
    }
}

/// Every record in the store directory `dir`, except the files of process
/// `skip`. A damaged or foreign file is skipped with one warning (per file
/// and process); a last line still being written is ignored.
pub(crate) fn load_dir(dir: &Path, skip: Option<u32>) -> Vec<Record> {
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

fn read_file(path: &Path, pid: u32) -> Result<Vec<Record>, &'static str> {
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
        records.push(Record::from_line(line, pid).ok_or("a damaged line")?);
    }
    Ok(records)
}

fn warn_once(path: &Path, reason: &str) {
    static WARNED: Mutex<Option<FxHashSet<PathBuf>>> = Mutex::new(None);
    let first = lock_ignoring_poison(&WARNED)
        .get_or_insert_with(FxHashSet::default)
        .insert(path.to_path_buf());
    if first {
        eprintln!(
            "async-lockdep: warning: skipping {} in the run's store: {reason}",
            path.display()
        );
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
        let record = Record {
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
        let back = Record::from_line(line.trim_end_matches('\n'), 7).unwrap();
        assert_eq!(back.to_line(), line);
        assert_eq!(back.from.name, "tab\there");
        assert_eq!(back.held_at, Site::new("C:\\x\\y.rs", 10, 4));
        assert_eq!(back.spans, ["a{x=1}", "b\u{1f}c"]);
        assert_eq!(Record::from_line("D\tgarbage", 7).map(|r| r.pid), None);
    }
}

/// Where an edge of the cross-process graph comes from.
enum Source {
    /// Another process's record (an index into the records read).
    Record(usize),
    /// This process's graph.
    Local(ClassId, ClassId),
}

/// A graph over stable class identities.
#[derive(Default)]
struct IdentityGraph {
    ids: FxHashMap<String, Node>,
    names: Vec<String>,
    graph: Graph<Source>,
}

impl IdentityGraph {
    fn node(&mut self, class: &LockClass) -> Node {
        let identity = identity(class);
        if let Some(node) = self.ids.get(&identity) {
            return *node;
        }
        let node = self.names.len() as Node;
        self.names.push(class.to_string());
        self.ids.insert(identity, node);
        node
    }

    fn insert(&mut self, from: &LockClass, to: &LockClass, source: Source) -> Insert {
        let (a, b) = (self.node(from), self.node(to));
        self.graph.insert(a, b, || source)
    }

    /// The sources of the edges along `path` (`to, ..., from`).
    fn path_sources(&self, path: &[Node]) -> Vec<&Source> {
        path.windows(2)
            .filter_map(|pair| self.graph.edge(pair[0], pair[1]))
            .collect()
    }
}

fn record_dependency(record: &Record) -> Dependency {
    Dependency {
        held: record.from.clone(),
        held_as: record.held_as,
        held_at: record.held_at.clone(),
        waited: record.to.clone(),
        waited_as: record.waited_as,
        waited_at: record.waited_at.clone(),
        context: ContextId::Process(record.pid),
        spans: record.spans.clone(),
        test: record.test.clone(),
    }
}

fn cycle_of(dependencies: Vec<Dependency>) -> Report {
    let n = dependencies.len();
    let needs_writer = (0..n).any(|i| {
        dependencies[i].waited_as == Access::Read
            && dependencies[(i + 1) % n].held_as == Access::Read
    });
    Report {
        kind: ReportKind::CircularDependency,
        dependencies,
        needs_writer,
        long_wait: None,
        pending_wait: false,
        reader_cap: None,
    }
}

impl State {
    /// At the end of test `key`: looks for cycles through the test's own
    /// dependencies in everything the other processes of the run wrote so
    /// far, and reports each new one (attributed to the calling test).
    pub(crate) fn check_store(&self, key: TestKey) {
        let Some(store) = store() else { return };
        let own = self.test_dependencies(key);
        if own.is_empty() {
            return;
        }
        let records = store.load_others();
        if records.is_empty() {
            return;
        }
        let local = self.all_dependencies();
        let info: FxHashMap<(ClassId, ClassId), EdgeInfo> = local
            .iter()
            .map(|(from, to, info, _)| ((*from, *to), info.clone()))
            .collect();
        let own_set: FxHashSet<(ClassId, ClassId)> =
            own.iter().map(|(from, to, _)| (*from, *to)).collect();
        let pid = std::process::id();
        // Another process's copy of one of the test's own dependencies is
        // left out: the test's own edge then closes the cycle below, so the
        // test that wrote the newest dependency always finds it.
        let own_identities: FxHashSet<(String, String)> = own
            .iter()
            .map(|(from, to, _)| (identity(&describe(*from)), identity(&describe(*to))))
            .collect();
        let mut graph = IdentityGraph::default();
        for (i, record) in records.iter().enumerate() {
            if own_identities.contains(&(identity(&record.from), identity(&record.to))) {
                continue;
            }
            graph.insert(&record.from, &record.to, Source::Record(i));
        }
        for (from, to, _, in_order) in &local {
            if *in_order && !own_set.contains(&(*from, *to)) {
                graph.insert(&describe(*from), &describe(*to), Source::Local(*from, *to));
            }
        }
        let mut reports = Vec::new();
        for (from, to, written) in own {
            let Some(closing) = info.get(&(from, to)) else {
                continue;
            };
            let path = match graph.insert(&describe(from), &describe(to), Source::Local(from, to)) {
                Insert::Cycle(path) => path,
                Insert::New | Insert::Known => continue,
            };
            let sources = graph.path_sources(&path);
            if !sources.iter().any(|s| matches!(s, Source::Record(_))) {
                continue; // a cycle of this process: reported when it closed
            }
            // The test that wrote the cycle's newest dependency reports it:
            // it checks after writing it, so it sees every older one. Two
            // tests running at once then do not both fail. A dependency
            // written outside any test is never checked by its process.
            let newer_elsewhere = sources.iter().any(|s| match s {
                Source::Record(i) => {
                    let r = &records[*i];
                    r.test.is_some() && (r.written, r.pid) > (written, pid)
                }
                Source::Local(..) => false,
            });
            if newer_elsewhere {
                continue;
            }
            let mut dependencies = vec![closing.dependency(from, to)];
            for source in sources {
                match source {
                    Source::Record(i) => dependencies.push(record_dependency(&records[*i])),
                    Source::Local(a, b) => {
                        if let Some(e) = info.get(&(*a, *b)) {
                            dependencies.push(e.dependency(*a, *b));
                        }
                    }
                }
            }
            let mut signature: Vec<String> =
                dependencies.iter().map(|d| identity(&d.held)).collect();
            signature.sort();
            if lock_ignoring_poison(&self.store_cycles).insert(signature) {
                reports.push(cycle_of(dependencies));
            }
        }
        for report in reports {
            self.publish(report, Panic::Never, || {});
        }
    }
}

/// The dependencies the processes of one test run shared through its store,
/// read back from the store's directory: every cycle among them, and the
/// graph in DOT.
///
/// A run's store is `target/<profile>/async-lockdep/<NEXTEST_RUN_ID>/` under
/// `cargo nextest run`, or a directory of `ASYNC_LOCKDEP_DIR`; see the
/// README, "Across tests and processes".
///
/// # Examples
///
/// ```no_run
/// let store = async_lockdep::RunStore::open("target/debug/async-lockdep/some-run-id")?;
/// for cycle in store.cycles() {
///     println!("{cycle}");
/// }
/// println!("{}", store.to_dot());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RunStore {
    records: Vec<Record>,
}

impl RunStore {
    /// Reads every process's file in the run directory `dir`. A damaged or
    /// foreign file is skipped with a warning on stderr.
    ///
    /// # Errors
    ///
    /// If `dir` is not a readable directory.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<RunStore> {
        let dir = dir.as_ref();
        fs::read_dir(dir)?;
        Ok(RunStore {
            records: load_dir(dir, None),
        })
    }

    /// The run directory this process writes to, if a store is configured
    /// (`NEXTEST_RUN_ID` or `ASYNC_LOCKDEP_DIR`).
    pub fn this_run() -> Option<PathBuf> {
        store().map(|s| s.dir.clone())
    }

    /// How many dependencies the store holds.
    pub fn dependency_count(&self) -> usize {
        self.records.len()
    }

    /// Every cycle among the stored dependencies, each once, as lockdep
    /// reports (contexts are the processes that recorded them).
    pub fn cycles(&self) -> Vec<Report> {
        self.graph().1
    }

    fn graph(&self) -> (IdentityGraph, Vec<Report>) {
        let mut graph = IdentityGraph::default();
        let mut reports = Vec::new();
        for (i, record) in self.records.iter().enumerate() {
            if let Insert::Cycle(path) = graph.insert(&record.from, &record.to, Source::Record(i)) {
                let mut dependencies = vec![record_dependency(record)];
                for source in graph.path_sources(&path) {
                    if let Source::Record(j) = source {
                        dependencies.push(record_dependency(&self.records[*j]));
                    }
                }
                reports.push(cycle_of(dependencies));
            }
        }
        (graph, reports)
    }

    /// The stored dependency graph in Graphviz DOT, cycle edges in red.
    pub fn to_dot(&self) -> String {
        let (graph, reports) = self.graph();
        let cycle_edges = cycle_pairs(&reports);
        let edges: Vec<_> = graph
            .graph
            .edges()
            .into_iter()
            .map(|(from, to, _, _)| {
                let (a, b) = (&graph.names[from as usize], &graph.names[to as usize]);
                (
                    a.clone(),
                    b.clone(),
                    cycle_edges.contains(&(a.clone(), b.clone())),
                )
            })
            .collect();
        render_dot(&edges)
    }
}

/// The `(held, waited)` class labels of every dependency of `reports`.
pub(crate) fn cycle_pairs(reports: &[Report]) -> FxHashSet<(String, String)> {
    reports
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                ReportKind::CircularDependency | ReportKind::RecursiveLocking
            )
        })
        .flat_map(|r| &r.dependencies)
        .map(|d| (d.held.to_string(), d.waited.to_string()))
        .collect()
}

/// A DOT digraph of `(from, to, in a cycle)` edges between class labels.
pub(crate) fn render_dot(edges: &[(String, String, bool)]) -> String {
    let quote = |label: &str| {
        label
            .trim_matches('`')
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    let mut dot = String::from("digraph async_lockdep {\n");
    for (from, to, in_cycle) in edges {
        dot.push_str(&format!("    \"{}\" -> \"{}\"", quote(from), quote(to)));
        if *in_cycle {
            dot.push_str(" [color=red]");
        }
        dot.push_str(";\n");
    }
    dot.push_str("}\n");
    dot
}
