//! A segment trie over the routes of one host bucket, searched with backtracking.
//!
//! Each node has literal children, at most one `{name}` child, and three terminal lists:
//! routes whose path ends here, routes that take any rest, and routes that take a non-empty
//! rest. Terminal lists are sorted by rank, and every node knows the best rank below it, so
//! the search visits only subtrees that could still beat the best candidate found so far.
//!
//! No allocation: [`Trie::search`] runs on the hot path; captures live in inline arrays and
//! the recursion depth is bounded by the deepest configured pattern, not by the request.

use ahash::AHashMap;

use super::params::Params;
use super::pattern::{Pattern, Segment, Tail};
use super::specificity::{Rank, NONE};

/// Above this many literal children a node switches from a scanned vec to a hash map.
const SMALL_CHILDREN: usize = 8;

/// Literal children of a node.
#[derive(Debug)]
enum Children {
    Small(Vec<(Box<str>, u32)>),
    Map(AHashMap<Box<str>, u32>),
}

impl Children {
    fn get(&self, segment: &str) -> Option<u32> {
        match self {
            Children::Small(v) => v.iter().find(|(s, _)| &**s == segment).map(|&(_, n)| n),
            Children::Map(m) => m.get(segment).copied(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            Children::Small(v) => Box::new(v.iter().map(|&(_, n)| n)),
            Children::Map(m) => Box::new(m.values().copied()),
        }
    }
}

#[derive(Debug)]
struct Node {
    literals: Children,
    param: Option<u32>,
    end: Vec<u32>,
    rest: Vec<u32>,
    rest_nonempty: Vec<u32>,
    /// Best rank of any route at or below this node.
    max_rank: Rank,
}

impl Node {
    fn new() -> Self {
        Node {
            literals: Children::Small(Vec::new()),
            param: None,
            end: Vec::new(),
            rest: Vec::new(),
            rest_nonempty: Vec::new(),
            max_rank: NONE,
        }
    }
}

/// The compiled routes of one host bucket.
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    pub(crate) fn new() -> Self {
        Trie {
            nodes: vec![Node::new()],
        }
    }

    /// Adds route `route` with `pattern`. Call [`Trie::finish`] once all are in.
    pub(crate) fn insert(&mut self, pattern: &Pattern, route: u32) {
        let mut at = 0;
        for segment in &pattern.segments {
            at = match segment {
                Segment::Literal(lit) => self.literal_child(at, lit),
                Segment::Param(_) => self.param_child(at),
            };
        }
        if let Some(node) = self.nodes.get_mut(at) {
            match pattern.tail {
                Tail::End => node.end.push(route),
                Tail::Rest => node.rest.push(route),
                Tail::RestNonEmpty => node.rest_nonempty.push(route),
            }
        }
    }

    fn literal_child(&mut self, at: usize, lit: &str) -> usize {
        let fresh = self.nodes.len();
        let Some(Node {
            literals: Children::Small(v),
            ..
        }) = self.nodes.get_mut(at)
        else {
            return at;
        };
        if let Some(&(_, n)) = v.iter().find(|(s, _)| &**s == lit) {
            return n as usize;
        }
        v.push((lit.into(), fresh as u32));
        self.nodes.push(Node::new());
        fresh
    }

    fn param_child(&mut self, at: usize) -> usize {
        let fresh = self.nodes.len();
        let Some(node) = self.nodes.get_mut(at) else {
            return at;
        };
        if let Some(n) = node.param {
            return n as usize;
        }
        node.param = Some(fresh as u32);
        self.nodes.push(Node::new());
        fresh
    }

