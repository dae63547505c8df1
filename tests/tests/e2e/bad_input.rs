//! Bad input: a clear error, exit code 2, and nothing sent anywhere.

use dbt_activate_e2e::Project;

use crate::common::*;

#[test]
fn malformed_activate_yml() {
    let p = Project::new();
    p.edit_file("activate.yml", |s| s + "  broken: [unclosed\n");
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["activate.yml"]);
    snapshot!("malformed_activate_yml", normalised(&p, &out.text()));
}

#[test]
fn unknown_meta_activate_key_has_a_did_you_mean_hint() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "          sync_mode: incremental          # no cursor",
        "          sync_mod: incremental          # no cursor",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    let out = run_ci(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "sync_mod",
            "did you mean",
            "`sync_mode`",
            "models/marts/schema.yml",
            "enriched_leads",
        ],
    );
    // validate reports the same problem
    let validate = p.activate(&["validate", "--target", "ci"]);
    assert_config_error(&p, &validate, &["sync_mod", "did you mean", "sync_mode"]);
}

#[test]
fn unknown_destination() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "destination: cs_tool\n",
        "destination: cs_tol\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    let out = run_ci(&p);
    assert_config_error(
        &p,
        &out,
        &["cs_tol", "cs_tool", "churn_risk", "activate.yml"],
    );
}

#[test]
fn mapping_of_a_missing_column() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "            lead_score: Lead_Score__c\n",
        "            lead_scor: Lead_Score__c\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["lead_scor", "enriched_leads"]);
    snapshot!("mapping_of_a_missing_column", normalised(&p, &out.text()));
}

#[test]
fn missing_env_var_without_default() {
    let p = Project::new();
    let out = p
        .activate_cmd(&["run", "--target", "ci"])
        .env_remove("ACTIVATE_PG_URL")
        .run();
    assert_config_error(&p, &out, &["ACTIVATE_PG_URL"]);
    snapshot!(
        "missing_env_var_without_default",
        normalised(&p, &out.text())
    );
}

#[test]
fn manifest_that_is_not_json() {
    let p = Project::new();
    p.write_file("target/manifest.json", "{\"metadata\": this is not json");
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["manifest.json"]);
    snapshot!("manifest_that_is_not_json", normalised(&p, &out.text()));
}

#[test]
fn manifest_of_an_unsupported_version() {
    let p = Project::new();
    p.replace_in_file(
        "target/manifest.json",
        "\"dbt_schema_version\": \"https://schemas.getdbt.com/dbt/manifest/v12.json\"",
        "\"dbt_schema_version\": \"https://schemas.getdbt.com/dbt/manifest/v7.json\"",
    );
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["manifest.json", "v7"]);
    snapshot!(
        "manifest_of_an_unsupported_version",
        normalised(&p, &out.text())
    );
}

#[test]
fn missing_run_results_explains_the_policy() {
    let p = Project::new();
    p.remove_file("target/run_results.json");
    let out = run_ci(&p);
    assert_config_error(
        &p,
        &out,
        &["run_results.json", "dbt build", "--include-unbuilt"],
    );
    snapshot!("missing_run_results", normalised(&p, &out.text()));

    // The documented way out: sync the existing relations.
    let out = p.activate(&["run", "--target", "ci", "--include-unbuilt"]);
    out.assert_success();
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
}

#[test]
fn run_results_of_dbt_compile_proves_nothing() {
    let p = Project::new();
    p.dbt(&["compile", "--target", "ci"]).assert_success();
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["run_results.json", "--include-unbuilt"]);
}

#[test]
fn unreachable_warehouse_file() {
    let p = Project::new();
    p.remove_file("activate_example.duckdb");
    let out = run_ci(&p);
    assert_config_error(&p, &out, &["activate_example.duckdb"]);
    snapshot!("unreachable_warehouse_file", normalised(&p, &out.text()));
}
