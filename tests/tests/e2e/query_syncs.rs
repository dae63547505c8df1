//! Syncs defined by a SQL query over dbt refs (`syncs:` in activate.yml): the example's
//! `lead_scores_to_sales` joins `stg_leads` and `stg_product_usage`.

use std::collections::BTreeMap;

use crate::common::*;
use dbt_activate_e2e::{Project, syncs};

/// What the query returns, computed by DuckDB itself: email -> (score, page_views).
fn scores_in_warehouse(p: &Project) -> BTreeMap<String, (String, String)> {
    p.duck(
        "select l.email, case when u.page_views > 100 and u.trial_days_remaining < 7 then 'hot' \
         when u.page_views > 50 then 'warm' else 'cold' end, u.page_views::varchar \
         from main.stg_leads l join main.stg_product_usage u on u.email = l.email",
    )
    .into_iter()
    .map(|r| {
        let s = |i: usize| r[i].clone().unwrap_or_default();
        (s(0), (s(1), s(2)))
    })
    .collect()
}

fn scores_in_file(p: &Project) -> BTreeMap<String, (String, String)> {
    p.synced_jsonl("sales", "lead_scores")
        .into_iter()
        .map(|r| {
            let text = |k: &str| match &r[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                text("Email"),
                (text("Lead_Score__c"), text("Page_Views__c")),
            )
        })
        .collect()
}

#[test]
fn a_query_joining_two_models_lands_the_joined_rows_and_then_only_changes() {
    let p = Project::new();
    run_ci(&p).assert_success();
    let r = p.result(syncs::LEAD_SCORES);
    assert_status(&r, "success");
    assert_eq!(r["unique_id"], "sync.activate_example.lead_scores_to_sales");
    let expected = scores_in_warehouse(&p);
    assert!(expected.len() > 10, "the join returns rows: {expected:?}");
    assert_eq!(scores_in_file(&p), expected);
    assert_counts(&r, expected.len() as u64, 0, 0);

    // Rerun: nothing changed, nothing sent.
    run_ci(&p).assert_success();
    assert_counts(&p.result(syncs::LEAD_SCORES), 0, 0, 0);

    // One usage row changes (a lead's page views), one new lead with usage arrives.
    p.edit_seed("product_usage", |s| {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let views = header.iter().position(|h| *h == "page_views").unwrap();
        let mut cells: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
        cells[views] = "999".into();
        lines[1] = cells.join(",");
        let mut new_row: Vec<String> = lines[2].split(',').map(str::to_owned).collect();
        new_row[0] = "new.lead@example.org".into();
        lines.push(new_row.join(","));
        lines.join("\n") + "\n"
    });
    p.edit_seed("leads", |s| {
        s + "new.lead@example.org,Example Org,New,Lead,US,2025-03-01 10:00:00\n"
    });
    p.dbt(&["build", "--target", "ci", "--exclude", "test_type:data"])
        .assert_success();
    run_ci(&p).assert_success();
    let r = p.result(syncs::LEAD_SCORES);
    assert_counts(&r, 1, 1, 0);
    assert_eq!(scores_in_file(&p), scores_in_warehouse(&p));
}

#[test]
fn a_failed_referenced_model_skips_the_query_sync_with_that_reason() {
    let p = Project::new();
    p.replace_in_file(
        "models/staging/stg_product_usage.sql",
        "from {{ ref('product_usage') }}",
        "from no_such_relation",
    );
    let build = p.dbt(&["build", "--target", "ci"]);
    assert_ne!(build.code, 0, "dbt build must fail\n{build}");
    let out = run_ci(&p);
    out.assert_success();
    let r = p.result(syncs::LEAD_SCORES);
    assert_status(&r, "skipped");
    assert!(
        message(&r).contains("stg_product_usage"),
        "the reason names the model: {r:#}"
    );
    assert!(!p.file("synced/sales").exists(), "nothing was sent");
}

#[test]
fn an_unknown_ref_is_a_clear_error_naming_the_closest_model() {
    let p = Project::new();
    p.replace_in_file("activate.yml", "ref('stg_leads')", "ref('stg_lead')");
    let out = run_ci(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "syncs.lead_scores_to_sales.query",
            "ref('stg_lead')",
            "did you mean `stg_leads`",
        ],
    );
}

#[test]
fn a_query_that_fails_in_the_warehouse_is_a_clear_error() {
    let p = Project::new();
    p.replace_in_file("activate.yml", "u.page_views\n", "u.no_such_column\n");
    let out = run_ci(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "sync `lead_scores_to_sales` (activate.yml): its query failed in the warehouse",
            "no_such_column",
        ],
    );
}

#[test]
fn a_query_returning_duplicate_keys_fails_before_sending() {
    let p = Project::new();
    // Every lead twice.
    p.replace_in_file(
        "activate.yml",
        "join {{ ref('stg_product_usage') }} as u on u.email = l.email",
        "join {{ ref('stg_product_usage') }} as u on true",
    );
    let out = run_ci(&p);
    out.assert_code(1);
    let r = p.result(syncs::LEAD_SCORES);
    assert_status(&r, "error");
    assert!(message(&r).contains("repeats an earlier row"), "{r:#}");
    assert!(!p.file("synced/sales").exists(), "nothing was sent for it");
    assert_status(&p.result(syncs::LEADS), "success");
}

#[test]
fn query_syncs_are_selected_by_name_and_by_graph_operators() {
    let p = Project::new();
    let names = |args: &[&str]| {
        let mut a = vec!["run", "--target", "ci"];
        a.extend_from_slice(args);
        p.activate(&a).assert_success();
        p.result_names()
    };
    assert_eq!(
        names(&["--select", "lead_scores_to_sales"]),
        vec![syncs::LEAD_SCORES.to_owned()]
    );
    let downstream = names(&["--select", "stg_product_usage+"]);
    assert!(
        downstream.contains(&syncs::LEAD_SCORES.to_owned()),
        "{downstream:?}"
    );
    assert!(!names(&["--select", "churn_risk+"]).contains(&syncs::LEAD_SCORES.to_owned()));
}
