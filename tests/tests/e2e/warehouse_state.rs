//! `state: {type: warehouse}`: the sync state in tables of the warehouse, the diff as SQL
//! there. The same sequence of model changes runs once with local state and once with
//! warehouse state; after every step the destinations hold the same records and every count
//! in activate_results.json is the same.

use std::collections::BTreeMap;

use dbt_activate_e2e::{Project, RunOutput, syncs};
use serde_json::Value;

use crate::common::*;

pub(crate) const STATE_LINE: &str = "\nstate: {type: warehouse, schema: activate_state}\n";

/// Every count of every sync of the last run, with its status and rejected keys.
pub(crate) fn counts(p: &Project) -> BTreeMap<String, Value> {
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
pub(crate) fn synced(p: &Project) -> BTreeMap<String, Vec<String>> {
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
pub(crate) fn assert_same_step(step: &str, local: &Project, warehouse: &Project) {
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
pub(crate) fn change_models(p: &Project) {
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
pub(crate) fn remove_rows(p: &Project) {
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
    // Schedules read the warehouse history too (the file is opened read-only for that, then
    // read-write for the run): every sync ran a moment ago, so none is due.
    let scheduled = warehouse
        .activate_cmd(&["run"])
        .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
        .run();
    scheduled.assert_success();
    let skipped = warehouse
        .results()
        .values()
        .filter(|r| r["status"] == "skipped")
        .count();
    assert!(
        skipped >= 1,
        "syncs run a moment ago are not due\n{scheduled}"
    );
}

// ---- PostgreSQL: dbt-postgres builds the models; the state lives in the same server ----

use crate::postgres_source::{PASSWORD, PgLogin, route_crm_to_postgres};

/// A project on target `pg` (dbt-postgres into this test's database, crm to the test's
/// PostgreSQL destination), built; `warehouse_state` adds the `state:` line.
fn pg_project(warehouse_state: bool) -> (Project, PgLogin) {
    let p = Project::new();
    let login = PgLogin::create(&p);
    login.add_output(&p, "pg", &[], &[]);
    route_crm_to_postgres(&p);
    if warehouse_state {
        p.edit_file("activate.yml", |s| s + STATE_LINE);
    }
    login.dbt_build(&p, "pg");
    (p, login)
}

fn pg_dbt(p: &Project, login: &PgLogin, args: &[&str]) {
    let env = login.env(PASSWORD);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.dbt_with_env(&[args, &["--target", "pg"]].concat(), &env)
        .assert_success();
}

fn pg_run(p: &Project, login: &PgLogin, args: &[&str]) -> RunOutput {
    ran(login.activate(p, &[&["run", "--target", "pg"], args].concat(), PASSWORD))
}

/// What the PostgreSQL destination holds (crm."Lead"), sorted.
fn leads_delivered(p: &Project) -> Rows {
    p.pg_rows(
        r#"select "Email", "Company", "Lead_Score__c", "Features_Used__c"::text, "LeadSource"
           from crm."Lead" order by 1"#,
    )
}

#[track_caller]
fn assert_same_pg_step(step: &str, local: &Project, warehouse: &Project) {
    assert_same_step(step, local, warehouse);
    assert_eq!(
        leads_delivered(local),
        leads_delivered(warehouse),
        "{step}: crm.\"Lead\" differs (left: local state, right: warehouse state)"
    );
}

fn state_count(p: &Project, table: &str) -> i64 {
    p.pg_rows(&format!("select count(*) from activate_state.{table}"))[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("a count")
}

/// The same sequence (first run, unchanged rerun, edits with a new key, a NULL key and a row
/// the destination rejects, the rejection lifted, removals, a reset) with local state and
/// with the state in the PostgreSQL warehouse: the same records land and every count is
/// the same.
#[test]
fn postgres_warehouse_state_gives_the_results_of_local_state() {
    let (local, local_login) = pg_project(false);
    let (warehouse, warehouse_login) = pg_project(true);
    let both = [(&local, &local_login), (&warehouse, &warehouse_login)];

    for (p, login) in both {
        pg_run(p, login, &[]).assert_success();
    }
    assert_same_pg_step("first run", &local, &warehouse);
    assert_eq!(leads_delivered(&warehouse).len(), 30);
    assert_eq!(state_count(&warehouse, "activate_pending"), 0);
    assert!(state_count(&warehouse, "activate_snapshot") >= 30);
    assert_eq!(state_count(&warehouse, "activate_history"), 6);
    // Keys and hashes only: no secret, no mapped value but the key.
    let state_text = warehouse
        .pg_rows("select string_agg(s::text, ' ') from activate_state.activate_sync_state s");
    let state_text = state_text[0][0].clone().unwrap_or_default();
    assert!(!state_text.contains(PASSWORD), "{state_text}");
    assert!(!state_text.contains("password"), "{state_text}");

    for (p, login) in both {
        pg_run(p, login, &[]).assert_success();
    }
    assert_same_pg_step("unchanged rerun", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "unchanged"), 30);

    for (p, login) in both {
        change_models(p);
        p.edit_seed("leads", |s| {
            s + "reject.me@rejectco.io,RejectCo,Rex,Ject,US,2025-03-12 10:00:00\n"
        });
        p.pg.execute(
            r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_rejectco CHECK ("Company" <> 'RejectCo')"#,
        );
        pg_dbt(p, login, &["seed"]);
        pg_dbt(p, login, &["run"]);
        pg_run(p, login, &[]);
    }
    assert_same_pg_step(
        "changes, a new key, a NULL key, a destination rejection",
        &local,
        &warehouse,
    );
    let leads = warehouse.result(syncs::LEADS);
    assert_eq!(count(&leads, "rejected"), 2, "{leads:#}");

    for (p, login) in both {
        pg_run(p, login, &[]);
    }
    assert_same_pg_step("rerun: the rejected rows are retried", &local, &warehouse);

    for (p, login) in both {
        p.pg.execute(r#"ALTER TABLE crm."Lead" DROP CONSTRAINT no_rejectco"#);
        pg_run(p, login, &[]);
    }
    assert_same_pg_step("the destination accepts the row", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "inserted"), 1);

    for (p, login) in both {
        remove_rows(p);
        pg_dbt(p, login, &["seed"]);
        pg_dbt(p, login, &["run"]);
        pg_run(p, login, &[]);
    }
    assert_same_pg_step("removals", &local, &warehouse);

    for (p, login) in both {
        login
            .activate(
                p,
                &["reset", "--target", "pg", "--select", "high_value_at_risk"],
                PASSWORD,
            )
            .assert_success();
        pg_run(p, login, &["--full-refresh"]);
    }
    assert_same_pg_step("reset, then a full refresh", &local, &warehouse);
}

/// A destination that fails halfway: the state tables hold exactly the confirmed rows (in
/// activate_pending, not committed); the next run folds them in and sends only the rest,
/// as local state does with its journal.
#[test]
fn after_a_destination_failure_only_confirmed_rows_are_in_the_state() {
    let (local, local_login) = pg_project(false);
    let (warehouse, warehouse_login) = pg_project(true);
    let both = [(&local, &local_login), (&warehouse, &warehouse_login)];
    for (p, _) in both {
        p.replace_in_file(
            "activate.yml",
            "\n  pg:\n    destinations:\n",
            &format!(
                "\n  pg:\n    destinations:\n      alerts: {{type: webhook, url: \"{}\", batch_size: 2, max_retries: 0}}\n",
                p.webhook.url()
            ),
        );
        // Two batches are confirmed, then the receiver fails.
        p.webhook.respond_with(|n, _| {
            if n < 2 {
                dbt_activate_e2e::Reply::ok()
            } else {
                dbt_activate_e2e::Reply::status(500)
            }
        });
    }
    for (p, login) in both {
        let out = pg_run(p, login, &["--select", "churn_alerts"]);
        assert_eq!(out.code, 1, "the sync fails\n{out}");
    }
    assert_same_step("a failure after two batches", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::ALERTS), "inserted"), 4);
    assert_eq!(state_count(&warehouse, "activate_pending"), 4);
    assert_eq!(state_count(&warehouse, "activate_snapshot"), 0);

    for (p, login) in both {
        p.webhook.respond_with(|_, _| dbt_activate_e2e::Reply::ok());
        pg_run(p, login, &["--select", "churn_alerts"]).assert_success();
    }
    assert_same_step("the next run", &local, &warehouse);
    let alerts = warehouse.result(syncs::ALERTS);
    assert_eq!(
        count(&alerts, "inserted"),
        3,
        "only the rest is sent: {alerts:#}"
    );
    assert_eq!(count(&alerts, "unchanged"), 4, "{alerts:#}");
    assert_eq!(state_count(&warehouse, "activate_pending"), 0);
    assert_eq!(state_count(&warehouse, "activate_snapshot"), 7);
}

/// One run at a time: a session holding the advisory lock makes a second run stop with
/// exit code 2, naming the schema and the holder, before anything is sent.
#[test]
fn a_second_run_is_refused_by_the_advisory_lock() {
    let (p, login) = pg_project(true);
    pg_run(&p, &login, &[]).assert_success();
    let sent = leads_delivered(&p);
    // Another session takes the lock dbt-activate takes, and keeps it while the run starts.
    let holder = std::process::Command::new(dbt_activate_e2e::python())
        .arg("-c")
        .arg(
            "import sys, time, psycopg2\n\
             c = psycopg2.connect(sys.argv[1]); c.autocommit = True\n\
             cur = c.cursor(); cur.execute(sys.argv[2]); print(cur.fetchone()[0], flush=True)\n\
             time.sleep(30)\n",
        )
        .arg(p.pg.url())
        .arg(lock_sql("activate_state"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut holder = KillOnDrop(holder);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.0.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("the holder's answer");
    assert_eq!(line.trim(), "True", "the other session took the lock");
    p.edit_seed("leads", |s| {
        s + "zoe.new@newco.io,NewCo,Zoe,New,US,2025-03-10 10:00:00\n"
    });
    pg_dbt(&p, &login, &["build"]);
    let out = login.activate(&p, &["run", "--target", "pg"], PASSWORD);
    out.assert_code(2);
    out.assert_contains(
        "another dbt-activate run holds the warehouse state lock of schema `activate_state`",
    );
    out.assert_contains("advisory lock");
    assert!(!out.text().contains(PASSWORD), "{out}");
    assert_eq!(leads_delivered(&p), sent, "nothing was sent");
    drop(holder);
    pg_run(&p, &login, &[]).assert_success();
    assert_eq!(count(&p.result(syncs::LEADS), "inserted"), 1);
}

/// The lock dbt-activate takes for a state schema (keep in step with
/// warehouse/postgres/state.rs: class 0x64746173, the schema's xxh3 as an int4).
fn lock_sql(schema: &str) -> String {
    let key = xxhash_rust::xxh3::xxh3_64(schema.as_bytes()) as u32 as i32;
    format!("select pg_try_advisory_lock({}, {key})", 0x6474_6173)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bad `state:` values stop every command with exit code 2, naming activate.yml, the key
/// and the fix; nothing is sent.
#[test]
fn bad_state_config_is_refused_with_the_key_and_the_fix() {
    let p = Project::new();
    let cases = [
        (
            "state: {type: warehose, schema: s}",
            "activate.yml: state.type `warehose` is not a kind of state",
            "did you mean `warehouse`",
        ),
        (
            "state: {type: warehouse}",
            "state.type is `warehouse` but state.schema is missing",
            "state: {type: warehouse, schema: activate_state}",
        ),
        (
            "state: {type: warehouse, schema: \"x; drop table y\"}",
            "state.schema `x; drop table y` is not a plain schema name",
            "letters, digits and `_`",
        ),
        (
            "state: {type: warehouse, schema: s, dir: x}",
            "state: unknown key `dir`",
            "`state` takes: type, schema",
        ),
    ];
    let original = p.read_file("activate.yml");
    for (line, what, fix) in cases {
        p.write_file("activate.yml", &format!("{original}\n{line}\n"));
        for command in [&["run"][..], &["plan"], &["ls"]] {
            let out = p.activate(command);
            out.assert_code(2);
            out.assert_contains(what);
            out.assert_contains(fix);
        }
        assert!(p.synced_files().is_empty(), "nothing was sent");
    }
}
