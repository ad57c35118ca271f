//! Class graph: insert 100 000 new edges among 10 000 classes (a random DAG
//! consistent with a hidden random topological order, in random order), then
//! 100 closing edges that go against the hidden order (most close a cycle),
//! into `async_lockdep::__private::Graph` (incremental, Pearce–Kelly) and
//! into a naive reference written here: adjacency lists and, for every new
//! edge `from -> to`, a DFS checking whether `to` already reaches `from`.
//!
//! Outside the timing, the two must give the same sequence of answers
//! (new / known / cycle), and every cycle path the incremental graph returns
//! must be a real path `to -> ... -> from` along accepted edges.
//!
//! Prints `RATIO graph/incremental = ...x faster than naive` (issue 5 target:
//! >= 10x).
//!
//! ```sh
//! cargo bench --bench graph -- --quick
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use async_lockdep::__private::{Graph, Insert, Node};
use criterion::Criterion;

mod common;
use common::Target;

const CLASSES: u32 = 10_000;
const EDGES: usize = 100_000;
const CLOSING: usize = 100;

/// rustc's Fx hash, so the naive reference's edge set costs what the
/// incremental graph's does.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxSet<T> = HashSet<T, BuildHasherDefault<Fx>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    New,
    Known,
    Cycle,
}

/// The naive reference: a DFS on every new edge.
#[derive(Default)]
struct Naive {
    out: Vec<Vec<Node>>,
    known: FxSet<(Node, Node)>,
    mark: Vec<u32>,
    epoch: u32,
    stack: Vec<Node>,
}

impl Naive {
    fn insert(&mut self, from: Node, to: Node) -> Answer {
        if !self.known.insert((from, to)) {
            return Answer::Known;
        }
        let n = from.max(to) as usize + 1;
        if self.out.len() < n {
            self.out.resize(n, Vec::new());
            self.mark.resize(n, 0);
        }
        if from == to || self.reaches(to, from) {
            return Answer::Cycle;
        }
        self.out[from as usize].push(to);
        Answer::New
    }

    fn reaches(&mut self, start: Node, target: Node) -> bool {
        self.epoch += 1;
        let epoch = self.epoch;
        self.stack.clear();
        self.stack.push(start);
        self.mark[start as usize] = epoch;
        while let Some(node) = self.stack.pop() {
            for &next in &self.out[node as usize] {
                if next == target {
                    return true;
                }
                if self.mark[next as usize] != epoch {
                    self.mark[next as usize] = epoch;
                    self.stack.push(next);
                }
            }
        }
        false
    }
}

fn answer(insert: &Insert) -> Answer {
    match insert {
        Insert::New => Answer::New,
        Insert::Known => Answer::Known,
        Insert::Cycle(_) => Answer::Cycle,
    }
}

fn run_incremental(edges: &[(Node, Node)]) -> Duration {
    let mut graph = Graph::<()>::default();
    let start = Instant::now();
    for &(from, to) in edges {
        black_box(graph.insert(from, to, || ()));
    }
    let took = start.elapsed();
    drop(graph);
    took
}

fn run_naive(edges: &[(Node, Node)]) -> Duration {
    let mut naive = Naive::default();
    let start = Instant::now();
    for &(from, to) in edges {
        black_box(naive.insert(from, to));
    }
    let took = start.elapsed();
    drop(naive);
    took
}

/// Runs both on `edges` and checks that they agree; returns the number of
/// cycles found.
fn compare(edges: &[(Node, Node)]) -> usize {
    let mut graph = Graph::<()>::default();
    let incremental: Vec<Insert> = edges
        .iter()
        .map(|&(from, to)| graph.insert(from, to, || ()))
        .collect();

    let mut naive = Naive::default();
    let reference: Vec<Answer> = edges
        .iter()
        .map(|&(from, to)| naive.insert(from, to))
        .collect();

    let accepted: FxSet<(Node, Node)> = naive
        .out
        .iter()
        .enumerate()
        .flat_map(|(from, outs)| outs.iter().map(move |&to| (from as Node, to)))
        .collect();
    let mut cycles = 0;
    for (i, ((got, want), &(from, to))) in incremental.iter().zip(&reference).zip(edges).enumerate()
    {
        assert_eq!(
            answer(got),
            *want,
            "edge #{i} {from} -> {to}: incremental {got:?}, naive {want:?}"
        );
        if let Insert::Cycle(path) = got {
            cycles += 1;
            assert_eq!(path.first(), Some(&to), "edge #{i}: path {path:?}");
            assert_eq!(path.last(), Some(&from), "edge #{i}: path {path:?}");
            for w in path.windows(2) {
                assert!(
                    accepted.contains(&(w[0], w[1])),
                    "edge #{i}: path {path:?} uses {w:?}, not an accepted edge"
                );
            }
        }
    }
    cycles
}

