#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::json;

use crate::fixture::{self, names};
use crate::{GraphError, ProjectGraph, SyncOrder};

/// `sync -> syncs it waits for`, by name.
fn waits(
    specs: &[activate_manifest::ActivationSpec],
    order: &SyncOrder,
) -> BTreeMap<String, Vec<String>> {
    order
        .waits_for
        .iter()
        .map(|(&i, w)| (specs[i].name.clone(), names(specs, w)))
        .collect()
}

fn index(specs: &[activate_manifest::ActivationSpec], name: &str) -> usize {
    specs.iter().position(|s| s.name == name).unwrap()
}

#[test]
fn lineage_and_after_order_every_sync() {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let all: Vec<usize> = (0..specs.len()).collect();
    let order = graph.order(&all).unwrap();
    let expected: BTreeMap<String, Vec<String>> = [
        // lineage through int_scores and high_value_at_risk, and `after: usage_billing` (a model)
        (
            "alerts_to_slack",
            vec![
                "churn_to_cs",
                "leads_to_crm",
                "leads_to_ops",
                "segment_to_marketing",
                "billing_usage",
            ],
        ),
        ("churn_to_cs", vec![]),
        // two syncs of one model: no order between them
        ("leads_to_crm", vec![]),
        ("leads_to_ops", vec![]),
        // lineage through int_scores, which has no sync
        (
            "segment_to_marketing",
            vec!["churn_to_cs", "leads_to_crm", "leads_to_ops"],
        ),
        // `after: churn_to_cs` (a sync); no lineage between the models
        ("billing_usage", vec!["churn_to_cs"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(waits(&specs, &order), expected);

    let stages: Vec<Vec<String>> = order.stages().iter().map(|s| names(&specs, s)).collect();
    assert_eq!(
        stages,
        vec![
            vec!["churn_to_cs", "leads_to_crm", "leads_to_ops"],
            vec!["segment_to_marketing", "billing_usage"],
            vec!["alerts_to_slack"],
        ]
    );
}

#[test]
fn only_selected_syncs_appear() {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let alerts = index(&specs, "alerts_to_slack");
    let crm = index(&specs, "leads_to_crm");
    let order = graph.order(&[crm, alerts]).unwrap();
    assert_eq!(order.waits_for.len(), 2);
    assert_eq!(order.waits_for[&alerts], vec![crm]);
    assert!(order.waits_for[&crm].is_empty());
    assert_eq!(order.stages(), vec![vec![crm], vec![alerts]]);
}

#[test]
fn after_by_sync_name_and_by_model_name() {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let churn = index(&specs, "churn_to_cs");
    let billing = index(&specs, "billing_usage");
    let alerts = index(&specs, "alerts_to_slack");
    // billing_usage has `after: [churn_to_cs]`
    assert_eq!(
        graph.order(&[churn, billing]).unwrap().waits_for[&billing],
        vec![churn]
    );
    // alerts_to_slack has `after: usage_billing`, the model of billing_usage
    assert_eq!(
        graph.order(&[billing, alerts]).unwrap().waits_for[&alerts],
        vec![billing]
    );
}

#[test]
fn after_a_model_means_every_sync_of_it() {
    let mut nodes = fixture::nodes();
    fixture::node_mut(&mut nodes, "model.p.usage_billing")["config"]["meta"]["activate"]["after"] =
        json!(["enriched_leads", "int_scores"]);
    let (manifest, specs) = fixture::build(nodes);
    let graph = ProjectGraph::new(&manifest, &specs);
    let all: Vec<usize> = (0..specs.len()).collect();
    let order = graph.order(&all).unwrap();
    // int_scores is a model without syncs: valid, and it adds nothing.
    assert_eq!(
        names(&specs, &order.waits_for[&index(&specs, "billing_usage")]),
        ["leads_to_crm", "leads_to_ops"]
    );
}

#[test]
fn unknown_after_name_has_a_hint() {
    let mut nodes = fixture::nodes();
    fixture::node_mut(&mut nodes, "model.p.usage_billing")["config"]["meta"]["activate"]["after"] =
        json!(["churn_to_sc"]);
    let (manifest, specs) = fixture::build(nodes);
    let graph = ProjectGraph::new(&manifest, &specs);
    let err = graph.order(&[index(&specs, "billing_usage")]).unwrap_err();
    assert!(matches!(err, GraphError::UnknownAfter { .. }));
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn after_against_lineage_is_a_cycle() {
    let mut nodes = fixture::nodes();
    fixture::node_mut(&mut nodes, "model.p.enriched_leads")["config"]["meta"]["activate"][0]["after"] =
        json!("segment_to_marketing");
    let (manifest, specs) = fixture::build(nodes);
    let graph = ProjectGraph::new(&manifest, &specs);
    let all: Vec<usize> = (0..specs.len()).collect();
    let err = graph.order(&all).unwrap_err();
    let GraphError::Cycle { path, .. } = &err else {
        panic!("expected a cycle, got {err}");
    };
    assert_eq!(
        path,
        &["leads_to_crm", "segment_to_marketing", "leads_to_crm"]
    );
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn after_loop_is_a_cycle() {
    let mut nodes = fixture::nodes();
    fixture::node_mut(&mut nodes, "model.p.churn_risk")["config"]["meta"]["activate"]["after"] =
        json!("billing_usage");
    let (manifest, specs) = fixture::build(nodes);
    let graph = ProjectGraph::new(&manifest, &specs);
    let err = graph
        .order(&[index(&specs, "churn_to_cs"), index(&specs, "billing_usage")])
        .unwrap_err();
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn after_itself_is_a_cycle() {
    let mut nodes = fixture::nodes();
    fixture::node_mut(&mut nodes, "model.p.churn_risk")["config"]["meta"]["activate"]["after"] =
        json!(["churn_to_cs", "churn_risk"]);
    let (manifest, specs) = fixture::build(nodes);
    let graph = ProjectGraph::new(&manifest, &specs);
    let err = graph.order(&[index(&specs, "churn_to_cs")]).unwrap_err();
    let GraphError::Cycle { path, .. } = &err else {
        panic!("expected a cycle, got {err}");
    };
    assert_eq!(path, &["churn_to_cs", "churn_to_cs"]);
}

#[test]
fn dependents_are_transitive() {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let all: Vec<usize> = (0..specs.len()).collect();
    let order = graph.order(&all).unwrap();
    let of = |name: &str| names(&specs, &order.dependents_of(index(&specs, name)));
    assert_eq!(
        of("churn_to_cs"),
        ["alerts_to_slack", "segment_to_marketing", "billing_usage"]
    );
    assert_eq!(of("billing_usage"), ["alerts_to_slack"]);
    assert!(of("alerts_to_slack").is_empty());
}

#[test]
fn stages_of_a_hand_built_cycle_end_with_the_rest() {
    let order = SyncOrder {
        waits_for: [(0, vec![]), (1, vec![2]), (2, vec![1])]
            .into_iter()
            .collect(),
    };
    assert_eq!(order.stages(), vec![vec![0], vec![1, 2]]);
}
