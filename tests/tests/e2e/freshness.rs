//! No wasted warehouse work (issue #6, workload 7): a sync whose model (a table) was not
//! rebuilt since its last successful sync is not queried; views, rebuilt models, changed
//! definitions, reset state, `--full-refresh`, `--ignore-schedule` and `plan` still query.
//!
//! The proof that nothing was queried: the model's relation is dropped from DuckDB after the
//! first sync, so any query of it fails the run; an up-to-date sync still succeeds.
//! Schedules are enforced here (the harness ignores them by default) and "now" is moved a
//! day forward between runs so every sync is due.

use dbt_activate_e2e::{Project, RunOutput, python, run_with_timeout, syncs};

use crate::common::*;

const DAY_1: &str = "2026-03-02T10:00:30Z";
const DAY_3: &str = "2026-03-04T10:00:30Z";
const DAY_5: &str = "2026-03-06T10:00:30Z";

/// `dbt-activate <args> --target ci` at `now`, with schedules enforced.
fn at(p: &Project, now: &str, args: &[&str]) -> RunOutput {
    let mut all = args.to_vec();
    all.extend(["--target", "ci"]);
    p.activate_cmd(&all)
        .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
        .env("DBT_ACTIVATE_NOW", now)
        .run()
}

/// Runs a statement on the project's DuckDB file (read-write).
fn duck_exec(p: &Project, sql: &str) {
    const SCRIPT: &str = r#"
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute(sys.argv[2])
con.close()
"#;
    let mut cmd = std::process::Command::new(python());
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(p.file("activate_example.duckdb"))
        .arg(sql);
    run_with_timeout(&mut cmd, std::time::Duration::from_secs(60)).assert_success();
}

#[track_caller]
fn assert_up_to_date(p: &Project, out: &RunOutput, name: &str) {
    let r = p.result(name);
    assert_status(&r, "success");
    assert!(
        message(&r).contains("up to date") && r["up_to_date_since"].is_string(),
        "{name} is reported up to date: {r:#}"
    );
    assert_eq!(count(&r, "rows_read"), 0, "{r:#}");
    assert_counts(&r, 0, 0, 0);
    assert!(
        sync_line(out, name).contains("OK sync") && sync_line(out, name).contains("up to date"),
        "{out}"
    );
}

#[track_caller]
fn assert_read(p: &Project, name: &str) -> serde_json::Value {
    let r = p.result(name);
    assert_status(&r, "success");
    assert!(
        r.get("up_to_date_since").is_none() && !message(&r).contains("up to date"),
        "{name} was read: {r:#}"
    );
    assert!(count(&r, "rows_read") > 0, "{name} read its rows: {r:#}");
    r
}

#[test]
fn an_unrebuilt_table_is_not_queried_and_a_view_is() {
    let p = Project::new();
    // churn_alerts becomes a view: it reads live data, so it is always queried.
    p.edit_file("models/marts/churn_alerts.sql", |sql| {
        format!("{{{{ config(materialized='view') }}}}\n{sql}")
    });
    p.dbt_build();
    let out = at(&p, DAY_1, &["run"]);
    out.assert_success();
    out.assert_contains("PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");

    // Any query of billing_usage now fails.
    duck_exec(&p, "drop table main.billing_usage");

    let out = at(&p, DAY_3, &["run"]);
    out.assert_success();
    out.assert_contains("PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
    out.assert_contains("4 up to date (not queried)");
    for name in [
        syncs::BILLING,
        syncs::LEADS,
        syncs::CHURN_RISK,
        syncs::HIGH_VALUE,
    ] {
        assert_up_to_date(&p, &out, name);
    }
    let message = message(&p.result(syncs::BILLING));
    assert!(
        message.contains("model billing_usage (table) was last built at")
            && message.contains("--full-refresh or --ignore-schedule"),
        "{message}"
    );
    // The view and the query sync were read.
    assert_read(&p, syncs::ALERTS);
    assert_read(&p, syncs::LEAD_SCORES);
    // The skip is recorded, with the time of the read it relies on.
    let history = p.read_file(".dbt-activate/ci/history.jsonl");
    let last_billing = history
        .lines()
        .rev()
        .find(|l| l.contains(syncs::BILLING))
        .expect("a history line for billing");
    assert!(
        last_billing.contains("\"up_to_date_since\"")
            && last_billing.contains("\"data_as_of\"")
            && last_billing.contains("\"definition_hash\""),
        "{last_billing}"
    );

    // `--full-refresh`, `--ignore-schedule` and `plan` query it, and fail on the dropped table.
    for args in [
        vec!["run", "--full-refresh"],
        vec!["run", "--ignore-schedule"],
        vec!["plan"],
    ] {
        let out = at(&p, DAY_5, &args);
        assert_ne!(out.code, 0, "{args:?} queried the dropped table: {out}");
        out.assert_contains("billing_usage");
    }
}

#[test]
fn a_rebuilt_model_a_changed_definition_and_a_reset_are_queried() {
    let p = Project::new();
    at(&p, DAY_1, &["run"]).assert_success();

    // churn_risk rebuilt by dbt after the sync: queried. (The other models are not in
    // this run_results.json, so the gate skips them.)
    let out = p.dbt(&["build", "--target", "ci", "--select", "churn_risk"]);
    out.assert_success();
    let out = at(&p, DAY_3, &["run", "--select", "churn_risk"]);
    out.assert_success();
    let r = assert_read(&p, syncs::CHURN_RISK);
    assert_eq!(count(&r, "inserted"), 0, "nothing changed: {r:#}");

    // Not rebuilt since: up to date.
    let out = at(&p, DAY_5, &["run", "--select", "churn_risk"]);
    out.assert_success();
    assert_up_to_date(&p, &out, syncs::CHURN_RISK);

    // Its destination changed in activate.yml: a new definition, queried and sent in full.
    p.replace_in_file(
        "activate.yml",
        r#"cs_tool:   {type: file, path: "synced/cs_tool", format: jsonl}"#,
        r#"cs_tool:   {type: file, path: "synced/cs_tool_v2", format: jsonl}"#,
    );
    let out = at(
        &p,
        "2026-03-08T10:00:30Z",
        &["run", "--select", "churn_risk"],
    );
    out.assert_success();
    let r = assert_read(&p, syncs::CHURN_RISK);
    assert_eq!(count(&r, "inserted"), count(&r, "rows_read"), "{r:#}");

    // The next run is up to date again; after `reset`, it reads and resends everything.
    let out = at(
        &p,
        "2026-03-10T10:00:30Z",
        &["run", "--select", "churn_risk"],
    );
    out.assert_success();
    assert_up_to_date(&p, &out, syncs::CHURN_RISK);
    p.activate(&["reset", "--target", "ci", "--select", "churn_risk"])
        .assert_success();
    let out = at(
        &p,
        "2026-03-12T10:00:30Z",
        &["run", "--select", "churn_risk"],
    );
    out.assert_success();
    let r = assert_read(&p, syncs::CHURN_RISK);
    assert_eq!(count(&r, "inserted"), count(&r, "rows_read"), "{r:#}");
}