fn main() {
    let bench = common::bench_mode();
    // `cargo test --benches`: a smaller graph, same checks.
    let (classes, edges) = if bench {
        (CLASSES, EDGES)
    } else {
        (1_000, 10_000)
    };
    let list = common::dag_workload(classes, edges, CLOSING, 0x9E37_79B9_7F4A_7C15);

    let cycles = compare(&list);
    println!(
        "graph: {edges} edges among {classes} classes, then {CLOSING} closing edges: {cycles} cycles \
         found by both, identical answers"
    );

    let mut c: Criterion = common::criterion().sample_size(10);
    {
        let mut group = c.benchmark_group("graph");
        // A naive run takes ~0.7 s: room for its 10 samples.
        group.measurement_time(Duration::from_secs(8));
        group.bench_function("incremental", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_incremental(&list)).sum())
        });
        group.bench_function("naive_dfs", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_naive(&list)).sum())
        });
        group.finish();
    }
    c.final_summary();

    if !(common::compare_mode("graph/incremental") || common::compare_mode("graph/naive_dfs")) {
        return;
    }
    // The same runs criterion timed, interleaved.
    let rounds = if common::quick_mode() { 3 } else { 5 };
    let mut incremental = Vec::new();
    let mut naive = Vec::new();
    for _ in 0..rounds {
        incremental.push(run_incremental(&list).as_secs_f64());
        naive.push(run_naive(&list).as_secs_f64());
    }
    let (i, n) = (common::median(incremental), common::median(naive));
    let total = list.len() as f64;
    println!();
    println!(
        "TIME graph/incremental = {:.1} ms per run, {:.0} ns/edge ({rounds} rounds, median)",
        i * 1e3,
        i * 1e9 / total
    );
    println!(
        "TIME graph/naive_dfs = {:.1} ms per run, {:.0} ns/edge ({rounds} rounds, median)",
        n * 1e3,
        n * 1e9 / total
    );
    common::print_ratio(
        "graph/incremental",
        n / i,
        "faster than naive DFS",
        Target::AtLeast(10.0),
    );
    scale();
}

/// Time per new dependency once the graph is large: the last 10% of
/// `edges` new edges among `classes` classes, per edge (median of rounds).
fn per_new_edge(classes: u32, edges: usize, rounds: usize) -> f64 {
    let list = common::dag_workload(classes, edges, 0, 0x5EED ^ u64::from(classes));
    let tail = edges / 10;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut graph = Graph::<()>::default();
        for &(from, to) in &list[..edges - tail] {
            graph.insert(from, to, || ());
        }
        let start = Instant::now();
        for &(from, to) in &list[edges - tail..] {
            black_box(graph.insert(from, to, || ()));
        }
        times.push(start.elapsed().as_secs_f64() / tail as f64);
    }
    common::median(times)
}

/// Issue 13's scale target: a new dependency at 50 000 classes and 500 000
/// dependencies costs at most 2x what it costs at 5 000 / 50 000.
fn scale() {
    let rounds = if common::quick_mode() { 1 } else { 3 };
    let small = per_new_edge(5_000, 50_000, rounds);
    let large = per_new_edge(50_000, 500_000, rounds);
    println!(
        "TIME graph/new dependency = {:.0} ns at 5 000 classes / 50 000 dependencies, \
         {:.0} ns at 50 000 / 500 000",
        small * 1e9,
        large * 1e9
    );
    common::print_ratio(
        "graph/scale",
        large / small,
        "time per new dependency, 50 000 / 500 000 vs 5 000 / 50 000",
        Target::AtMost(2.0),
    );
}
