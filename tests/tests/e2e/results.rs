//! `target/activate_results.json` is a machine contract: every field of a real file is
//! documented in docs/results.md with its type, every documented required field is there,
//! and the version is the documented one.

use std::collections::BTreeMap;

use dbt_activate_e2e::{Project, repo_root, syncs};
use serde_json::Value;

/// A documented field: its type cell, and whether it may be absent.
struct Field {
    kind: String,
    optional: bool,
}

/// The fields of the table under `## <heading>` in docs/results.md.
fn documented(heading: &str) -> BTreeMap<String, Field> {
    let text = std::fs::read_to_string(repo_root().join("docs/results.md"))
        .expect("docs/results.md exists");
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/results.md has no section `## {heading}`"));
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    // The first table of the section: `| `field` | type | meaning |`.
    let mut fields = BTreeMap::new();
    let mut in_table = false;
    for line in section.lines() {
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        fields.insert(
            name,
            Field {
                kind: cells[2].to_owned(),
                optional: cells[2].contains("*optional*"),
            },
        );
    }
    assert!(!fields.is_empty(), "no fields documented under {heading}");
    fields
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

#[track_caller]
fn check(what: &str, object: &Value, docs: &BTreeMap<String, Field>) {
    let object = object
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object"));
    for (key, value) in object {
        let field = docs.get(key).unwrap_or_else(|| {
            panic!("{what}.{key} is written but not documented in docs/results.md")
        });
        let kind = json_kind(value);
        // An integer is also a number.
        let fits =
            field.kind.starts_with(kind) || (kind == "integer" && field.kind.starts_with("number"));
        assert!(
            fits,
            "{what}.{key} is a {kind}, documented as {}",
            field.kind
        );
    }
    for (key, field) in docs {
        assert!(
            field.optional || object.contains_key(key),
            "{what}.{key} is documented as always present but missing"
        );
    }
}

#[test]
fn the_results_file_matches_its_documented_schema() {
    let p = Project::new();
    // A rejected row (rejections), then a run where schedules skip syncs (next_due_at).
    p.pg.execute(
        r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_northwind CHECK ("Company" <> 'Northwind')"#,
    );
    let mut files = Vec::new();
    for now in ["2026-03-02T10:00:30Z", "2026-03-02T10:20:00Z"] {
        p.activate_cmd(&["run", "--target", "ci"])
            .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
            .env("DBT_ACTIVATE_NOW", now)
            .run()
            .assert_success();
        files.push(p.results_json());
    }
    assert_eq!(files[0]["results"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        files[0]["results"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == syncs::LEADS))
            .map(|r| r["status"].clone()),
        Some(Value::from("warn"))
    );
    assert!(
        files[1]["results"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["next_due_at"].is_string())),
        "the second run skips syncs not due"
    );

    let top = documented("Top level");
    let metadata = documented("`metadata`");
    let result = documented("`results[]`");
    let statuses = ["success", "warn", "error", "skipped"];
    for file in &files {
        check("(top level)", file, &top);
        check("metadata", &file["metadata"], &metadata);
        assert_eq!(file["metadata"]["results_schema_version"], 1);
        assert_eq!(file["metadata"]["command"], "run");
        for r in file["results"].as_array().expect("results") {
            check(&format!("results[{}]", r["name"]), r, &result);
            assert!(
                statuses.contains(&r["status"].as_str().unwrap_or("")),
                "{r}"
            );
            for rejection in r["rejections"].as_array().expect("rejections") {
                let keys: Vec<&String> = rejection.as_object().expect("an object").keys().collect();
                assert_eq!(keys, ["key", "reason"], "{rejection}");
                let key: Value = serde_json::from_str(rejection["key"].as_str().expect("a string"))
                    .expect("the key is a JSON array written as a string");
                assert!(key.is_array(), "{rejection}");
            }
        }
    }
}

#[test]
fn each_sync_splits_its_time_between_warehouse_destination_and_engine() {
    let p = Project::new();
    p.activate(&["run", "--target", "ci"]).assert_success();
    for r in p.results_json()["results"].as_array().expect("results") {
        let secs = |k: &str| {
            r[k].as_f64()
                .unwrap_or_else(|| panic!("{k} is a number: {r:#}"))
        };
        let (total, warehouse, destination, engine) = (
            secs("execution_time"),
            secs("warehouse_time"),
            secs("destination_time"),
            secs("engine_time"),
        );
        let sent = ["inserted", "updated", "deleted", "cleared", "rejected"]
            .iter()
            .filter_map(|k| r[*k].as_u64())
            .sum::<u64>();
        assert!(
            warehouse > 0.0 && engine >= 0.0 && (sent == 0 || destination > 0.0),
            "a sync spends time reading, and in the destination when it sends: {r:#}"
        );
        assert!(
            (warehouse + destination + engine - total).abs() < 1e-9,
            "the three parts add up to execution_time: {r:#}"
        );
    }
}
