//! Model-based tests of the class graph: thousands of random insert sequences
//! checked against a naive reference graph (adjacency lists and a DFS on
//! every new edge). The graph must give the same New / Known / Cycle answers,
//! every cycle path must be a real path `to, ..., from` along accepted edges,
//! a rejected edge must be Cycle once and Known afterwards, payloads must be
//! the first-seen ones, and the accepted edges must never form a cycle.
//!
//! No extra crates: a small xorshift generator drives everything, and every
//! failure names the seed, so a failing sequence can be replayed.

use async_lockdep::__private::XorShift as Rng;
use std::collections::{HashMap, HashSet};

use async_lockdep::__private::{Graph, Insert};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    New,
    Known,
    Cycle,
}

/// The naive reference: accepted edges as adjacency lists, every edge ever
/// seen in a set, and a plain DFS for every new edge.
#[derive(Default)]
struct Naive {
    out: HashMap<u32, Vec<u32>>,
    accepted: HashSet<(u32, u32)>,
    rejected: HashSet<(u32, u32)>,
    /// Nodes with at least one accepted edge.
    nodes: HashSet<u32>,
}

impl Naive {
    fn known(&self, from: u32, to: u32) -> bool {
        self.accepted.contains(&(from, to)) || self.rejected.contains(&(from, to))
    }

    /// Whether `to` is reachable from `from` along accepted edges.
    fn reaches(&self, from: u32, to: u32) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if !seen.insert(n) {
                continue;
            }
            if let Some(next) = self.out.get(&n) {
                stack.extend(next.iter().copied());
            }
        }
        false
    }

    fn insert(&mut self, from: u32, to: u32) -> Answer {
        if self.known(from, to) {
            return Answer::Known;
        }
        if self.reaches(to, from) {
            self.rejected.insert((from, to));
            return Answer::Cycle;
        }
        self.accepted.insert((from, to));
        self.nodes.extend([from, to]);
        self.out.entry(from).or_default().push(to);
        Answer::New
    }

    fn edge_count(&self) -> usize {
        self.accepted.len() + self.rejected.len()
    }
}

/// Kahn's algorithm: whether `edges` (over any node ids) form a DAG.
fn is_acyclic(edges: &HashSet<(u32, u32)>) -> bool {
    let mut indegree: HashMap<u32, usize> = HashMap::new();
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(a, b) in edges {
        indegree.entry(a).or_insert(0);
        *indegree.entry(b).or_insert(0) += 1;
        out.entry(a).or_default().push(b);
    }
    let mut ready: Vec<u32> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&n, _)| n)
        .collect();
    let mut removed = 0;
    while let Some(n) = ready.pop() {
        removed += 1;
        for &m in out.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            let d = indegree.get_mut(&m).expect("node");
            *d -= 1;
            if *d == 0 {
                ready.push(m);
            }
        }
    }
    removed == indegree.len()
}

/// The graph under test and the reference, fed the same inserts.
struct Checked {
    graph: Graph<u32>,
    naive: Naive,
    /// What the graph answered New to: its DAG, seen from outside.
    accepted: HashSet<(u32, u32)>,
    /// The payload each known edge must carry: the number of the insert
    /// that first saw it.
    first_seen: HashMap<(u32, u32), u32>,
    inserts: u32,
    cycles: usize,
    longest_path: usize,
    context: String,
}

impl Checked {
    fn new(context: String) -> Checked {
        Checked {
            graph: Graph::default(),
            naive: Naive::default(),
            accepted: HashSet::new(),
            first_seen: HashMap::new(),
            inserts: 0,
            cycles: 0,
            longest_path: 0,
            context,
        }
    }

    fn insert(&mut self, from: u32, to: u32) -> Answer {
        let step = self.inserts;
        self.inserts += 1;
        let was_known = self.naive.known(from, to);
        let expected = self.naive.insert(from, to);
        let mut payload_calls = 0;
        let got = self.graph.insert(from, to, || {
            payload_calls += 1;
            step
        });
        let ctx = &self.context;
        let answer = match &got {
            Insert::New => Answer::New,
            Insert::Known => Answer::Known,
            Insert::Cycle(_) => Answer::Cycle,
        };
        assert_eq!(
            answer, expected,
            "{ctx}, insert #{step} {from}->{to}: graph said {got:?}"
        );
        assert_eq!(
            payload_calls,
            usize::from(!was_known),
            "{ctx}, insert #{step} {from}->{to}: payload must be built exactly once, for a new edge"
        );
        match got {
            Insert::New => {
                self.accepted.insert((from, to));
                self.first_seen.insert((from, to), step);
            }
            Insert::Known => {}
            Insert::Cycle(path) => {
                self.cycles += 1;
                self.longest_path = self.longest_path.max(path.len());
                self.first_seen.insert((from, to), step);
                self.check_path(from, to, &path, step);
            }
        }
        assert_eq!(
            self.graph.edge(from, to),
            self.first_seen.get(&(from, to)),
            "{ctx}, insert #{step} {from}->{to}: payload must be the first-seen one"
        );
        assert_eq!(
            self.graph.edge_count(),
            self.naive.edge_count(),
            "{ctx}, insert #{step}: edge count"
        );
        assert_eq!(
            self.graph.node_count(),
            self.naive.nodes.len(),
            "{ctx}, insert #{step}: node count (nodes with an accepted edge)"
        );
        answer
    }

