//! The order of the selected syncs: by model lineage and by `after:`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{GraphError, close_names, did_you_mean_hint, list_names};
use crate::graph::ProjectGraph;

/// Which selected syncs wait for which. Keys are every selected spec index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOrder {
    /// For each selected spec, the selected specs that must finish before it (sorted).
    pub waits_for: BTreeMap<usize, Vec<usize>>,
}

impl SyncOrder {
    /// Stages: every spec in stage k waits only for specs in stages before k. Each stage is
    /// sorted by spec index.
    pub fn stages(&self) -> Vec<Vec<usize>> {
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut left: Vec<usize> = self.waits_for.keys().copied().collect();
        let mut stages = Vec::new();
        while !left.is_empty() {
            let (ready, blocked): (Vec<usize>, Vec<usize>) = left.iter().partition(|idx| {
                self.waits_for.get(idx).is_none_or(|waits| {
                    waits
                        .iter()
                        .all(|w| done.contains(w) || !self.waits_for.contains_key(w))
                })
            });
            if ready.is_empty() {
                // Only reachable for a hand-built order with a cycle: run the rest last.
                stages.push(blocked);
                break;
            }
            done.extend(ready.iter().copied());
            stages.push(ready);
            left = blocked;
        }
        stages
    }

    /// Every selected spec that waits for `idx`, directly or through others, sorted: what a
    /// runner skips ("upstream sync <name> failed") when `idx` fails.
    pub fn dependents_of(&self, idx: usize) -> Vec<usize> {
        let mut found: BTreeSet<usize> = BTreeSet::new();
        let mut queue = VecDeque::from([idx]);
        while let Some(current) = queue.pop_front() {
            for (&waiter, waits) in &self.waits_for {
                if waits.contains(&current) && waiter != idx && found.insert(waiter) {
                    queue.push_back(waiter);
                }
            }
        }
        found.into_iter().collect()
    }
}

/// Why one sync waits for another.
#[derive(Debug, Clone)]
enum Why {
    Lineage,
    After(String),
}

impl<'a> ProjectGraph<'a> {
    /// For each selected spec, the selected specs that must finish before it: lineage (its
    /// model depends, through any nodes, on theirs) and `after:` (sync or model names).
    pub fn order(&self, selected: &[usize]) -> Result<SyncOrder, GraphError> {
        let chosen: BTreeSet<usize> = selected
            .iter()
            .copied()
            .filter(|&i| i < self.specs.len())
            .collect();
        let mut why: BTreeMap<(usize, usize), Why> = BTreeMap::new();

        // Lineage: each distinct model's downstream nodes, computed once.
        let mut downstream: BTreeMap<&str, BTreeSet<NodeIndex>> = BTreeMap::new();
        for &i in &chosen {
            let model = self.specs[i].model_id.as_str();
            if !downstream.contains_key(model) {
                let below = match self.node(model) {
                    Some(node) => self
                        .walk(&[node], Direction::Outgoing, None)
                        .into_iter()
                        .collect(),
                    None => BTreeSet::new(),
                };
                downstream.insert(model, below);
            }
        }
        for &before in &chosen {
            let below = &downstream[self.specs[before].model_id.as_str()];
            for &after in &chosen {
                let model = &self.specs[after].model_id;
                if model != &self.specs[before].model_id
                    && self.node(model).is_some_and(|n| below.contains(&n))
                {
                    why.insert((before, after), Why::Lineage);
                }
            }
        }

        // `after:`: sync names, or model names (every sync of that model).
        for &waiter in &chosen {
            for name in &self.specs[waiter].after {
                for target in self.resolve_after(waiter, name)? {
                    let is_sibling_via_model = target == waiter && self.specs[waiter].name != *name;
                    if chosen.contains(&target) && !is_sibling_via_model {
                        why.insert((target, waiter), Why::After(name.clone()));
                    }
                }
            }
        }

        if let Some(err) = self.find_cycle(&chosen, &why) {
            return Err(err);
        }
        let mut waits_for: BTreeMap<usize, Vec<usize>> =
            chosen.iter().map(|&i| (i, Vec::new())).collect();
        for &(before, after) in why.keys() {
            if let Some(list) = waits_for.get_mut(&after) {
                list.push(before);
            }
        }
        Ok(SyncOrder { waits_for })
    }

