//! `state: {type: warehouse}`: the sync state in tables of the warehouse, the diff as SQL
//! there. The same sequence of model changes runs once with local state and once with
//! warehouse state; after every step the destinations hold the same records and every count
//! in activate_results.json is the same.

use std::collections::BTreeMap;

use dbt_activate_e2e::{Project, RunOutput, syncs};
use serde_json::Value;

use crate::common::*;

const STATE_LINE: &str = "\nstate: {type: warehouse, schema: activate_state}\n";

/// Every count of every sync of the last run, with its status and rejected keys.
fn counts(p: &Project) -> BTreeMap<String, Value> {
    p.results()
        .into_iter()
        .map(|(name, r)| {
            let mut rejected: Vec<String> = r["rejections"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x["key"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            rejected.sort();
            let mut picked = serde_json::Map::new();
            for k in [
                "status",
                "rows_read",
                "inserted",
                "updated",
                "deleted",
                "cleared",
                "unchanged",
                "rejected",
                "skipped_rows",
            ] {
                picked.insert(k.to_owned(), r[k].clone());
            }
            picked.insert("rejected_keys".into(), Value::from(rejected));
            (name, Value::Object(picked))
        })
        .collect()
}

/// Every file under synced/, its lines sorted (request order may differ: what the
/// destination holds may not), without the time a delete was written.
fn synced(p: &Project) -> BTreeMap<String, Vec<String>> {
    p.synced_files()
        .into_iter()
        .map(|f| {
            let text = p.read_file(&format!("synced/{f}"));
            let mut lines: Vec<String> = text
                .lines()
                .map(|l| match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(mut o)) => {
                        o.remove("deleted_at");
                        Value::Object(o).to_string()
                    }
                    _ => l.to_owned(),
                })
                .collect();
            lines.sort();
            (f, lines)
        })
        .collect()
}

#[track_caller]
fn assert_same_step(step: &str, local: &Project, warehouse: &Project) {
    assert_eq!(
        counts(local),
        counts(warehouse),
        "{step}: the counts differ (left: local state, right: warehouse state)"
    );
    let (local, warehouse) = (synced(local), synced(warehouse));
    assert_eq!(
        local.keys().collect::<Vec<_>>(),
        warehouse.keys().collect::<Vec<_>>(),
        "{step}: different files under synced/"
    );
    for (file, lines) in &local {
        assert_eq!(
            lines, &warehouse[file],
            "{step}: synced/{file} differs (left: local state, right: warehouse state)"
        );
    }
}

#[track_caller]
fn ran(out: RunOutput) -> RunOutput {
    assert!(
        out.code == 0 || out.code == 1,
        "the run must not be refused\n{out}"
    );
    assert!(!out.text().contains("panicked"), "{out}");
    out
}

/// Edits that change, add, reject (a NULL key) and remove rows of several models.
fn change_models(p: &Project) {
    p.edit_seed("product_usage", |s| {
        s.replace(
            "noah.schmidt@kaufwerk.de,97,",
            "noah.schmidt@kaufwerk.de,40,",
        )
        .replace(
            "ava.martin@northwind.io,182,",
            "ava.martin@northwind.io,190,",
        )
    });
    p.edit_seed("leads", |s| {
        s + "zoe.new@newco.io,NewCo,Zoe,New,US,2025-03-10 10:00:00\n"
            + ",NoMail,Nora,Null,US,2025-03-11 10:00:00\n"
    });
    p.edit_seed("accounts", |s| {
        let s: String = s
            .lines()
            .filter(|l| !l.starts_with("acc_020,"))
            .map(|l| format!("{l}\n"))
            .collect();
        s.replace(",5342.50,", ",5400.00,")
            + "acc_031,Wayne Enterprises,bruce.hart@example-saas.com,enterprise,4200.00,10,50,9\n"
    });
}

/// Removes leads and accounts (mirror deletes), and brings acc_020 back.
fn remove_rows(p: &Project) {
    p.edit_seed("leads", |s| {
        s.lines()
            .filter(|l| !l.starts_with("liam.chen@") && !l.starts_with(",NoMail"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    p.edit_seed("accounts", |s| {
        s.lines()
            .filter(|l| !l.starts_with("acc_031,") && !l.starts_with("acc_002,"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + "acc_020,Massive Dynamic,nina.park@example-saas.com,enterprise,5100.00,12,35,6\n"
    });
}

/// `dbt seed` and `dbt run`: the models are rebuilt without their tests (a NULL key would
/// fail `not_null` and keep the model from syncing; the engine's own rejection is tested).
fn rebuild_without_tests(p: &Project, target: &[&str]) {
    p.dbt(&[&["seed"], target].concat()).assert_success();
    p.dbt(&[&["run"], target].concat()).assert_success();
}

/// DuckDB keeps the state in the file dbt-duckdb builds (opened read-write for the run).
#[test]
fn duckdb_warehouse_state_gives_the_results_of_local_state() {
    let local = Project::new();
    let warehouse = Project::new();
    warehouse.edit_file("activate.yml", |s| s + STATE_LINE);
    let run = |p: &Project| ran(p.activate(&["run"]));

    for p in [&local, &warehouse] {
        run(p).assert_success();
    }
    assert_same_step("first run", &local, &warehouse);
    let tables = warehouse.duck(
        "select table_name from information_schema.tables where table_schema = 'activate_state' order by 1",
    );
    assert_eq!(
        tables.concat(),
        [
            "activate_history",
            "activate_pending",
            "activate_snapshot",
            "activate_sync_state"
        ]
        .map(|s| Some(s.to_owned()))
        .to_vec()
    );
    assert!(
        !warehouse.file(".dbt-activate").join("dev").exists(),
        "warehouse state writes no local state"
    );

    for p in [&local, &warehouse] {
        run(p).assert_success();
    }
    assert_same_step("unchanged rerun", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "unchanged"), 30);

    for p in [&local, &warehouse] {
        change_models(p);
        rebuild_without_tests(p, &[]);
        run(p);
    }
    assert_same_step("changes, a new key and a NULL key", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "rejected"), 1);

    for p in [&local, &warehouse] {
        remove_rows(p);
        rebuild_without_tests(p, &[]);
        run(p);
    }
    assert_same_step("removals", &local, &warehouse);
    assert!(count(&warehouse.result(syncs::HIGH_VALUE), "deleted") >= 1);

    for p in [&local, &warehouse] {
        p.activate(&["reset", "--select", "enriched_leads"])
            .assert_success();
        run(p);
    }
    assert_same_step("after a reset", &local, &warehouse);

    // ls and history read the warehouse's activate_history.
    let history = warehouse.activate(&["history", "--select", "enriched_leads"]);
    history.assert_success();
    assert!(history.text().contains("5 runs of 1 sync"), "{history}");
    let ls = warehouse.activate(&["ls"]);
    ls.assert_success();
    assert!(!ls.text().contains("never"), "{ls}");
}
