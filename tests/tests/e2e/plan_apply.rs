//! `plan --out plan.json` records exactly what a run would change; `run --plan plan.json`
//! applies exactly that, and refuses when the model's data, its SQL or the state changed.
//! `plan --detailed-exitcode`: 0 nothing to do, 3 changes pending.

use dbt_activate_e2e::{Project, sorted, syncs};
use serde_json::Value;

use crate::common::*;

fn plan_out(p: &Project) -> Value {
    let out = p.activate(&["plan", "--target", "ci", "--out", "plan.json"]);
    out.assert_success();
    out.assert_contains("Wrote the plan of 6 syncs");
    // Relative to where dbt-activate ran, like any path argument.
    let path = out_dir(p).join("plan.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}\n{out}", path.display()));
    serde_json::from_str(&text).expect("plan.json is JSON")
}

/// The folder dbt-activate runs in (the harness runs it outside the project).
fn out_dir(p: &Project) -> std::path::PathBuf {
    p.path()
        .parent()
        .expect("the project copy has a parent")
        .join("elsewhere")
}

fn planned<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["syncs"]
        .as_array()
        .expect("syncs")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the plan: {plan:#}"))
}

fn apply(p: &Project) -> dbt_activate_e2e::RunOutput {
    let plan = out_dir(p).join("plan.json");
    p.activate(&[
        "run",
        "--target",
        "ci",
        "--plan",
        &plan.display().to_string(),
    ])
}

#[test]
fn a_plan_is_applied_exactly_and_detailed_exitcode_tells_pending_changes() {
    let p = Project::new();
    let out = p.activate(&[
        "plan",
        "--target",
        "ci",
        "--detailed-exitcode",
        "--log-format",
        "json",
    ]);
    out.assert_code(3);
    let summary: Value = serde_json::from_str(out.stdout.trim()).expect("the JSON summary");
    assert_eq!(summary["status"], "pending_changes", "{out}");
    assert_eq!(summary["exit_code"], 3, "{out}");
    let plan = plan_out(&p);
    assert_nothing_sent(&p);
    assert_eq!(plan["plan_format_version"], 1);
    assert_eq!(plan["metadata"]["target"], "ci");
    let leads = planned(&plan, syncs::LEADS);
    let emails: Vec<String> = p
        .duck("select email from main.enriched_leads")
        .into_iter()
        .map(|r| format!("[\"{}\"]", r[0].clone().unwrap_or_default()))
        .collect();
    let mut planned_keys: Vec<String> = leads["insert"]
        .as_array()
        .expect("insert keys")
        .iter()
        .map(|k| k.to_string())
        .collect();
    planned_keys.sort();
    assert_eq!(planned_keys, sorted(emails), "one insert per lead");
    assert_eq!(leads["update"], serde_json::json!([]));
    assert_eq!(leads["state_keys"], 0);
    assert!(
        leads["model_checksum"]
            .as_str()
            .is_some_and(|c| c.len() > 10)
            && leads["data_fingerprint"]
                .as_str()
                .is_some_and(|c| c.len() == 32),
        "{leads:#}"
    );

    let out = apply(&p);
    out.assert_success();
    for s in plan["syncs"].as_array().expect("syncs") {
        let r = p.result(s["name"].as_str().expect("a name"));
        assert_status(&r, "success");
        assert_counts(
            &r,
            s["insert"].as_array().expect("insert").len() as u64,
            s["update"].as_array().expect("update").len() as u64,
            s["delete"].as_array().expect("delete").len() as u64,
        );
    }
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));

    // Everything delivered: nothing pending.
    p.activate(&["plan", "--target", "ci", "--detailed-exitcode"])
        .assert_code(0);
}

#[test]
fn a_stale_plan_is_refused_with_nothing_sent() {
    let p = Project::new();
    plan_out(&p);
    // Another run delivers everything after the plan was made: every sync's state changed.
    run_ci(&p).assert_success();
    p.pg.execute(r#"TRUNCATE crm."Lead""#);
    let out = apply(&p);
    out.assert_code(1);
    let r = p.result(syncs::LEADS);
    assert_status(&r, "error");
    assert!(
        message(&r).contains("the plan is stale: the state of sync")
            && message(&r).contains("nothing was sent"),
        "{r:#}"
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 0, "nothing was sent");

    // The model's data changes after the plan (a lead's company), the SQL does not.
    let p = Project::new();
    plan_out(&p);
    p.edit_seed("leads", |s| {
        s.replacen(",Northwind,", ",Northwind Labs,", 1)
    });
    p.dbt(&["build", "--target", "ci", "--exclude", "test_type:data"])
        .assert_success();
    let out = apply(&p);
    out.assert_code(1);
    let r = p.result(syncs::LEADS);
    assert_status(&r, "error");
    assert!(
        message(&r).contains("the data of model `enriched_leads` changed since the plan was made"),
        "{r:#}"
    );
    assert_eq!(p.pg.count(r#"crm."Lead""#), 0, "nothing was sent");
    // The syncs whose data did not change apply as planned.
    assert_status(&p.result(syncs::HIGH_VALUE), "success");

    // The model's SQL changes: the whole plan is refused before anything runs (exit 2).
    let p = Project::new();
    plan_out(&p);
    p.edit_file("models/marts/enriched_leads.sql", |s| {
        s + "\n-- a reviewed change\n"
    });
    p.dbt(&["build", "--target", "ci", "--exclude", "test_type:data"])
        .assert_success();
    let out = apply(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "the plan is stale, nothing was sent",
            "the model file of sync `enriched_leads__crm__Lead` changed",
        ],
    );

    // --select with --plan is refused.
    let out = p.activate(&[
        "run",
        "--target",
        "ci",
        "--plan",
        "plan.json",
        "--select",
        "churn_risk",
    ]);
    assert_config_error(&p, &out, &["--plan applies the whole plan"]);
}
