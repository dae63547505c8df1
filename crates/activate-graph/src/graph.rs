//! The lineage graph of a dbt project (models, seeds, snapshots, sources, ...) and the syncs
//! declared on its models.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use activate_manifest::{ActivationSpec, Manifest, Node};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

/// Resource types that are checks on a node rather than steps of its lineage.
const NOT_LINEAGE: &[&str] = &["test", "unit_test"];

/// The graph's node per unique_id. A hash map: ids share long prefixes (`model.<project>.`),
/// which an ordered map compared again at every step (`memcmp` was a quarter of building the
/// graph of 10,000 models; docs/performance.md). Nothing depends on its order.
type NodeIndexes<'a> = HashMap<&'a str, NodeIndex, foldhash::fast::RandomState>;

/// The graph's node for `id`, added if it has none yet.
fn node_of<'a>(
    graph: &mut DiGraph<&'a str, ()>,
    index: &mut NodeIndexes<'a>,
    id: &'a str,
) -> NodeIndex {
    *index.entry(id).or_insert_with(|| graph.add_node(id))
}

/// A petgraph `DiGraph` of the manifest's nodes and sources, with an edge from each node to
/// every node that depends on it (`depends_on.nodes`), plus the syncs declared on its models.
pub struct ProjectGraph<'a> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) specs: &'a [ActivationSpec],
    /// Node weight: the unique_id (borrowed from the manifest or a spec). Edge: upstream ->
    /// downstream.
    graph: DiGraph<&'a str, ()>,
    index: NodeIndexes<'a>,
    /// Spec indices per model unique_id, in spec order.
    syncs_by_model: BTreeMap<&'a str, Vec<usize>>,
    /// Spec index per sync name.
    sync_by_name: BTreeMap<&'a str, usize>,
}

impl<'a> ProjectGraph<'a> {
    pub fn new(manifest: &'a Manifest, specs: &'a [ActivationSpec]) -> Self {
        let mut graph = DiGraph::with_capacity(manifest.nodes.len(), manifest.nodes.len());
        let mut index = NodeIndexes::with_capacity_and_hasher(
            manifest.nodes.len() + manifest.sources.len(),
            Default::default(),
        );
        for source in manifest.sources.keys() {
            node_of(&mut graph, &mut index, source);
        }
        // Every lineage node first, in id order, each with its graph node (and its type read
        // once: a node is a pointer away from the map's entry); then their edges.
        let lineage_nodes: Vec<(NodeIndex, &str, &Node)> = manifest
            .nodes
            .iter()
            .filter(|(_, node)| !NOT_LINEAGE.contains(&node.resource_type.as_str()))
            .map(|(id, node)| (node_of(&mut graph, &mut index, id), id.as_str(), &**node))
            .collect();
        for &(child, id, node) in &lineage_nodes {
            for upstream in &node.depends_on.nodes {
                if upstream == id {
                    continue;
                }
                // Sources and lineage nodes are in the index already; any other upstream is a
                // check (a test: not lineage) or missing from the manifest (a node of its own).
                let parent = match index.get(upstream.as_str()) {
                    Some(&parent) => parent,
                    None if manifest
                        .nodes
                        .get(upstream)
                        .is_some_and(|n| NOT_LINEAGE.contains(&n.resource_type.as_str())) =>
                    {
                        continue;
                    }
                    None => node_of(&mut graph, &mut index, upstream),
                };
                graph.update_edge(parent, child, ());
            }
        }
        // A spec whose model is missing from the manifest still gets a node, so it can be ordered.
        // A query sync is a node of its own, downstream of every node its query references, so
        // `enriched_leads+` selects it and lineage orders it.
        for spec in specs {
            let node = node_of(&mut graph, &mut index, &spec.model_id);
            for parent in &spec.parents {
                let parent = node_of(&mut graph, &mut index, parent);
                graph.update_edge(parent, node, ());
            }
        }

        let mut syncs_by_model: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut sync_by_name = BTreeMap::new();
        for (i, spec) in specs.iter().enumerate() {
            syncs_by_model
                .entry(spec.model_id.as_str())
                .or_default()
                .push(i);
            sync_by_name.entry(spec.name.as_str()).or_insert(i);
        }
        ProjectGraph {
            manifest,
            specs,
            graph,
            index,
            syncs_by_model,
            sync_by_name,
        }
    }