    fn check_path(&self, from: u32, to: u32, path: &[u32], step: u32) {
        let ctx = &self.context;
        assert_eq!(
            path.first(),
            Some(&to),
            "{ctx}, insert #{step} {from}->{to}: path {path:?} must start at `to`"
        );
        assert_eq!(
            path.last(),
            Some(&from),
            "{ctx}, insert #{step} {from}->{to}: path {path:?} must end at `from`"
        );
        if from == to {
            assert_eq!(path, [from], "{ctx}: self loop path");
        }
        let distinct: HashSet<_> = path.iter().collect();
        assert_eq!(
            distinct.len(),
            path.len(),
            "{ctx}, insert #{step} {from}->{to}: path {path:?} repeats a node"
        );
        for pair in path.windows(2) {
            assert!(
                self.accepted.contains(&(pair[0], pair[1])),
                "{ctx}, insert #{step} {from}->{to}: path {path:?} uses {}->{} which is not an accepted edge",
                pair[0],
                pair[1]
            );
            assert!(self.graph.edge(pair[0], pair[1]).is_some());
        }
    }

    /// Whole-graph checks, done now and then (they cost O(nodes^2)).
    fn check_all(&mut self, nodes: &[u32]) {
        let ctx = self.context.clone();
        assert!(
            is_acyclic(&self.accepted),
            "{ctx}: the accepted edges form a cycle"
        );
        assert_eq!(self.accepted, self.naive.accepted, "{ctx}: accepted edges");
        for &a in nodes {
            assert_eq!(
                self.graph.has_node(a),
                self.naive.nodes.contains(&a),
                "{ctx}: has_node({a})"
            );
            for &b in nodes {
                assert_eq!(
                    self.graph.edge(a, b).is_some(),
                    self.naive.known(a, b),
                    "{ctx}: edge({a}, {b})"
                );
            }
        }
        // Every rejected edge stays rejected: Known, payload unchanged.
        let rejected: Vec<_> = self.naive.rejected.iter().copied().collect();
        for (a, b) in rejected {
            assert_eq!(
                self.insert(a, b),
                Answer::Known,
                "{ctx}: re-insert {a}->{b}"
            );
        }
    }
}

