//! The class dependency graph and its incremental cycle check.
//!
//! Nodes are small dense integers (lock class ids); an edge `a -> b` means
//! "`b` was waited for while `a` was held". The graph is kept acyclic: an edge
//! that would close a cycle is answered with the cycle's path and remembered
//! as *rejected*, so it is reported once and never enters the order.
//!
//! The cycle check is Pearce and Kelly's dynamic topological sort ("A Dynamic
//! Topological Sort Algorithm for Directed Acyclic Graphs", JEA 2006): every
//! node has a position in a topological order; an edge that agrees with the
//! order costs nothing, and an edge against it searches only the nodes whose
//! positions lie between its two ends (`dfs_forward`, `dfs_backward`), then
//! `reorder`s just those. Written here rather than taken from `petgraph`'s
//! `Acyclic` because we need the whole cycle path on rejection (Acyclic
//! answers with a single node), per-edge payloads, and no node bookkeeping
//! beyond `Vec`s indexed by class id.
//!
//! No tokio, no tracing: pure data structure code, tested against a naive
//! reference in `tests/graph_model.rs` (property-based, shrinking to a
//! minimal edge sequence) and timed against it in `benches/graph.rs`.

use rustc_hash::FxHashMap;

/// A node: a lock class id.
pub type Node = u32;

/// The answer to [`Graph::insert`].
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// A new edge that agrees with an acyclic order; it was added.
    New,
    /// The edge was seen before (added, or rejected and already reported).
    Known,
    /// The edge `from -> to` closes a cycle. The path is `to, ..., from`
    /// along existing edges; the edge itself was remembered as rejected.
    Cycle(Vec<Node>),
}

struct Edge<E> {
    payload: E,
    /// False for an edge that closed a cycle: it is known but not in the DAG.
    in_order: bool,
}

/// A directed acyclic graph over dense node ids with per-edge payloads.
pub struct Graph<E> {
    /// Everything about each node in one place: a search looks at a
    /// neighbour's position and mark together, so a large graph costs one
    /// cache miss per neighbour rather than one per array.
    node: Vec<NodeData>,
    edges: FxHashMap<(Node, Node), Edge<E>>,
    nodes: usize,
    // Scratch space for the searches, kept to avoid allocating per insert.
    epoch: u32,
    stack: Vec<Node>,
    forward: Vec<Node>,
    backward: Vec<Node>,
}

#[derive(Default)]
struct NodeData {
    /// Position in the topological order.
    ord: u32,
    /// The search that last visited the node (an epoch).
    mark: u32,
    /// The node a forward search reached it from.
    parent: Node,
    out: Vec<Node>,
    inc: Vec<Node>,
}

impl<E> std::fmt::Debug for Graph<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.node.len())
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl<E> Default for Graph<E> {
    fn default() -> Self {
        Graph {
            node: Vec::new(),
            edges: FxHashMap::default(),
            nodes: 0,
            epoch: 0,
            stack: Vec::new(),
            forward: Vec::new(),
            backward: Vec::new(),
        }
    }
}

impl<E> Graph<E> {
    /// Number of nodes with at least one edge in the order.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Whether `node` has at least one edge in the order.
    pub fn has_node(&self, node: Node) -> bool {
        self.node
            .get(node as usize)
            .is_some_and(|n| !(n.out.is_empty() && n.inc.is_empty()))
    }

    /// Number of edges, rejected ones included.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// The payload of a known edge (in the order or rejected).
    pub fn edge(&self, from: Node, to: Node) -> Option<&E> {
        self.edges.get(&(from, to)).map(|e| &e.payload)
    }

    /// The payload of a known edge, to refine it (a stronger kind of the same
    /// dependency seen later).
    pub fn edge_mut(&mut self, from: Node, to: Node) -> Option<&mut E> {
        self.edges.get_mut(&(from, to)).map(|e| &mut e.payload)
    }

    /// Every known edge as `(from, to, payload, in_order)`, sorted by
    /// `(from, to)`; `in_order` is false for an edge that closed a cycle.
    pub fn edges(&self) -> Vec<(Node, Node, &E, bool)> {
        let mut edges: Vec<_> = self
            .edges
            .iter()
            .map(|(&(from, to), e)| (from, to, &e.payload, e.in_order))
            .collect();
        edges.sort_by_key(|&(from, to, ..)| (from, to));
        edges
    }

