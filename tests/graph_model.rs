//! Model-based tests of the class graph (`async_lockdep::__private::Graph`,
//! Pearce–Kelly): random insert sequences, generated with `proptest`, checked
//! against a naive reference graph kept here (adjacency lists and a DFS on
//! every new edge). The graph must give the same New / Known / Cycle answers,
//! every cycle path must be a real path `to, ..., from` along accepted edges,
//! a rejected edge must be Cycle once and Known afterwards, payloads must be
//! the first-seen ones, the accepted edges must never form a cycle, and the
//! graph's own order must stay topological.
//!
//! A failing sequence is shrunk by proptest to a minimal one (fewer edges,
//! smaller node counts and ids), printed with the failure and saved under
//! `tests/graph_model.proptest-regressions` to be replayed first next time.
//! `PROPTEST_CASES=N` does not apply (each property sets its own count);
//! edit the counts below for a longer run.

use std::collections::{HashMap, HashSet};

use async_lockdep::__private::{Graph, Insert};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

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
}

type Check<T = ()> = Result<T, TestCaseError>;

impl Checked {
    fn new() -> Checked {
        Checked {
            graph: Graph::default(),
            naive: Naive::default(),
            accepted: HashSet::new(),
            first_seen: HashMap::new(),
            inserts: 0,
            cycles: 0,
        }
    }

    /// Feeds every edge, then checks the whole graph.
    fn run(edges: &[(u32, u32)], ids: &[u32]) -> Check<Checked> {
        let mut checked = Checked::new();
        for &(a, b) in edges {
            checked.insert(a, b)?;
        }
        checked.check_all(ids)?;
        Ok(checked)
    }

    fn insert(&mut self, from: u32, to: u32) -> Check<Answer> {
        let step = self.inserts;
        self.inserts += 1;
        let was_known = self.naive.known(from, to);
        let expected = self.naive.insert(from, to);
        let mut payload_calls = 0;
        let got = self.graph.insert(from, to, || {
            payload_calls += 1;
            step
        });
        let answer = match &got {
            Insert::New => Answer::New,
            Insert::Known => Answer::Known,
            Insert::Cycle(_) => Answer::Cycle,
        };
        prop_assert_eq!(
            answer,
            expected,
            "insert #{} {}->{}: graph said {:?}",
            step,
            from,
            to,
            got
        );
        prop_assert_eq!(
            payload_calls,
            usize::from(!was_known),
            "insert #{} {}->{}: payload must be built exactly once, for a new edge",
            step,
            from,
            to
        );
        match got {
            Insert::New => {
                self.accepted.insert((from, to));
                self.first_seen.insert((from, to), step);
            }
            Insert::Known => {}
            Insert::Cycle(path) => {
                self.cycles += 1;
                self.first_seen.insert((from, to), step);
                self.check_path(from, to, &path, step)?;
            }
        }
        prop_assert_eq!(
            self.graph.edge(from, to),
            self.first_seen.get(&(from, to)),
            "insert #{} {}->{}: payload must be the first-seen one",
            step,
            from,
            to
        );
        prop_assert_eq!(
            self.graph.edge_count(),
            self.naive.edge_count(),
            "insert #{}: edge count",
            step
        );
        prop_assert_eq!(
            self.graph.node_count(),
            self.naive.nodes.len(),
            "insert #{}: node count (nodes with an accepted edge)",
            step
        );
        prop_assert!(
            self.graph.order_is_topological(),
            "insert #{} {}->{}: the graph's order is no longer topological",
            step,
            from,
            to
        );
        Ok(answer)
    }

    fn check_path(&self, from: u32, to: u32, path: &[u32], step: u32) -> Check {
        prop_assert_eq!(
            path.first(),
            Some(&to),
            "insert #{} {}->{}: path {:?} must start at `to`",
            step,
            from,
            to,
            path
        );
        prop_assert_eq!(
            path.last(),
            Some(&from),
            "insert #{} {}->{}: path {:?} must end at `from`",
            step,
            from,
            to,
            path
        );
        if from == to {
            prop_assert_eq!(path, &[from][..], "self loop path");
        }
        let distinct: HashSet<_> = path.iter().collect();
        prop_assert_eq!(
            distinct.len(),
            path.len(),
            "insert #{} {}->{}: path {:?} repeats a node",
            step,
            from,
            to,
            path
        );
        for pair in path.windows(2) {
            prop_assert!(
                self.accepted.contains(&(pair[0], pair[1])),
                "insert #{} {}->{}: path {:?} uses {}->{} which is not an accepted edge",
                step,
                from,
                to,
                path,
                pair[0],
                pair[1]
            );
        }
        Ok(())
    }

