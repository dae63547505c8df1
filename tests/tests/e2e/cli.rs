//! What the CLI prints, as insta snapshots (timings, timestamps and paths
//! normalised), and the read-only commands.

use dbt_activate_e2e::{Project, RunOutput, syncs};

use crate::common::*;

fn stdout(p: &Project, out: &RunOutput) -> String {
    normalised(p, &out.stdout)
}

#[test]
fn ls_lists_every_activation() {
    let p = Project::new();
    let out = p.activate(&["ls", "--target", "ci"]);
    out.assert_success();
    for name in syncs::ALL {
        out.assert_contains(name);
    }
    snapshot!("ls_before_any_run", stdout(&p, &out));
    assert_nothing_sent(&p);

    p.activate(&["run", "--target", "ci"]).assert_success();
    let out = p.activate(&["ls", "--target", "ci"]);
    out.assert_success();
    snapshot!("ls_after_a_run", stdout(&p, &out));
}

#[test]
fn run_prints_one_line_per_sync_and_a_summary() {
    let p = Project::new();
    let out = p.activate(&["run", "--target", "ci", "--threads", "1"]);
    out.assert_success();
    snapshot!("run_first", stdout(&p, &out));

    // A model that failed in dbt (edited into run_results.json) and a rejected row.
    let mut run_results: serde_json::Value =
        serde_json::from_str(&p.read_file("target/run_results.json"))
            .expect("run_results.json is JSON");
    for r in run_results["results"].as_array_mut().expect("results") {
        if r["unique_id"] == "model.activate_example.high_value_at_risk" {
            r["status"] = "error".into();
            r["message"] = "Runtime Error: boom".into();
        }
    }
    p.write_file("target/run_results.json", &run_results.to_string());
    p.pg.execute(
        r#"UPDATE crm."Lead" SET "Company" = 'Old' WHERE "Email" = 'ava.martin@northwind.io'"#,
    );
    p.activate(&["reset", "--target", "ci", "--select", "enriched_leads"])
        .assert_success();
    p.pg.execute(
        r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_northwind CHECK ("Company" <> 'Northwind')"#,
    );
    let out = p.activate(&["run", "--target", "ci", "--threads", "1"]);
    out.assert_success();
    snapshot!("run_with_skip_and_rejection", stdout(&p, &out));
}

#[test]
fn configuration_errors_are_reported_together() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "          sync_mode: incremental          # no cursor",
        "          sync_mod: incremental          # no cursor",
    );
    p.replace_in_file(
        "models/marts/schema.yml",
        "destination: cs_tool\n",
        "destination: cs_tol\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    let out = p.activate(&["run", "--target", "ci"]);
    assert_config_error(&p, &out, &["sync_mod", "cs_tol"]);
    snapshot!("config_errors", normalised(&p, &out.text()));
}

#[test]
fn validate_and_debug_pass_on_the_example() {
    let p = Project::new();
    p.activate(&["validate", "--target", "ci"]).assert_success();
    let out = p.activate(&["debug", "--target", "ci"]);
    out.assert_success();
    for dest in ["crm", "cs_tool", "marketing", "billing", "alerts"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(dest) || l.contains(&format!("{dest}:"))),
            "debug checks {dest}\n{out}"
        );
    }
    // A reachability check (HEAD) at most: no records are sent.
    assert!(
        p.webhook.requests().iter().all(|r| r.method == "HEAD"),
        "{:?}",
        p.webhook.requests()
    );
    assert_nothing_sent(&p);
}

#[test]
fn json_log_format_prints_one_object_per_line() {
    let p = Project::new();
    let out = p.activate(&["run", "--target", "ci", "--log-format", "json"]);
    out.assert_success();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "{out}");
    for line in lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON object: {line}\n{out}"
        );
    }
}