    /// Spec indices an `after:` name stands for: the sync of that name and every sync of the
    /// model of that name. A model without syncs is valid and stands for nothing.
    fn resolve_after(&self, waiter: usize, name: &str) -> Result<Vec<usize>, GraphError> {
        let mut targets: Vec<usize> = self.sync_index(name).into_iter().collect();
        let model_ids: Vec<&str> = self
            .manifest
            .models()
            .filter(|m| m.name == name)
            .map(|m| m.unique_id.as_str())
            .chain(
                self.specs
                    .iter()
                    .filter(|s| s.model_name == name)
                    .map(|s| s.model_id.as_str()),
            )
            .collect();
        for model in &model_ids {
            targets.extend(self.syncs_of_model(model));
        }
        if targets.is_empty() && model_ids.is_empty() {
            let spec = &self.specs[waiter];
            let syncs = self.specs.iter().map(|s| s.name.as_str());
            let models = self.manifest.models().map(|m| m.name.as_str());
            let close = close_names(name, syncs.clone().chain(models), 3);
            let hint = did_you_mean_hint(&close).unwrap_or_else(|| {
                format!(
                    "`after:` takes sync or model names; syncs in this project: {}",
                    list_names(syncs, 8)
                )
            });
            return Err(GraphError::UnknownAfter {
                sync: spec.name.clone(),
                file: spec.defined_in.clone(),
                name: name.to_owned(),
                hint,
            });
        }
        targets.sort_unstable();
        targets.dedup();
        Ok(targets)
    }

    /// The shortest cycle through the lowest spec index of the first cyclic group, if any.
    fn find_cycle(
        &self,
        chosen: &BTreeSet<usize>,
        why: &BTreeMap<(usize, usize), Why>,
    ) -> Option<GraphError> {
        let mut graph: DiGraph<usize, ()> = DiGraph::new();
        let nodes: BTreeMap<usize, NodeIndex> =
            chosen.iter().map(|&i| (i, graph.add_node(i))).collect();
        for &(before, after) in why.keys() {
            if let (Some(&a), Some(&b)) = (nodes.get(&before), nodes.get(&after)) {
                graph.add_edge(a, b, ());
            }
        }
        let start = tarjan_scc(&graph)
            .into_iter()
            .filter(|group| group.len() > 1 || group.iter().any(|&n| graph.contains_edge(n, n)))
            .filter_map(|group| group.iter().map(|&n| graph[n]).min())
            .min()?;
        let path = shortest_cycle(start, why);
        let names: Vec<String> = path.iter().map(|&i| self.specs[i].name.clone()).collect();
        let links = path
            .windows(2)
            .map(|pair| {
                let (before, after) = (pair[0], pair[1]);
                let (b, a) = (&self.specs[before], &self.specs[after]);
                match why.get(&(before, after)) {
                    Some(Why::After(name)) => format!(
                        "{} runs after {}: `after: {name}` on model {} ({})",
                        a.name, b.name, a.model_name, a.defined_in
                    ),
                    _ => format!(
                        "{} runs after {}: model {} is downstream of model {}",
                        a.name, b.name, a.model_name, b.model_name
                    ),
                }
            })
            .collect();
        Some(GraphError::Cycle { path: names, links })
    }
}

/// Breadth-first from `start` along "runs before" edges back to `start`; lowest indices first.
fn shortest_cycle(start: usize, why: &BTreeMap<(usize, usize), Why>) -> Vec<usize> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        for &(before, after) in why.keys() {
            if before != current {
                continue;
            }
            if after == start {
                let mut path = vec![start, current];
                let mut at = current;
                while let Some(&prev) = came_from.get(&at) {
                    path.push(prev);
                    at = prev;
                }
                // `path` is start, current, ..., start backwards; put it in running order.
                path.reverse();
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = came_from.entry(after) {
                slot.insert(current);
                queue.push_back(after);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
#[path = "order/tests.rs"]
mod tests;