/// The node ids a sequence uses: dense `0..n`, or spread out (class ids are
/// dense in the crate, but the graph must not depend on that).
fn node_ids(rng: &mut Rng, n: u32) -> Vec<u32> {
    match rng.below(3) {
        0 => (0..n).collect(),
        1 => (0..n).map(|i| 1000 + i * 37).collect(),
        _ => {
            let mut ids: Vec<u32> = (0..n).map(|i| i * 3 + rng.below(3)).collect();
            rng.shuffle(&mut ids);
            ids
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Uniform random pairs, self loops included.
    Uniform,
    /// Mostly agreeing with a hidden random order, rarely against it: long
    /// paths, few but long cycles.
    MostlyOrdered,
    /// Edges along a hidden order inserted in reverse, so the graph's own
    /// order has to be rebuilt again and again, then random closing edges.
    ReverseChain,
    /// Every pair, in random order: the densest possible sequence.
    AllPairs,
}

fn run_sequence(seed: u64, shape: Shape, n: u32, dense: bool) -> Checked {
    let mut rng = Rng::new(seed);
    let ids = node_ids(&mut rng, n);
    let mut checked = Checked::new(format!("seed {seed}, {shape:?}, {n} nodes, dense {dense}"));
    let inserts = if dense { n * n } else { n + rng.below(2 * n) };
    match shape {
        Shape::Uniform => {
            for _ in 0..inserts {
                let (a, b) = (rng.below(n), rng.below(n));
                checked.insert(ids[a as usize], ids[b as usize]);
            }
        }
        Shape::MostlyOrdered => {
            let mut order = ids.clone();
            rng.shuffle(&mut order);
            for _ in 0..inserts {
                let (mut a, mut b) = (rng.below(n), rng.below(n));
                if a > b && !rng.chance(5) {
                    std::mem::swap(&mut a, &mut b);
                }
                checked.insert(order[a as usize], order[b as usize]);
            }
        }
        Shape::ReverseChain => {
            let mut order = ids.clone();
            rng.shuffle(&mut order);
            for i in (0..order.len() - 1).rev() {
                assert_eq!(
                    checked.insert(order[i], order[i + 1]),
                    Answer::New,
                    "{}: chain edge {i}",
                    checked.context
                );
            }
            // Skip edges forward (all New), then every backward edge is a cycle.
            for _ in 0..inserts / 2 {
                let (a, b) = (rng.below(n), rng.below(n));
                let (lo, hi) = (a.min(b) as usize, a.max(b) as usize);
                checked.insert(order[lo], order[hi]);
            }
            for _ in 0..inserts / 2 {
                let (a, b) = (rng.below(n), rng.below(n));
                let (lo, hi) = (a.min(b) as usize, a.max(b) as usize);
                let answer = checked.insert(order[hi], order[lo]);
                let fresh = answer != Answer::Known;
                if fresh {
                    assert_eq!(answer, Answer::Cycle, "{}", checked.context);
                }
            }
        }
        Shape::AllPairs => {
            let mut pairs: Vec<(u32, u32)> = ids
                .iter()
                .flat_map(|&a| ids.iter().map(move |&b| (a, b)))
                .collect();
            rng.shuffle(&mut pairs);
            for (a, b) in pairs {
                assert_ne!(checked.insert(a, b), Answer::Known, "{}", checked.context);
            }
        }
    }
    checked.check_all(&ids);
    checked
}

#[test]
fn random_sparse_and_dense_sequences_agree_with_the_naive_reference() {
    let mut sequences = 0;
    let mut inserts = 0u64;
    let mut cycles = 0;
    for seed in 1..=3000u64 {
        let mut rng = Rng::new(seed ^ 0xA5A5);
        let shape = match seed % 3 {
            0 => Shape::Uniform,
            1 => Shape::MostlyOrdered,
            _ => Shape::ReverseChain,
        };
        // Mostly small graphs (where cycles are frequent), some up to 64 nodes.
        let n = if rng.chance(75) {
            2 + rng.below(15)
        } else {
            2 + rng.below(63)
        };
        // Dense sequences (n^2 inserts) only on the smaller graphs, to keep
        // the naive reference affordable in debug builds.
        let dense = n <= 24 && rng.chance(40);
        let checked = run_sequence(seed, shape, n, dense);
        sequences += 1;
        inserts += u64::from(checked.inserts);
        cycles += checked.cycles;
    }
    assert_eq!(sequences, 3000);
    // The generator must really exercise the rejection path.
    assert!(cycles > 3000, "only {cycles} cycles in {inserts} inserts");
}

#[test]
fn every_pair_of_up_to_64_nodes_in_random_order() {
    for (seed, n) in (1..=24u64).zip((2..=64u32).step_by(3).cycle()) {
        let checked = run_sequence(seed, Shape::AllPairs, n, true);
        // Every pair was tried once: n*(n-1)/2 accepted (a tournament plus
        // nothing else can be acyclic), the rest rejected.
        assert_eq!(
            checked.accepted.len() as u32,
            n * (n - 1) / 2,
            "seed {seed}, {n} nodes"
        );
        assert_eq!(checked.graph.edge_count() as u32, n * n);
    }
}

#[test]
fn large_mostly_ordered_graphs_with_long_cycle_paths() {
    let mut longest = 0;
    for seed in 1..=30u64 {
        let checked = run_sequence(seed, Shape::MostlyOrdered, 64, false);
        longest = longest.max(checked.longest_path);
        let checked = run_sequence(seed + 1000, Shape::ReverseChain, 64, false);
        assert!(
            checked.cycles > 0,
            "seed {seed}: reverse chain closes cycles"
        );
        longest = longest.max(checked.longest_path);
    }
    // Reverse chains of 64 nodes close cycles through long paths.
    assert!(longest >= 16, "longest cycle path only {longest}");
}

#[test]
fn rejected_edge_is_a_cycle_once_then_known_and_keeps_its_payload() {
    let mut g = Graph::<u32>::default();
    assert_eq!(g.insert(0, 1, || 10), Insert::New);
    assert_eq!(g.insert(1, 2, || 11), Insert::New);
    assert_eq!(g.insert(2, 0, || 12), Insert::Cycle(vec![0, 1, 2]));
    assert_eq!(g.edge(2, 0), Some(&12));
    assert_eq!(
        g.insert(2, 0, || unreachable!("not called for a known edge")),
        Insert::Known
    );
    assert_eq!(g.edge(2, 0), Some(&12));
    assert_eq!(g.insert(5, 5, || 13), Insert::Cycle(vec![5]));
    assert_eq!(g.insert(5, 5, || 14), Insert::Known);
    assert_eq!(g.edge(5, 5), Some(&13));
    // The rejected 2 -> 0 is not in the order: 0 -> 2 is still fine.
    assert_eq!(g.insert(0, 2, || 15), Insert::New);
    assert_eq!(g.edge_count(), 5);
    assert_eq!(g.edge(1, 0), None);
    assert_eq!(g.edge(7, 9), None, "unknown nodes have no edges");
}

#[test]
fn a_cycle_path_follows_existing_edges_when_several_paths_exist() {
    // 0 -> {1, 2, 3} -> 4, and 4 -> 0 closes cycles through any of them.
    let mut g = Graph::<u32>::default();
    for mid in 1..=3 {
        assert_eq!(g.insert(0, mid, || 0), Insert::New);
        assert_eq!(g.insert(mid, 4, || 0), Insert::New);
    }
    match g.insert(4, 0, || 1) {
        Insert::Cycle(path) => {
            assert_eq!(path.len(), 3, "{path:?}");
            assert_eq!((path[0], path[2]), (0, 4), "{path:?}");
            assert!((1..=3).contains(&path[1]), "{path:?}");
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
}