    /// Sorts terminal lists by rank, computes subtree bounds and indexes wide nodes.
    pub(crate) fn finish(&mut self, ranks: &[Rank]) {
        let rank_of = |r: &u32| ranks.get(*r as usize).copied().unwrap_or(NONE);
        // Children are always pushed after their parent, so a reverse pass sees them first.
        for i in (0..self.nodes.len()).rev() {
            let mut best = NONE;
            if let Some(node) = self.nodes.get_mut(i) {
                for list in [&mut node.end, &mut node.rest, &mut node.rest_nonempty] {
                    list.sort_by_key(|r| std::cmp::Reverse(rank_of(r)));
                    best = best.max(list.first().map_or(NONE, rank_of));
                }
            }
            let Some(node) = self.nodes.get(i) else {
                continue;
            };
            let below = node.literals.iter().chain(node.param);
            let below = below
                .filter_map(|c| self.nodes.get(c as usize))
                .map(|c| c.max_rank);
            best = below.fold(best, Rank::max);
            if let Some(node) = self.nodes.get_mut(i) {
                node.max_rank = best;
                index_children(&mut node.literals);
            }
        }
    }

    /// Finds the highest-ranked route matching `path` that `accepts` lets through; fills
    /// `out` with its captures.
    pub(crate) fn search(
        &self,
        path: &str,
        ranks: &[Rank],
        accepts: &dyn Fn(u32) -> bool,
        out: &mut Params,
    ) -> Option<u32> {
        let mut s = Search {
            trie: self,
            path,
            ranks,
            accepts,
            cur: Params::default(),
            best: None,
            best_rank: NONE,
            out,
        };
        // `/` has no segments: start at the end.
        let start = if path == "/" { path.len() } else { 0 };
        s.visit(0, start);
        s.best
    }
}

fn index_children(children: &mut Children) {
    if let Children::Small(v) = children {
        if v.len() > SMALL_CHILDREN {
            *children = Children::Map(v.drain(..).collect());
        }
    }
}

/// One search: the current captures and the best candidate so far.
struct Search<'s, 'o> {
    trie: &'s Trie,
    path: &'s str,
    ranks: &'s [Rank],
    accepts: &'s dyn Fn(u32) -> bool,
    cur: Params,
    best: Option<u32>,
    best_rank: Rank,
    out: &'o mut Params,
}

impl Search<'_, '_> {
    /// Visits `node` with the path consumed up to `pos` (the `/` before the next segment, or
    /// the path's end).
    fn visit(&mut self, node: u32, pos: usize) {
        let trie = self.trie;
        let Some(n) = trie.nodes.get(node as usize) else {
            return;
        };
        if n.max_rank <= self.best_rank {
            return;
        }
        let len = self.path.len();
        let at_end = pos >= len;
        let rest_start = (pos + 1).min(len);
        if at_end {
            self.offer(&n.end, None);
        }
        self.offer(&n.rest, Some(rest_start));
        if at_end {
            return;
        }
        self.offer(&n.rest_nonempty, Some(rest_start));
        let seg_end = self
            .path
            .get(rest_start..)
            .and_then(|s| s.find('/'))
            .map_or(len, |i| rest_start + i);
        let segment = self.path.get(rest_start..seg_end).unwrap_or_default();
        if let Some(child) = n.literals.get(segment) {
            self.visit(child, seg_end);
        }
        if let (Some(child), false) = (n.param, segment.is_empty()) {
            if self.cur.push(rest_start, seg_end) {
                self.visit(child, seg_end);
                self.cur.pop();
            }
        }
    }

    /// Takes the first route of `list` (sorted by rank) that beats the best and is accepted.
    fn offer(&mut self, list: &[u32], rest_start: Option<usize>) {
        for &route in list {
            let rank = self.ranks.get(route as usize).copied().unwrap_or(NONE);
            if rank <= self.best_rank {
                return;
            }
            if (self.accepts)(route) {
                self.best = Some(route);
                self.best_rank = rank;
                self.out.copy_from(&self.cur);
                self.out.set_route(route);
                if let Some(start) = rest_start {
                    self.out.set_rest(start, self.path.len());
                }
                return;
            }
        }
    }
}
