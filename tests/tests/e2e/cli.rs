//! What the CLI prints, as insta snapshots (timings, timestamps and paths
//! normalised), and the read-only commands.

use dbt_activate_e2e::{Project, RunOutput, syncs};

use crate::common::*;

fn stdout(p: &Project, out: &RunOutput) -> String {
    normalised(p, &out.stdout)
}

/// The logs of a run (stderr).
fn logs(p: &Project, out: &RunOutput) -> String {
    normalised(p, &out.stderr)
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
    assert_eq!(out.stdout, "", "text logs go to stderr");
    snapshot!("run_first", logs(&p, &out));

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
    snapshot!("run_with_skip_and_rejection", logs(&p, &out));
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
fn json_log_format_prints_dbt_shaped_events_and_a_summary() {
    let p = Project::new();
    // A rejected row, so warnings and row events are in the log too.
    p.pg.execute(
        r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_northwind CHECK ("Company" <> 'Northwind')"#,
    );
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--log-format", "json"])
        .env("DBT_ACTIVATE_LOG", "info")
        .run();
    out.assert_success();
    // stderr: every line is one event with dbt's `info` fields and a `data` object.
    let events: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}\n{out}"))
        })
        .collect();
    assert!(events.len() >= 14, "{out}");
    let invocation = p.results_json()["metadata"]["invocation_id"].clone();
    for e in &events {
        let info = &e["info"];
        for field in [
            "ts",
            "level",
            "msg",
            "code",
            "name",
            "invocation_id",
            "pid",
            "thread",
        ] {
            assert!(!info[field].is_null(), "info.{field} missing in {e}");
        }
        assert!(e["data"].is_object(), "data is an object in {e}");
        assert_eq!(info["invocation_id"], invocation, "one invocation id: {e}");
        assert!(
            ["debug", "info", "warn", "error"].contains(&info["level"].as_str().unwrap_or("")),
            "{e}"
        );
        assert!(
            chrono_like(info["ts"].as_str().unwrap_or("")),
            "ts is an RFC 3339 UTC time: {e}"
        );
    }
    let by_code = |code: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["info"]["code"] == code)
            .collect()
    };
    assert_eq!(by_code("Q011").len(), 6, "one SyncStart per sync");
    let finished = by_code("Q012");
    assert_eq!(finished.len(), 6, "one SyncResult per sync");
    let leads = finished
        .iter()
        .find(|e| {
            e["data"]["node_info"]["unique_id"] == format!("sync.activate_example.{}", syncs::LEADS)
        })
        .expect("a SyncResult for the leads sync");
    assert_eq!(leads["info"]["level"], "warn");
    assert_eq!(leads["info"]["name"], "SyncResult");
    assert_eq!(leads["data"]["node_info"]["node_status"], "warn");
    assert_eq!(leads["data"]["node_info"]["resource_type"], "sync");
    assert_eq!(leads["data"]["result"]["rejected"], 1);
    assert_eq!(by_code("Q013").len(), 1, "one RowRejected event");
    let done = by_code("Z030");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["data"]["total"], 6);

    // stdout: exactly one line, the summary.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the summary on stdout\n{out}");
    let summary: serde_json::Value = serde_json::from_str(lines[0]).expect("the summary is JSON");
    assert_eq!(summary["command"], "run");
    assert_eq!(summary["status"], "success");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["invocation_id"], invocation);
    assert_eq!(
        [
            &summary["pass"],
            &summary["warn"],
            &summary["error"],
            &summary["skip"],
            &summary["total"]
        ],
        [5, 1, 0, 0, 6]
    );
    assert!(
        summary["results_path"]
            .as_str()
            .is_some_and(|p| p.ends_with("target/activate_results.json")),
        "{summary}"
    );
    assert!(
        !out.text().contains('\u{1b}'),
        "no colour when not on a terminal\n{out}"
    );

    // A fatal error: an error event on stderr, the summary with exit code 2 on stdout.
    let out = p.activate(&[
        "run",
        "--target",
        "ci",
        "--log-format",
        "json",
        "--select",
        "no_such_model",
    ]);
    out.assert_code(2);
    for line in out.stderr.lines() {
        let e: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON event ({err}): {line}\n{out}"));
        assert!(e["info"].is_object(), "{e}");
    }
    assert!(out.stderr.contains("\"FatalError\""), "{out}");
    let summary: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("the summary is JSON");
    assert_eq!(summary["status"], "error");
    assert_eq!(summary["exit_code"], 2);
    assert!(
        summary["message"]
            .as_str()
            .is_some_and(|m| m.contains("no_such_model")),
        "{summary}"
    );

    // Reports are events too, with their fields in `data`; the summary is last on stdout.
    let out = p.activate(&["ls", "--target", "ci", "--log-format", "json"]);
    out.assert_success();
    let rows: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .filter(|e: &serde_json::Value| e["data"]["sync"].is_string())
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    assert!(
        rows.iter().all(|r| r["data"]["next_due"].is_string()),
        "{out}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("the summary is JSON");
    assert_eq!(summary["command"], "ls");
}

/// `2026-03-02T10:20:00.123456Z`-like.
fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T'
}
