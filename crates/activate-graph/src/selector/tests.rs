#![allow(clippy::unwrap_used)]

use crate::fixture::{self, names};
use crate::{GraphError, ProjectGraph};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Names of the syncs `--select select --exclude exclude` picks, in spec order.
fn pick(select: &[&str], exclude: &[&str]) -> Vec<String> {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    let picked = graph.select(&strings(select), &strings(exclude)).unwrap();
    names(&specs, &picked)
}

fn error(select: &[&str], exclude: &[&str]) -> GraphError {
    let (manifest, specs) = fixture::project();
    let graph = ProjectGraph::new(&manifest, &specs);
    graph
        .select(&strings(select), &strings(exclude))
        .unwrap_err()
}

const ALL: &[&str] = &[
    "alerts_to_slack",
    "churn_to_cs",
    "leads_to_crm",
    "leads_to_ops",
    "segment_to_marketing",
    "billing_usage",
];

#[test]
fn empty_select_is_every_sync() {
    assert_eq!(pick(&[], &[]), ALL);
    assert_eq!(pick(&["  "], &[]), ALL);
}

#[test]
fn model_name_selects_all_its_syncs() {
    assert_eq!(
        pick(&["enriched_leads"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["model:enriched_leads"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
}

#[test]
fn sync_name_selects_one_sync() {
    assert_eq!(pick(&["leads_to_ops"], &[]), ["leads_to_ops"]);
    assert_eq!(pick(&["sync:leads_to_ops"], &[]), ["leads_to_ops"]);
}

#[test]
fn model_without_syncs_selects_nothing_without_error() {
    assert!(pick(&["int_scores"], &[]).is_empty());
}

#[test]
fn fqn_selects_folders_and_dotted_names() {
    assert_eq!(
        pick(&["marts.enriched_leads"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(pick(&["marts.cs"], &[]), ["churn_to_cs"]);
    assert_eq!(pick(&["fqn:p.marts.cs.churn_risk"], &[]), ["churn_to_cs"]);
    assert_eq!(pick(&["marts"], &[]), ALL);
}

#[test]
fn tag_matches_tags_and_config_tags() {
    assert_eq!(pick(&["tag:hourly"], &[]), ["leads_to_crm", "leads_to_ops"]);
    assert_eq!(pick(&["tag:daily"], &[]), ["segment_to_marketing"]);
    // `nightly` is only in stg_usage's config.tags (a string): a match, but no sync there.
    assert!(pick(&["tag:nightly"], &[]).is_empty());
    assert_eq!(
        pick(&["tag:nightly+1"], &[]),
        [
            "churn_to_cs",
            "leads_to_crm",
            "leads_to_ops",
            "billing_usage"
        ]
    );
}

#[test]
fn path_matches_folder_or_file() {
    assert_eq!(pick(&["path:models/marts/cs"], &[]), ["churn_to_cs"]);
    assert_eq!(pick(&["path:models/marts/cs/"], &[]), ["churn_to_cs"]);
    assert_eq!(
        pick(&["path:models/marts/cs/churn_risk.sql"], &[]),
        ["churn_to_cs"]
    );
    // `path` relative to the models folder matches too, and a bare path needs no method.
    assert_eq!(pick(&["path:marts/cs"], &[]), ["churn_to_cs"]);
    assert_eq!(pick(&["models/marts/cs"], &[]), ["churn_to_cs"]);
    assert_eq!(
        pick(&["marts/enriched_leads.sql"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
}

#[test]
fn path_prefix_must_be_a_whole_folder() {
    let err = error(&["path:models/mar"], &[]);
    assert!(matches!(err, GraphError::UnknownSelector { .. }), "{err}");
}

#[test]
fn config_meta_compares_strings_bools_numbers_and_nested_keys() {
    assert_eq!(
        pick(&["config.meta.owner:growth"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["config.meta.pii:true"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["config.meta.pii:True"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(pick(&["config.meta.priority:2"], &[]), ["churn_to_cs"]);
    assert_eq!(
        pick(&["config.meta.priority:1.0"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["config.meta.team.name:growth"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["config.materialized:table"], &[]),
        ["leads_to_crm", "leads_to_ops"]
    );
}

#[test]
fn source_method_and_bare_source_names() {
    assert_eq!(
        pick(&["source:raw+"], &[]),
        [
            "alerts_to_slack",
            "leads_to_crm",
            "leads_to_ops",
            "segment_to_marketing"
        ]
    );
    assert_eq!(pick(&["source:raw.leads+1"], &[]), Vec::<String>::new());
}

#[test]
fn spaces_and_several_strings_are_a_union() {
    assert_eq!(
        pick(&["churn_to_cs leads_to_ops"], &[]),
        ["churn_to_cs", "leads_to_ops"]
    );
    assert_eq!(
        pick(&["churn_to_cs", "tag:daily"], &[]),
        ["churn_to_cs", "segment_to_marketing"]
    );
}

#[test]
fn commas_are_an_intersection() {
    assert_eq!(
        pick(&["tag:hourly,sync:leads_to_crm"], &[]),
        ["leads_to_crm"]
    );
    assert_eq!(
        pick(&["marts,config.meta.owner:success"], &[]),
        ["churn_to_cs"]
    );
    assert!(pick(&["tag:hourly,tag:daily"], &[]).is_empty());
}

#[test]
fn exclude_removes() {
    assert_eq!(
        pick(&["enriched_leads"], &["sync:leads_to_ops"]),
        ["leads_to_crm"]
    );
    assert_eq!(
        pick(&[], &["marts.cs tag:hourly"]),
        ["alerts_to_slack", "segment_to_marketing", "billing_usage"]
    );
}

#[test]
fn plus_before_selects_ancestors() {
    assert_eq!(
        pick(&["+high_value_at_risk"], &[]),
        [
            "churn_to_cs",
            "leads_to_crm",
            "leads_to_ops",
            "segment_to_marketing"
        ]
    );
    // One generation up is int_scores, which has no sync.
    assert_eq!(
        pick(&["1+high_value_at_risk"], &[]),
        ["segment_to_marketing"]
    );
    assert_eq!(
        pick(&["2+high_value_at_risk"], &[]),
        [
            "churn_to_cs",
            "leads_to_crm",
            "leads_to_ops",
            "segment_to_marketing"
        ]
    );
}

#[test]
fn plus_after_selects_descendants() {
    assert_eq!(
        pick(&["churn_risk+"], &[]),
        ["alerts_to_slack", "churn_to_cs", "segment_to_marketing"]
    );
    assert_eq!(
        pick(&["churn_risk+2"], &[]),
        ["churn_to_cs", "segment_to_marketing"]
    );
}

#[test]
fn graph_operators_on_a_sync_leave_its_sibling_syncs_out() {
    assert_eq!(
        pick(&["leads_to_crm+"], &[]),
        ["alerts_to_slack", "leads_to_crm", "segment_to_marketing"]
    );
    assert_eq!(pick(&["+sync:leads_to_crm"], &[]), ["leads_to_crm"]);
}

#[test]
fn at_selects_descendants_and_their_ancestors() {
    assert_eq!(
        pick(&["@churn_risk"], &[]),
        [
            "alerts_to_slack",
            "churn_to_cs",
            "leads_to_crm",
            "leads_to_ops",
            "segment_to_marketing"
        ]
    );
}

#[test]
fn unknown_model_name_has_a_hint() {
    insta::assert_snapshot!(error(&["enriched_lead"], &[]).to_string());
}

#[test]
fn unknown_sync_name_has_a_hint() {
    insta::assert_snapshot!(error(&["sync:leads_to_crn"], &[]).to_string());
}

#[test]
fn unknown_tag_lists_close_tags() {
    insta::assert_snapshot!(error(&["tag:hourli+"], &[]).to_string());
}

#[test]
fn unknown_meta_value_lists_values() {
    insta::assert_snapshot!(error(&["config.meta.owner:nobody"], &[]).to_string());
}

#[test]
fn typo_in_exclude_is_an_error_too() {
    insta::assert_snapshot!(error(&[], &["churn_risc"]).to_string());
}

#[test]
fn name_with_nothing_close_lists_syncs() {
    insta::assert_snapshot!(error(&["zzzzzzzz"], &[]).to_string());
}

#[test]
fn unknown_method_has_a_hint() {
    insta::assert_snapshot!(error(&["tags:hourly"], &[]).to_string());
}

#[test]
fn malformed_selectors() {
    insta::assert_snapshot!(error(&["+"], &[]).to_string());
    let err = error(&["@churn_risk+"], &[]);
    assert!(matches!(err, GraphError::InvalidSelector { .. }), "{err}");
    let err = error(&["tag:hourly,,x"], &[]);
    assert!(matches!(err, GraphError::InvalidSelector { .. }), "{err}");
}