    /// Whole-graph checks, at the end of a sequence (they cost O(nodes^2)).
    fn check_all(&mut self, ids: &[u32]) -> Check {
        prop_assert!(
            is_acyclic(&self.accepted),
            "the accepted edges form a cycle"
        );
        prop_assert_eq!(&self.accepted, &self.naive.accepted, "accepted edges");
        for &a in ids {
            prop_assert_eq!(
                self.graph.has_node(a),
                self.naive.nodes.contains(&a),
                "has_node({})",
                a
            );
            for &b in ids {
                prop_assert_eq!(
                    self.graph.edge(a, b).is_some(),
                    self.naive.known(a, b),
                    "edge({}, {})",
                    a,
                    b
                );
            }
        }
        // Every rejected edge stays rejected: Known, payload unchanged.
        let mut rejected: Vec<_> = self.naive.rejected.iter().copied().collect();
        rejected.sort_unstable();
        for (a, b) in rejected {
            prop_assert_eq!(self.insert(a, b)?, Answer::Known, "re-insert {}->{}", a, b);
        }
        Ok(())
    }
}

/// A generated case: the node ids and the edge sequence over them.
type Sequence = (Vec<u32>, Vec<(u32, u32)>);

/// A generated chain case: the hidden order, forward and backward edges.
type Chain = (Vec<u32>, Vec<(u32, u32)>, Vec<(u32, u32)>);

/// The node ids of a sequence of `n` nodes: dense `0..n`, spread out, or
/// sparse and shuffled (class ids are dense in the crate, but the graph must
/// not depend on that). Shrinks towards dense ids.
fn ids(n: u32) -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        Just((0..n).collect::<Vec<u32>>()),
        Just((0..n).map(|i| 1000 + i * 37).collect::<Vec<u32>>()),
        vec(0..3u32, n as usize)
            .prop_map(|offsets| {
                offsets
                    .iter()
                    .enumerate()
                    .map(|(i, off)| i as u32 * 3 + off)
                    .collect::<Vec<u32>>()
            })
            .prop_shuffle(),
    ]
}

/// Uniform random pairs among `2..=max_nodes` nodes, self loops included,
/// up to `n * n` inserts: the node ids and the edge sequence.
fn uniform(max_nodes: u32) -> impl Strategy<Value = Sequence> {
    (2..=max_nodes).prop_flat_map(|n| {
        let len = (n * n) as usize;
        (ids(n), vec((0..n, 0..n), 0..=len)).prop_map(|(ids, pairs)| {
            let edges = pairs
                .into_iter()
                .map(|(a, b)| (ids[a as usize], ids[b as usize]))
                .collect();
            (ids, edges)
        })
    })
}

/// Mostly agreeing with a hidden random order, against it one time in 20:
/// long paths, few but long cycles.
fn mostly_ordered(max_nodes: u32) -> impl Strategy<Value = Sequence> {
    (2..=max_nodes).prop_flat_map(|n| {
        let len = 3 * n as usize;
        (
            ids(n).prop_shuffle(),
            vec((0..n, 0..n, prop::bool::weighted(0.05)), 0..=len),
        )
            .prop_map(|(order, pairs)| {
                let edges = pairs
                    .into_iter()
                    .map(|(a, b, against)| {
                        let (a, b) = if a > b && !against { (b, a) } else { (a, b) };
                        (order[a as usize], order[b as usize])
                    })
                    .collect();
                (order, edges)
            })
    })
}

/// A hidden order, forward skip edges along it and backward edges against
/// it: `(order, forward, backward)`.
fn reverse_chain(max_nodes: u32) -> impl Strategy<Value = Chain> {
    (2..=max_nodes).prop_flat_map(|n| {
        let len = 2 * n as usize;
        (
            ids(n).prop_shuffle(),
            vec((0..n, 0..n), 0..=len),
            vec((0..n, 0..n), 0..=len),
        )
            .prop_map(|(order, forward, backward)| {
                let span = |(a, b): (u32, u32)| (a.min(b) as usize, a.max(b) as usize);
                let forward = forward
                    .into_iter()
                    .map(span)
                    .map(|(lo, hi)| (order[lo], order[hi]))
                    .collect();
                let backward = backward
                    .into_iter()
                    .map(span)
                    .map(|(lo, hi)| (order[hi], order[lo]))
                    .collect();
                (order, forward, backward)
            })
    })
}

