use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::*;

fn manifest_with(nodes: Vec<serde_json::Value>) -> Manifest {
    let mut map = serde_json::Map::new();
    for n in nodes {
        let id = n["unique_id"].as_str().unwrap().to_owned();
        map.insert(id, n);
    }
    let doc = json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "p"},
        "nodes": map,
    });
    Manifest::from_slice(doc.to_string().as_bytes(), Path::new("manifest.json")).unwrap()
}

fn model(name: &str, activate: serde_json::Value) -> serde_json::Value {
    json!({
        "unique_id": format!("model.p.{name}"), "resource_type": "model", "name": name,
        "original_file_path": "models/marts/schema.yml",
        "primary_key": ["email"],
        "config": {"meta": {"activate": activate}},
    })
}

fn destinations() -> BTreeSet<String> {
    ["crm", "warehouse_ops"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn full_spec_parses() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!({
            "name": "leads_to_crm", "destination": "crm", "object": "Lead",
            "sync_mode": "incremental", "cursor": "last_active_at", "primary_key": "email",
            "match_on": "Email", "operation": "upsert",
            "mapping": {"email": "Email", "company": "Company", "'dbt'": "LeadSource", "{{ first }} {{ last }}": "Name"},
            "schedule": "cron \"0 * * * *\"", "limits": {"max_deletes": "5%", "max_rejected": 10},
            "after": ["other"],
        }),
    )]);
    let specs = extract_specs(&m, &destinations()).unwrap();
    insta::assert_json_snapshot!(specs);
}

#[test]
fn defaults_and_inferred_key() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead"}),
    )]);
    let spec = &extract_specs(&m, &destinations()).unwrap()[0];
    assert_eq!(spec.name, "enriched_leads__crm__Lead");
    assert_eq!(spec.sync_mode, SyncMode::Incremental);
    assert_eq!(spec.operation, Operation::Upsert);
    assert_eq!(spec.primary_key, vec!["email"]);
    assert_eq!(spec.match_on, vec!["email"]);
    assert_eq!(spec.schedule, Schedule::Always);
}

#[test]
fn list_form_gives_several_syncs() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!([{"destination": "crm", "object": "Lead"}, {"destination": "warehouse_ops", "object": "leads"}]),
    )]);
    let specs = extract_specs(&m, &destinations()).unwrap();
    assert_eq!(specs.len(), 2);
}

fn errors_of(activate: serde_json::Value) -> String {
    let m = manifest_with(vec![model("enriched_leads", activate)]);
    extract_specs(&m, &destinations()).unwrap_err().to_string()
}

#[test]
fn typo_gets_did_you_mean() {
    let text = errors_of(json!({"destination": "crm", "object": "Lead", "sync_mod": "mirror"}));
    insta::assert_snapshot!(text);
}

#[test]
fn unknown_destination_and_mode() {
    let text = errors_of(
        json!({"destination": "crn", "object": "Lead", "sync_mode": "mirrors", "operation": "merge"}),
    );
    insta::assert_snapshot!(text);
}

#[test]
fn mirror_rules() {
    let text = errors_of(
        json!({"destination": "crm", "object": "Lead", "sync_mode": "mirror", "operation": "insert"}),
    );
    assert!(text.contains("mirror needs operation upsert"), "{text}");
    let text = errors_of(json!({"destination": "crm", "object": "Lead", "on_delete": "delete"}));
    assert!(
        text.contains("on_delete applies only to sync_mode mirror"),
        "{text}"
    );
    let text = errors_of(
        json!({"destination": "crm", "object": "Lead", "sync_mode": "mirror", "cursor": "x"}),
    );
    assert!(
        text.contains("cursor applies only to sync_mode incremental"),
        "{text}"
    );
}

#[test]
fn ambiguous_inferred_key_lists_candidates() {
    let mut node = model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead"}),
    );
    node["primary_key"] = json!(["email", "lead_id"]);
    let m = manifest_with(vec![node]);
    let text = extract_specs(&m, &destinations()).unwrap_err().to_string();
    assert!(text.contains("ambiguous: email, lead_id"), "{text}");
}

#[test]
fn missing_key_explains_fix() {
    let mut node = model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead"}),
    );
    node["primary_key"] = json!([]);
    let m = manifest_with(vec![node]);
    let text = extract_specs(&m, &destinations()).unwrap_err().to_string();
    assert!(text.contains("dbt knows no primary key"), "{text}");
}

#[test]
fn match_on_length_must_match() {
    let text = errors_of(
        json!({"destination": "crm", "object": "Lead", "primary_key": ["a", "b"], "match_on": "A"}),
    );
    assert!(text.contains("pair up by position"), "{text}");
}

#[test]
fn bad_limits_and_schedule() {
    let text = errors_of(
        json!({"destination": "crm", "object": "Lead", "limits": {"max_delete": "5%", "max_rejected": "150%"}, "schedule": "every_hours"}),
    );
    insta::assert_snapshot!(text);
}