    /// Inserts `from -> to`, calling `payload` only if the edge is new.
    pub fn insert(&mut self, from: Node, to: Node, payload: impl FnOnce() -> E) -> Insert {
        if self.edges.contains_key(&(from, to)) {
            return Insert::Known;
        }
        self.ensure(from.max(to));
        if from == to {
            self.reject(from, to, payload);
            return Insert::Cycle(vec![from]);
        }
        let lower = self.node[to as usize].ord;
        let upper = self.node[from as usize].ord;
        if upper < lower {
            self.add(from, to, payload);
            return Insert::New;
        }
        if let Some(path) = self.dfs_forward(to, from, upper) {
            self.reject(from, to, payload);
            return Insert::Cycle(path);
        }
        self.dfs_backward(from, lower);
        self.reorder();
        self.add(from, to, payload);
        Insert::New
    }

    /// Whether every edge in the order goes from a lower to a higher
    /// position: the invariant the cycle check relies on (for model tests).
    pub fn order_is_topological(&self) -> bool {
        self.edges
            .iter()
            .filter(|(_, e)| e.in_order)
            .all(|(&(a, b), _)| self.node[a as usize].ord < self.node[b as usize].ord)
    }

    fn ensure(&mut self, node: Node) {
        let n = node as usize + 1;
        while self.node.len() < n {
            let ord = self.node.len() as u32;
            self.node.push(NodeData {
                ord,
                ..NodeData::default()
            });
        }
    }

    fn add(&mut self, from: Node, to: Node, payload: impl FnOnce() -> E) {
        self.nodes += usize::from(!self.has_node(from)) + usize::from(!self.has_node(to));
        self.node[from as usize].out.push(to);
        self.node[to as usize].inc.push(from);
        let edge = Edge {
            payload: payload(),
            in_order: true,
        };
        self.edges.insert((from, to), edge);
    }

    fn reject(&mut self, from: Node, to: Node, payload: impl FnOnce() -> E) {
        let edge = Edge {
            payload: payload(),
            in_order: false,
        };
        self.edges.insert((from, to), edge);
    }

    fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.node.iter_mut().for_each(|n| n.mark = 0);
            self.epoch = 1;
        }
        self.epoch
    }

    /// Searches forward from `start` through nodes positioned at or below
    /// `upper`. Returns the path `start, ..., target` if `target` is reached;
    /// otherwise leaves the visited nodes in `self.forward`.
    fn dfs_forward(&mut self, start: Node, target: Node, upper: u32) -> Option<Vec<Node>> {
        let epoch = self.next_epoch();
        self.forward.clear();
        self.stack.clear();
        self.stack.push(start);
        self.node[start as usize].mark = epoch;
        while let Some(node) = self.stack.pop() {
            self.forward.push(node);
            for i in 0..self.node[node as usize].out.len() {
                let next = self.node[node as usize].out[i];
                let data = &mut self.node[next as usize];
                if data.mark == epoch {
                    continue;
                }
                data.parent = node;
                if next == target {
                    return Some(self.path(start, target));
                }
                if data.ord < upper {
                    data.mark = epoch;
                    self.stack.push(next);
                }
            }
        }
        None
    }

    fn path(&self, start: Node, target: Node) -> Vec<Node> {
        let mut path = vec![target];
        let mut node = target;
        while node != start {
            node = self.node[node as usize].parent;
            path.push(node);
        }
        path.reverse();
        path
    }

    /// Searches backward from `start` through nodes positioned above `lower`,
    /// leaving the visited nodes in `self.backward`.
    fn dfs_backward(&mut self, start: Node, lower: u32) {
        let epoch = self.next_epoch();
        self.backward.clear();
        self.stack.clear();
        self.stack.push(start);
        self.node[start as usize].mark = epoch;
        while let Some(node) = self.stack.pop() {
            self.backward.push(node);
            for i in 0..self.node[node as usize].inc.len() {
                let prev = self.node[node as usize].inc[i];
                let data = &mut self.node[prev as usize];
                if data.mark != epoch && data.ord > lower {
                    data.mark = epoch;
                    self.stack.push(prev);
                }
            }
        }
    }

    /// Gives the nodes found backward the lowest of the freed positions, then
    /// the nodes found forward the rest, each group keeping its relative order.
    fn reorder(&mut self) {
        let node = &self.node;
        self.forward.sort_unstable_by_key(|&n| node[n as usize].ord);
        self.backward
            .sort_unstable_by_key(|&n| node[n as usize].ord);
        let mut slots: Vec<u32> = self
            .backward
            .iter()
            .chain(self.forward.iter())
            .map(|&n| node[n as usize].ord)
            .collect();
        slots.sort_unstable();
        for (&n, slot) in self.backward.iter().chain(self.forward.iter()).zip(slots) {
            self.node[n as usize].ord = slot;
        }
    }
}