/// Every ordered pair of `2..=max_nodes` nodes, self loops included, in
/// random order: the densest possible sequence.
fn all_pairs(max_nodes: u32) -> impl Strategy<Value = Sequence> {
    (2..=max_nodes).prop_flat_map(|n| {
        ids(n).prop_flat_map(|ids| {
            let pairs: Vec<(u32, u32)> = ids
                .iter()
                .flat_map(|&a| ids.iter().map(move |&b| (a, b)))
                .collect();
            (Just(ids), Just(pairs).prop_shuffle())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn uniform_sequences_agree_with_the_naive_reference((ids, edges) in uniform(24)) {
        Checked::run(&edges, &ids)?;
    }

    #[test]
    fn mostly_ordered_sequences_agree_with_the_naive_reference(
        (ids, edges) in mostly_ordered(64),
    ) {
        Checked::run(&edges, &ids)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Edges along a hidden order inserted in reverse, so the graph's own
    /// order has to be rebuilt again and again; then skip edges forward (all
    /// New), then edges backward (each a cycle unless already known).
    #[test]
    fn reverse_chains_are_accepted_and_every_backward_edge_closes_a_cycle(
        (order, forward, backward) in reverse_chain(64),
    ) {
        let mut checked = Checked::new();
        for i in (0..order.len() - 1).rev() {
            prop_assert_eq!(
                checked.insert(order[i], order[i + 1])?,
                Answer::New,
                "chain edge {}",
                i
            );
        }
        for &(a, b) in &forward {
            let answer = checked.insert(a, b)?;
            prop_assert!(answer != Answer::Cycle || a == b, "forward {}->{}", a, b);
        }
        for &(a, b) in &backward {
            let answer = checked.insert(a, b)?;
            prop_assert!(answer != Answer::New, "backward {}->{} accepted", a, b);
        }
        checked.check_all(&order)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_pair_in_random_order((ids, pairs) in all_pairs(40)) {
        let n = ids.len() as u32;
        let mut checked = Checked::new();
        for &(a, b) in &pairs {
            prop_assert_ne!(checked.insert(a, b)?, Answer::Known, "{}->{}", a, b);
        }
        checked.check_all(&ids)?;
        // Every pair was tried once: n*(n-1)/2 accepted (a tournament plus
        // nothing else can be acyclic), the rest rejected.
        prop_assert_eq!(checked.accepted.len() as u32, n * (n - 1) / 2);
        prop_assert_eq!(checked.graph.edge_count() as u32, n * n);
        prop_assert_eq!(checked.cycles as u32, n * n - n * (n - 1) / 2);
    }
}

#[test]
fn a_long_reverse_chain_closes_a_cycle_through_all_of_it() {
    let mut checked = Checked::new();
    for i in (0..63u32).rev() {
        assert_eq!(checked.insert(i, i + 1).unwrap(), Answer::New);
    }
    match checked.graph.insert(63, 0, || 0) {
        Insert::Cycle(path) => assert_eq!(path, (0..64).collect::<Vec<u32>>()),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn reports_a_cycle_once_and_keeps_finding_others() {
    let mut g = Graph::<u8>::default();
    assert_eq!(g.insert(0, 1, || 1), Insert::New);
    assert_eq!(g.insert(1, 0, || 2), Insert::Cycle(vec![0, 1]));
    assert_eq!(g.insert(1, 0, || 3), Insert::Known);
    assert_eq!(g.edge(1, 0), Some(&2));
    assert_eq!(g.insert(1, 2, || 4), Insert::New);
    assert_eq!(g.insert(2, 3, || 5), Insert::New);
    assert_eq!(g.insert(3, 1, || 6), Insert::Cycle(vec![1, 2, 3]));
    assert_eq!(g.insert(2, 2, || 7), Insert::Cycle(vec![2]));
    assert_eq!(g.edge_count(), 6);
    assert!(g.order_is_topological());
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
