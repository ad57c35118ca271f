//! The cross-process check: at the end of a test, the dependencies it
//! learned are joined with what the other processes of the run wrote, and a
//! cycle through them is reported; and [`RunStore`], the run's store read
//! back for export.

use super::*;

/// Where an edge of the cross-process graph comes from.
enum Source {
    /// Another process's record (an index into the records read).
    StoredDependency(usize),
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

fn record_dependency(record: &StoredDependency) -> Dependency {
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
        concurrent_futures: false,
        suspended_holder: None,
    }
}

impl Engine {
    /// At the end of test `key`: looks for cycles through the test's own
    /// dependencies in everything the other processes of the run wrote so
    /// far, and reports each new one (attributed to the calling test).
    pub(crate) fn check_store(&self, key: TestKey) {
        let Some(store) = store() else { return };
        let own = self.test_dependencies(key);
        if own.is_empty() {
            return;
        }
        let Loaded { records, cycles } = store.load_others();
        if records.is_empty() {
            return;
        }
        // Cycles another process already reported: one cycle fails one test
        // in a run.
        let reported_elsewhere: FxHashSet<Vec<String>> = cycles.into_iter().collect();
        let local = self.all_dependencies();
        let info: FxHashMap<(ClassId, ClassId), DependencyInfo> = local
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
            graph.insert(&record.from, &record.to, Source::StoredDependency(i));
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
            if !sources
                .iter()
                .any(|s| matches!(s, Source::StoredDependency(_)))
            {
                continue; // a cycle of this process: reported when it closed
            }
            // The test that wrote the cycle's newest dependency reports it:
            // it checks after writing it, so it sees every older one. Two
            // tests running at once then do not both fail. A dependency
            // written outside any test is never checked by its process.
            let newer_elsewhere = sources.iter().any(|s| match s {
                Source::StoredDependency(i) => {
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
                    Source::StoredDependency(i) => {
                        dependencies.push(record_dependency(&records[*i]))
                    }
                    Source::Local(a, b) => {
                        if let Some(e) = info.get(&(*a, *b)) {
                            dependencies.push(e.dependency(*a, *b));
                        }
                    }
                }
            }
            let signature = cycle_signature(&dependencies);
            if reported_elsewhere.contains(&signature) {
                continue;
            }
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
    records: Vec<StoredDependency>,
}

impl RunStore {
    /// Reads every process's file in the run directory `dir`. A foreign or
    /// non-regular file, and a damaged line, is skipped with a warning on
    /// stderr.
    ///
    /// # Errors
    ///
    /// If `dir` is not a readable directory.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<RunStore> {
        let dir = dir.as_ref();
        fs::read_dir(dir)?;
        Ok(RunStore {
            records: load_dir(dir, None).records,
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
            if let Insert::Cycle(path) =
                graph.insert(&record.from, &record.to, Source::StoredDependency(i))
            {
                let mut dependencies = vec![record_dependency(record)];
                for source in graph.path_sources(&path) {
                    if let Source::StoredDependency(j) = source {
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
        let cycle_edges = crate::report::cycle_pairs(&reports);
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
        crate::report::render_dot(&edges)
    }
}
