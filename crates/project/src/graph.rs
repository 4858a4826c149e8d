//! The dependency graph of a project's nodes, stored in a petgraph graph. The order of
//! [`Graph::topological_order`] is ours (Kahn's algorithm with ties broken by file order):
//! run numbering, which node starts first and `--fail-fast` depend on it.

use std::collections::{HashMap, VecDeque};

use petgraph::Direction::{Incoming, Outgoing};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Control, DfsEvent, depth_first_search};

/// A directed acyclic graph of nodes named by unique id; edges point from parent to child.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    graph: DiGraph<String, ()>,
    index: HashMap<String, NodeIndex>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node (no-op when present) and return its index.
    pub fn add_node(&mut self, id: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i.index();
        }
        let i = self.graph.add_node(id.to_string());
        self.index.insert(id.to_string(), i);
        i.index()
    }

    /// Add an edge `parent -> child`, adding missing nodes.
    pub fn add_edge(&mut self, parent: &str, child: &str) {
        let p = NodeIndex::new(self.add_node(parent));
        let c = NodeIndex::new(self.add_node(child));
        self.graph.update_edge(p, c, ());
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// All node ids, in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.graph.node_weights().map(String::as_str)
    }

    /// Whether a node is in the graph.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The direct parents of a node, in the order their edges were added.
    pub fn parents(&self, id: &str) -> Vec<&str> {
        self.index
            .get(id)
            .map(|&i| self.neighbours(i, Incoming).map(|j| self.id(j)).collect())
            .unwrap_or_default()
    }

    /// The direct children of a node, in the order their edges were added.
    pub fn children(&self, id: &str) -> Vec<&str> {
        self.index
            .get(id)
            .map(|&i| self.neighbours(i, Outgoing).map(|j| self.id(j)).collect())
            .unwrap_or_default()
    }

    fn id(&self, i: NodeIndex) -> &str {
        &self.graph[i]
    }

    /// Neighbours in the order their edges were added (petgraph lists the newest first).
    fn neighbours(
        &self,
        i: NodeIndex,
        direction: petgraph::Direction,
    ) -> impl Iterator<Item = NodeIndex> + '_ {
        let mut list: Vec<NodeIndex> = self.graph.neighbors_directed(i, direction).collect();
        list.reverse();
        list.into_iter()
    }

    /// Ancestors of a node up to `depth` generations (`None`: all), excluding itself.
    pub fn ancestors(&self, id: &str, depth: Option<usize>) -> Vec<&str> {
        self.walk(id, depth, Incoming)
    }

    /// Descendants of a node up to `depth` generations (`None`: all), excluding itself.
    pub fn descendants(&self, id: &str, depth: Option<usize>) -> Vec<&str> {
        self.walk(id, depth, Outgoing)
    }

    /// Breadth first, nearest first (selectors count generations: `2+model`).
    fn walk(&self, id: &str, depth: Option<usize>, direction: petgraph::Direction) -> Vec<&str> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.graph.node_count()];
        seen[start.index()] = true;
        let mut out = Vec::new();
        let mut queue = VecDeque::from([(start, 0usize)]);
        while let Some((i, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for j in self.neighbours(i, direction) {
                if !seen[j.index()] {
                    seen[j.index()] = true;
                    out.push(self.id(j));
                    queue.push_back((j, d + 1));
                }
            }
        }
        out
    }

    /// A cycle, as a list of ids where each depends on the previous and the last on the first,
    /// when the graph has one.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        let mut reached_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let back_edge =
            depth_first_search(
                &self.graph,
                self.graph.node_indices(),
                |event| match event {
                    DfsEvent::TreeEdge(parent, child) => {
                        reached_from.insert(child, parent);
                        Control::Continue
                    }
                    DfsEvent::BackEdge(from, to) => Control::Break((from, to)),
                    _ => Control::Continue,
                },
            );
        let (from, to) = back_edge.break_value()?;
        // `to` is an ancestor of `from` on the search path: walk back from `from` to it.
        let mut cycle = vec![self.id(from).to_string()];
        let mut cur = from;
        while cur != to {
            cur = *reached_from.get(&cur)?;
            cycle.push(self.id(cur).to_string());
        }
        cycle.reverse();
        Some(cycle)
    }

    /// Node ids in an order where every node comes after its parents (Kahn's algorithm,
    /// ties broken by insertion order). `None` when there is a cycle.
    pub fn topological_order(&self) -> Option<Vec<&str>> {
        let n = self.graph.node_count();
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|i| self.graph.neighbors_directed(i, Incoming).count())
            .collect();
        let mut ready: VecDeque<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|i| indegree[i.index()] == 0)
            .collect();
        let mut out = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            out.push(self.id(i));
            for c in self.neighbours(i, Outgoing) {
                indegree[c.index()] -= 1;
                if indegree[c.index()] == 0 {
                    ready.push_back(c);
                }
            }
        }
        (out.len() == n).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Graph {
        let mut g = Graph::new();
        g.add_edge("a", "b");
        g.add_edge("b", "c");
        g.add_edge("a", "d");
        g
    }

    #[test]
    fn walks_and_orders() {
        let g = chain();
        assert_eq!(
            g.topological_order().expect("acyclic"),
            vec!["a", "b", "d", "c"]
        );
        assert_eq!(g.descendants("a", Some(1)), vec!["b", "d"]);
        assert_eq!(g.descendants("a", None), vec!["b", "d", "c"]);
        assert_eq!(g.ancestors("c", None), vec!["b", "a"]);
        assert!(g.find_cycle().is_none());
    }

    #[test]
    fn finds_the_cycle() {
        let mut g = chain();
        g.add_edge("c", "a");
        let cycle = g.find_cycle().expect("cycle");
        assert_eq!(cycle, vec!["a", "b", "c"]);
        assert!(g.topological_order().is_none());
    }

    #[test]
    fn keeps_the_order_edges_were_added() {
        let mut g = Graph::new();
        for child in ["z", "y", "x"] {
            g.add_edge("root", child);
        }
        g.add_edge("root", "y");
        assert_eq!(g.children("root"), vec!["z", "y", "x"]);
        assert_eq!(g.parents("y"), vec!["root"]);
        assert_eq!(
            g.topological_order().expect("acyclic"),
            vec!["root", "z", "y", "x"]
        );
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let mut g = chain();
        g.add_edge("d", "d");
        assert_eq!(g.find_cycle().expect("cycle"), vec!["d"]);
    }
}