    pub fn manifest(&self) -> &'a Manifest {
        self.manifest
    }

    pub fn specs(&self) -> &'a [ActivationSpec] {
        self.specs
    }

    /// The index of the sync with this name.
    pub fn sync_index(&self, name: &str) -> Option<usize> {
        self.sync_by_name.get(name).copied()
    }

    /// The syncs (spec indices, in spec order) declared on a model.
    pub fn syncs_of_model(&self, model_id: &str) -> &[usize] {
        self.syncs_by_model
            .get(model_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every node upstream of `unique_id`, nearest first (ties by unique_id).
    pub fn ancestors_of(&self, unique_id: &str) -> Vec<&str> {
        self.walk_ids(unique_id, Direction::Incoming)
    }

    /// Every node downstream of `unique_id`, nearest first (ties by unique_id).
    pub fn descendants_of(&self, unique_id: &str) -> Vec<&str> {
        self.walk_ids(unique_id, Direction::Outgoing)
    }

    fn walk_ids(&self, unique_id: &str, direction: Direction) -> Vec<&str> {
        match self.index.get(unique_id) {
            Some(&start) => self
                .walk(&[start], direction, None)
                .into_iter()
                .map(|n| self.id(n))
                .collect(),
            None => Vec::new(),
        }
    }

    pub(crate) fn node(&self, unique_id: &str) -> Option<NodeIndex> {
        self.index.get(unique_id).copied()
    }

    pub(crate) fn id(&self, node: NodeIndex) -> &str {
        self.graph.node_weight(node).copied().unwrap_or_default()
    }

    pub(crate) fn nodes(&self) -> impl Iterator<Item = (NodeIndex, &str)> {
        self.index.iter().map(|(&id, &n)| (n, id))
    }

    /// Nodes reached from `starts` in `direction`, not counting the starts themselves unless a
    /// path leads back to them; breadth first, nearest first; `depth` limits the generations.
    pub(crate) fn walk(
        &self,
        starts: &[NodeIndex],
        direction: Direction,
        depth: Option<usize>,
    ) -> Vec<NodeIndex> {
        let mut seen: BTreeSet<NodeIndex> = BTreeSet::new();
        let mut out = Vec::new();
        let mut queue: VecDeque<(NodeIndex, usize)> = starts.iter().map(|&s| (s, 0)).collect();
        while let Some((node, generation)) = queue.pop_front() {
            if depth.is_some_and(|max| generation >= max) {
                continue;
            }
            let mut next: Vec<NodeIndex> = self.graph.neighbors_directed(node, direction).collect();
            next.sort_by(|a, b| self.id(*a).cmp(self.id(*b)));
            for n in next {
                if seen.insert(n) {
                    out.push(n);
                    queue.push_back((n, generation + 1));
                }
            }
        }
        out
    }

    /// Human label of a node: `model enriched_leads`, `seed raw_usage`, `source raw.leads`.
    pub(crate) fn label(&self, unique_id: &str) -> String {
        if let Some(node) = self.manifest.nodes.get(unique_id) {
            return format!("{} {}", node.resource_type, node.name);
        }
        if let Some(source) = self.manifest.sources.get(unique_id) {
            return format!("source {}.{}", source.source_name, source.name);
        }
        unique_id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::fixture;

    use super::*;

    #[test]
    fn walks_lineage_both_ways() {
        let (manifest, specs) = fixture::project();
        let graph = ProjectGraph::new(&manifest, &specs);
        assert_eq!(
            graph.ancestors_of("model.p.enriched_leads"),
            vec![
                "model.p.stg_leads",
                "model.p.stg_usage",
                "source.p.raw.leads",
                "seed.p.raw_usage"
            ]
        );
        assert_eq!(
            graph.descendants_of("model.p.churn_risk"),
            vec![
                "model.p.int_scores",
                "model.p.high_value_at_risk",
                "model.p.alerts"
            ]
        );
        assert!(graph.ancestors_of("model.p.nope").is_empty());
        assert_eq!(graph.syncs_of_model("model.p.enriched_leads"), &[2, 3]);
        assert_eq!(graph.sync_index("churn_to_cs"), Some(1));
        assert_eq!(graph.label("source.p.raw.leads"), "source raw.leads");
    }

    /// A dependency on a check is not lineage; a dependency on a node missing from the
    /// manifest is (it still orders and selects).
    #[test]
    fn a_check_is_never_a_parent_and_a_missing_node_is() {
        let mut nodes = fixture::nodes();
        nodes.push(fixture::test("unique_stg_leads_id", "model.p.stg_leads"));
        nodes.push(fixture::model(
            "after_checks",
            &[
                "test.p.unique_stg_leads_id",
                "model.p.stg_leads",
                "model.p.not_in_manifest",
            ],
            "marts",
            serde_json::json!({}),
        ));
        let (manifest, specs) = fixture::build(nodes);
        let graph = ProjectGraph::new(&manifest, &specs);
        assert_eq!(
            graph.ancestors_of("model.p.after_checks"),
            vec![
                "model.p.not_in_manifest",
                "model.p.stg_leads",
                "source.p.raw.leads"
            ]
        );
        assert!(
            graph
                .descendants_of("test.p.unique_stg_leads_id")
                .is_empty()
        );
        assert!(graph.node("test.p.unique_stg_leads_id").is_none());
        assert_eq!(
            graph.descendants_of("model.p.not_in_manifest"),
            vec!["model.p.after_checks"]
        );
    }
}
