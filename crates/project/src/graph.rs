//! The dependency graph of a project's nodes.

use std::collections::{HashMap, VecDeque};

/// A directed acyclic graph of nodes named by unique id; edges point from parent to child.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node (no-op when present) and return its index.
    pub fn add_node(&mut self, id: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len();
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        self.parents.push(Vec::new());
        self.children.push(Vec::new());
        i
    }

    /// Add an edge `parent -> child`, adding missing nodes.
    pub fn add_edge(&mut self, parent: &str, child: &str) {
        let p = self.add_node(parent);
        let c = self.add_node(child);
        if !self.parents[c].contains(&p) {
            self.parents[c].push(p);
            self.children[p].push(c);
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All node ids, in insertion order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Whether a node is in the graph.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The direct parents of a node.
    pub fn parents(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, &self.parents)
    }

    /// The direct children of a node.
    pub fn children(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, &self.children)
    }

    fn neighbours<'a>(&'a self, id: &str, adj: &'a [Vec<usize>]) -> Vec<&'a str> {
        self.index
            .get(id)
            .map(|&i| adj[i].iter().map(|&j| self.ids[j].as_str()).collect())
            .unwrap_or_default()
    }

    /// Ancestors of a node up to `depth` generations (`None`: all), excluding itself.
    pub fn ancestors(&self, id: &str, depth: Option<usize>) -> Vec<&str> {
        self.walk(id, depth, &self.parents)
    }

    /// Descendants of a node up to `depth` generations (`None`: all), excluding itself.
    pub fn descendants(&self, id: &str, depth: Option<usize>) -> Vec<&str> {
        self.walk(id, depth, &self.children)
    }

    fn walk<'a>(&'a self, id: &str, depth: Option<usize>, adj: &'a [Vec<usize>]) -> Vec<&'a str> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.ids.len()];
        seen[start] = true;
        let mut out = Vec::new();
        let mut queue = VecDeque::from([(start, 0usize)]);
        while let Some((i, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for &j in &adj[i] {
                if !seen[j] {
                    seen[j] = true;
                    out.push(self.ids[j].as_str());
                    queue.push_back((j, d + 1));
                }
            }
        }
        out
    }

    /// A cycle, as a list of ids where each depends on the previous and the last on the first,
    /// when the graph has one.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        // Iterative DFS with colours: 0 = new, 1 = on the stack, 2 = done.
        let n = self.ids.len();
        let mut colour = vec![0u8; n];
        let mut parent_of = vec![usize::MAX; n];
        for root in 0..n {
            if colour[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            colour[root] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&child) = self.children[node].get(*next) {
                    *next += 1;
                    match colour[child] {
                        0 => {
                            colour[child] = 1;
                            parent_of[child] = node;
                            stack.push((child, 0));
                        }
                        1 => {
                            let mut cycle = vec![self.ids[node].clone()];
                            let mut cur = node;
                            while cur != child {
                                cur = parent_of[cur];
                                cycle.push(self.ids[cur].clone());
                            }
                            cycle.reverse();
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Node ids in an order where every node comes after its parents (Kahn's algorithm,
    /// ties broken by insertion order). `None` when there is a cycle.
    pub fn topological_order(&self) -> Option<Vec<&str>> {
        let n = self.ids.len();
        let mut indegree: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut ready: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut out = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            out.push(self.ids[i].as_str());
            for &c in &self.children[i] {
                indegree[c] -= 1;
                if indegree[c] == 0 {
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
}