#[test]
fn contract_checks_columns() {
    let mut node = model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead", "mapping": {"emial": "Email"}}),
    );
    node["config"]["contract"] = json!({"enforced": true});
    node["columns"] = json!({"email": {"name": "email"}, "company": {"name": "company"}});
    let m = manifest_with(vec![node]);
    let text = extract_specs(&m, &destinations()).unwrap_err().to_string();
    assert!(
        text.contains("column `emial` is not in the model's enforced contract"),
        "{text}"
    );
    assert!(text.contains("did you mean `email`"), "{text}");
}

#[test]
fn disabled_activation_is_dropped() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead", "enabled": false}),
    )]);
    assert!(extract_specs(&m, &destinations()).unwrap().is_empty());
}

#[test]
fn node_meta_is_the_fallback() {
    let mut node = model("enriched_leads", json!(null));
    node["config"] = json!({});
    node["meta"] = json!({"activate": {"destination": "crm", "object": "Lead"}});
    let m = manifest_with(vec![node]);
    assert_eq!(extract_specs(&m, &destinations()).unwrap().len(), 1);
}

#[test]
fn duplicate_names_are_refused() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!([{"destination": "crm", "object": "Lead", "name": "x"}, {"destination": "crm", "object": "Contact", "name": "x"}]),
    )]);
    let text = extract_specs(&m, &destinations()).unwrap_err().to_string();
    assert!(text.contains("two syncs are named `x`"), "{text}");
}

#[test]
fn mapping_sources() {
    assert_eq!(
        MappingSource::parse("'web'"),
        MappingSource::Literal("web".into())
    );
    assert_eq!(
        MappingSource::parse("email"),
        MappingSource::Column("email".into())
    );
    assert!(matches!(
        MappingSource::parse("{{ a }}-{{ b }}"),
        MappingSource::Template(_)
    ));
}

#[test]
fn limits_compare() {
    assert!(Limit::Share(0.05).exceeded(6, 100));
    assert!(!Limit::Share(0.05).exceeded(5, 100));
    assert!(Limit::Count(3).exceeded(4, 0));
}

#[test]
fn names_and_objects_are_checked() {
    let text = errors_of(json!({"destination": "crm", "object": null}));
    assert!(text.contains("meta.activate.object: missing"), "{text}");
    let text = errors_of(json!({"destination": "crm", "object": "Lead", "name": "../escape"}));
    assert!(text.contains("is not a valid sync name"), "{text}");
    let text = errors_of(json!({"destination": "crm", "object": "Lead", "name": 5}));
    assert!(
        text.contains("meta.activate.name: expected a non-empty string"),
        "{text}"
    );
}

#[test]
fn query_syncs_use_the_same_validator() {
    let m = manifest_with(vec![model(
        "enriched_leads",
        json!({"destination": "crm", "object": "Lead"}),
    )]);
    let specs = extract_specs(&m, &destinations()).unwrap();
    let block = |v: serde_json::Value| v.as_object().unwrap().clone();
    let q = QuerySync {
        name: "hot_leads".into(),
        sql: "select * from \"enriched_leads\"".into(),
        parents: vec!["model.p.enriched_leads".into()],
        block: block(
            json!({"destination": "crm", "object": "HotLead", "primary_key": "email", "sync_mod": "mirror"}),
        ),
    };
    let text = add_query_specs(
        "p",
        specs.clone(),
        std::slice::from_ref(&q),
        &destinations(),
    )
    .unwrap_err()
    .to_string();
    insta::assert_snapshot!(text);
    let ok = QuerySync {
        block: block(json!({"destination": "crm", "object": "HotLead", "primary_key": "email"})),
        ..q.clone()
    };
    let all = add_query_specs("p", specs.clone(), &[ok], &destinations()).unwrap();
    let spec = &all[1];
    assert_eq!(spec.name, "hot_leads");
    assert_eq!(spec.model_id, "query.p.hot_leads");
    assert_eq!(spec.parents, vec!["model.p.enriched_leads"]);
    let no_key = QuerySync {
        block: block(json!({"destination": "crm", "object": "HotLead"})),
        ..q
    };
    let text = add_query_specs("p", specs, &[no_key], &destinations())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "sync `hot_leads` (activate.yml), primary_key: missing: a query sync names its key"
        ),
        "{text}"
    );
}

#[test]
fn owner_is_an_email_a_name_or_both() {
    let owner_of = |owner: serde_json::Value| {
        let m = manifest_with(vec![model(
            "enriched_leads",
            json!({"destination": "crm", "object": "Lead", "owner": owner}),
        )]);
        extract_specs(&m, &destinations()).unwrap().remove(0).owner
    };
    assert_eq!(
        owner_of(json!("growth@example.com")),
        Some(Owner {
            name: None,
            email: Some("growth@example.com".into())
        })
    );
    assert_eq!(
        owner_of(json!({"name": "Growth", "email": "g@example.com"})),
        Some(Owner {
            name: Some("Growth".into()),
            email: Some("g@example.com".into())
        })
    );
    assert_eq!(
        owner_of(json!("Growth team")).and_then(|o| o.name),
        Some("Growth team".into())
    );
    let text =
        errors_of(json!({"destination": "crm", "object": "Lead", "owner": {"mail": "x@y.z"}}));
    assert!(
        text.contains("meta.activate.owner") && text.contains("unknown key `mail`"),
        "{text}"
    );
}
