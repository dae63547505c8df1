//! BigQuery as the source, through `gcp-bigquery-client` pointed at a loopback server by the
//! profile's `api_endpoint`: crucible-emulator (started by scripts/crucible.sh, sourced by
//! scripts/test.sh) for real SQL, and a small server written from Google's REST reference
//! (jobs.query, jobs.getQueryResults) for what the emulator does not do: a job that is not
//! complete at first, results over several pages, an error response.
//!
//! dbt-bigquery is not installed here (it would be a second large venv); the tables are created
//! in the emulator through its REST API (jobs.query with CREATE statements) instead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dbt_activate_e2e::{HttpServer, Project, Reply, RunOutput, unique_suffix};
use serde_json::{Value, json};

use crate::common::*;

fn crucible_port() -> u16 {
    std::env::var("ACTIVATE_TEST_BIGQUERY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect(
            "ACTIVATE_TEST_BIGQUERY_PORT is not set: run the tests through scripts/test.sh, \
             which starts crucible-emulator (scripts/crucible.sh)",
        )
}

/// POSTs a query to the emulator's jobs.query and returns the response.
fn emulator_query(port: u16, sql: &str) -> Value {
    let body = json!({"query": sql, "useLegacySql": false}).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to crucible");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "POST /bigquery/v2/projects/local-project/queries HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{sql}\n{response}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn bigquery_profile(endpoint: &str, dataset: &str) -> String {
    format!(
        "activate_example:\n  target: dev\n  outputs:\n    dev:\n      type: bigquery\n      \
         method: oauth\n      project: local-project\n      dataset: {dataset}\n      \
         location: US\n      api_endpoint: \"{endpoint}\"\n      threads: 1\n"
    )
}

/// A query sync over a table of the emulator, to the `sales` file destination. dbt did not
/// build that table (dbt-bigquery is not run here), so the sync is gated on a model of the
/// example through a `ref()` that renders nothing.
fn add_query_sync(p: &Project, sql: &str) {
    let sql = format!("{{% set gate = ref('stg_leads') %}}{sql}");
    p.edit_file("activate.yml", |s| {
        s.replace(
            "syncs:\n",
            &format!(
                "syncs:\n  bq_rows:\n    query: \"{sql}\"\n    destination: sales\n    object: bq_rows\n    \
                 sync_mode: incremental\n    primary_key: id\n"
            ),
        )
    });
}

fn run_bq_sync(p: &Project) -> RunOutput {
    p.activate(&["run", "--select", "bq_rows"])
}

#[test]
fn crucible_rows_land_with_their_types() {
    let port = crucible_port();
    let dataset = format!("e2e_{}", unique_suffix());
    emulator_query(port, &format!("CREATE SCHEMA {dataset}"));
    emulator_query(
        port,
        &format!(
            "CREATE TABLE {dataset}.typed AS \
             SELECT 1 AS id, NUMERIC '1250.50' AS amount, 1.5 AS ratio, true AS active, \"x'y\" AS name, \
             DATE '2024-02-29' AS day, DATETIME '2024-01-01 10:00:00.5' AS local_time, \
             TIMESTAMP '2024-01-01 10:00:00+02' AS happened_at, ['a', 'b'] AS tags, STRUCT(1 AS n, 'z' AS s) AS rec, \
             CAST(NULL AS STRING) AS missing \
             UNION ALL SELECT 2, NUMERIC '-0.01', -2.25, false, 'b', DATE '2025-01-01', \
             DATETIME '2025-01-01 00:00:00', TIMESTAMP '2025-01-01 00:00:00+00', [], STRUCT(2, 'w'), 'present'"
        ),
    );
    let p = Project::new();
    p.write_file(
        "profiles.yml",
        &bigquery_profile(&format!("http://127.0.0.1:{port}"), &dataset),
    );
    add_query_sync(
        &p,
        &format!("select * from `local-project`.{dataset}.typed"),
    );
    let out = run_bq_sync(&p);
    out.assert_success();
    out.assert_contains("warehouse bigquery");
    let mut rows = p.synced_jsonl("sales", "bq_rows");
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "amount": 1250.5, "ratio": 1.5, "active": true, "name": "x'y",
                "day": "2024-02-29", "local_time": "2024-01-01T10:00:00.500000",
                "happened_at": "2024-01-01T08:00:00.000000Z", "tags": ["a", "b"],
                "rec": {"n": 1, "s": "z"}, "missing": null}),
            json!({"id": 2, "amount": -0.01, "ratio": -2.25, "active": false, "name": "b",
                "day": "2025-01-01", "local_time": "2025-01-01T00:00:00.000000",
                "happened_at": "2025-01-01T00:00:00.000000Z", "tags": [],
                "rec": {"n": 2, "s": "w"}, "missing": "present"}),
        ]
    );
    // the exact decimal digits reach the file (not a float's)
    assert!(
        p.read_file("synced/sales/bq_rows.jsonl")
            .contains("\"amount\":1250.5"),
        "{}",
        p.read_file("synced/sales/bq_rows.jsonl")
    );
}

/// The query response shapes of Google's REST reference for jobs.query and
/// jobs.getQueryResults, for a 5-row result served 2 rows a page after the job first reports
/// `jobComplete: false`.
fn paging_responder() -> impl FnMut(usize, &dbt_activate_e2e::Request) -> Reply + Send + 'static {
    let schema = json!({"fields": [
        {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "email", "type": "STRING", "mode": "NULLABLE"}]});
    let job = json!({"projectId": "local-project", "jobId": "job_paging", "location": "US"});
    let page = |ids: &[i64]| -> Value {
        Value::Array(
            ids.iter()
                .map(|i| json!({"f": [{"v": i.to_string()}, {"v": format!("u{i}@example.org")}]}))
                .collect(),
        )
    };
    let mut results_calls = 0;
    move |_, request| {
        let reply = |v: Value| {
            Reply::ok()
                .header("content-type", "application/json")
                .body(&v.to_string())
        };
        if request.method == "POST" {
            let sql = request.json()["query"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if sql.contains("LIMIT 0") || sql == "SELECT 1" {
                return reply(
                    json!({"kind": "bigquery#queryResponse", "jobComplete": true,
                    "jobReference": job, "schema": schema, "totalRows": "0"}),
                );
            }
            return reply(
                json!({"kind": "bigquery#queryResponse", "jobComplete": false,
                "jobReference": job}),
            );
        }
        results_calls += 1;
        let token = request
            .path
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("pageToken="))
            .map(str::to_owned);
        match (results_calls, token.as_deref()) {
            (1, None) => reply(json!({"kind": "bigquery#getQueryResultsResponse",
                "jobComplete": false, "jobReference": job})),
            (_, None) => reply(json!({"kind": "bigquery#getQueryResultsResponse",
                "jobComplete": true, "jobReference": job, "schema": schema, "totalRows": "5",
                "rows": page(&[1, 2]), "pageToken": "p2"})),
            (_, Some("p2")) => reply(json!({"kind": "bigquery#getQueryResultsResponse",
                "jobComplete": true, "jobReference": job, "schema": schema, "totalRows": "5",
                "rows": page(&[3, 4]), "pageToken": "p3"})),
            (_, Some("p3")) => reply(json!({"kind": "bigquery#getQueryResultsResponse",
                "jobComplete": true, "jobReference": job, "schema": schema, "totalRows": "5",
                "rows": page(&[5])})),
            (_, Some(other)) => Reply::status(400).body(&format!("unknown page token {other}")),
        }
    }
}

#[test]
fn a_job_not_complete_at_first_and_several_pages_are_all_read() {
    let server = HttpServer::start();
    server.respond_with(paging_responder());
    let endpoint = server.url().trim_end_matches("/hooks/activate").to_owned();
    let p = Project::new();
    p.write_file("profiles.yml", &bigquery_profile(&endpoint, "paging"));
    add_query_sync(&p, "select id, email from `local-project`.paging.users");
    let out = run_bq_sync(&p);
    out.assert_success();
    let mut ids: Vec<i64> = p
        .synced_jsonl("sales", "bq_rows")
        .iter()
        .map(|r| r["id"].as_i64().expect("an integer id"))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    let pages: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        pages.len(),
        4,
        "not complete, page 1, page 2, page 3: {pages:?}"
    );
    assert!(
        pages
            .iter()
            .all(|p| p.contains("/projects/local-project/queries/job_paging"))
    );
    assert!(
        pages[2].contains("pageToken=p2") && pages[3].contains("pageToken=p3"),
        "{pages:?}"
    );
}

#[test]
fn an_error_response_names_the_profile_and_sends_nothing() {
    let server = HttpServer::start();
    server.respond_with(|_, _| {
        Reply::status(403).header("content-type", "application/json").body(
            r#"{"error":{"code":403,"message":"Access Denied: Project local-project: User does not have bigquery.jobs.create permission in project local-project.","errors":[{"message":"Access Denied","domain":"global","reason":"accessDenied"}],"status":"PERMISSION_DENIED"}}"#,
        )
    });
    let endpoint = server.url().trim_end_matches("/hooks/activate").to_owned();
    let p = Project::new();
    p.write_file("profiles.yml", &bigquery_profile(&endpoint, "denied"));
    add_query_sync(&p, "select 1 as id");
    let out = run_bq_sync(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `dev`",
            "Access Denied",
            "403",
            "PERMISSION_DENIED",
        ],
    );
}

#[test]
fn missing_keyfile_names_the_profile_and_the_key() {
    let p = Project::new();
    p.write_file(
        "profiles.yml",
        "activate_example:\n  target: dev\n  outputs:\n    dev:\n      type: bigquery\n      \
         method: service-account\n      project: p\n      dataset: d\n",
    );
    let out = p.activate(&["run"]);
    assert_config_error(
        &p,
        &out,
        &["profile `activate_example` target `dev`", "`keyfile:`"],
    );
}

/// A table dropped since dbt built it: the sync's probe fails, naming the sync and the table,
/// and nothing is sent.
#[test]
fn a_dropped_table_is_named_and_nothing_is_sent() {
    let port = crucible_port();
    let dataset = format!("e2e_{}", unique_suffix());
    emulator_query(port, &format!("CREATE SCHEMA {dataset}"));
    emulator_query(
        port,
        &format!("CREATE TABLE {dataset}.gone AS SELECT 1 AS id"),
    );
    emulator_query(port, &format!("DROP TABLE {dataset}.gone"));
    let p = Project::new();
    p.write_file(
        "profiles.yml",
        &bigquery_profile(&format!("http://127.0.0.1:{port}"), &dataset),
    );
    add_query_sync(&p, &format!("select * from `local-project`.{dataset}.gone"));
    let out = run_bq_sync(&p);
    assert_config_error(&p, &out, &["bq_rows", "gone"]);
}

/// An `api_endpoint` where nothing listens: one clear error naming the profile, in bounded
/// time, nothing sent.
#[test]
fn an_unreachable_endpoint_is_one_clear_error_in_bounded_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let p = Project::new();
    p.write_file(
        "profiles.yml",
        &bigquery_profile(&format!("http://127.0.0.1:{port}"), "unreachable"),
    );
    add_query_sync(&p, "select 1 as id");
    let started = std::time::Instant::now();
    let out = run_bq_sync(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `dev`",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        started.elapsed()
    );
}

/// The `people` table of `dataset`, created again from `rows` (each a `SELECT` of one row).
/// The emulator has no UPDATE or DELETE: each change of the model is a new table, as
/// `dbt build` makes one.
fn replace_people(port: u16, dataset: &str, rows: &[String]) {
    emulator_query(
        port,
        &format!(
            "CREATE OR REPLACE TABLE {dataset}.people AS {}",
            rows.join(" UNION ALL ")
        ),
    );
}

/// Two query syncs over `people`: a mirror keyed by `id` and an incremental one keyed by
/// `(region, id)` with an `updated_at` cursor.
fn add_people_syncs(p: &Project, dataset: &str) {
    let from = format!(
        "{{% set gate = ref('stg_leads') %}}select * from `local-project`.{dataset}.people"
    );
    p.edit_file("activate.yml", |s| {
        s.replace(
            "syncs:\n",
            &format!(
                "syncs:\n  bq_mirror:\n    query: \"{from}\"\n    destination: sales\n    object: bq_mirror\n    \
                 sync_mode: mirror\n    primary_key: id\n  \
                 bq_incremental:\n    query: \"{from}\"\n    destination: sales\n    object: bq_incremental\n    \
                 sync_mode: incremental\n    cursor: updated_at\n    primary_key: [region, id]\n"
            ),
        )
    });
}

fn people_run(p: &Project) -> RunOutput {
    let out = p.activate(&["run", "--select", "bq_mirror", "bq_incremental"]);
    assert!(
        out.code == 0 || out.code == 1,
        "the run must not be refused\n{out}"
    );
    assert!(!out.text().contains("panicked"), "{out}");
    out
}

/// `state: {type: warehouse}` in BigQuery (crucible-emulator): the same tables synced with
/// local state and with the state in the emulator; after a first run, an unchanged rerun,
/// changed/new/NULL-key rows and a removal, the destinations hold the same records and every
/// count is the same. A lock left by a killed run refuses the next run, `history` reads the
/// state tables, and `reset` makes the next run a first run.
#[test]
fn bigquery_warehouse_state_gives_the_results_of_local_state() {
    use crate::warehouse_state::{assert_same_step, counts};
    let port = crucible_port();
    let suffix = unique_suffix();
    let dataset = format!("e2e_{suffix}");
    let state = format!("state_{suffix}");
    emulator_query(port, &format!("CREATE SCHEMA {dataset}"));
    let t = |s: &str| format!("TIMESTAMP '{s}'");
    let (jan, feb, mar) = (
        t("2024-01-01 00:00:00+00"),
        t("2024-02-01 00:00:00+00"),
        t("2024-03-01 00:00:00+00"),
    );
    let row = |id: &str, region: &str, email: &str, score: &str, at: &str| {
        format!(
            "SELECT {id} AS id, '{region}' AS region, '{email}' AS email, {score} AS score, \
             {at} AS updated_at"
        )
    };
    let first: Vec<String> = vec![
        row("1", "eu", "ada@example.org", "0.5", &jan),
        row("2", "eu", "o\\'neil\\\\x@example.org", "0.25", &jan),
        row("3", "us", "cy@example.org", "0.75", &jan),
        row("4", "us", "di@example.org", "1.5", &jan),
        row("5", "eu", "ed@example.org", "2.0", &jan),
    ];
    replace_people(port, &dataset, &first);

    let endpoint = format!("http://127.0.0.1:{port}");
    let local = Project::new();
    let warehouse = Project::new();
    for p in [&local, &warehouse] {
        p.write_file("profiles.yml", &bigquery_profile(&endpoint, &dataset));
        add_people_syncs(p, &dataset);
    }
    warehouse.edit_file("activate.yml", |s| {
        s + &format!("\nstate: {{type: warehouse, schema: {state}}}\n")
    });

    for p in [&local, &warehouse] {
        people_run(p).assert_success();
    }
    assert_same_step("first run", &local, &warehouse);
    assert_eq!(counts(&warehouse)["bq_mirror"]["inserted"], 5);
    assert!(
        !warehouse.file(".dbt-activate").join("dev").exists(),
        "warehouse state writes no local state"
    );
    let snapshot = emulator_query(
        port,
        &format!("SELECT count(*) FROM {state}.activate_snapshot"),
    );
    assert_eq!(snapshot["rows"][0]["f"][0]["v"], "10", "{snapshot}");

    for p in [&local, &warehouse] {
        people_run(p).assert_success();
    }
    assert_same_step("unchanged rerun", &local, &warehouse);
    assert_eq!(counts(&warehouse)["bq_mirror"]["unchanged"], 5);
    assert_eq!(counts(&warehouse)["bq_mirror"]["inserted"], 0);

    // 2 changed and moved past the cursor, 4 changed without moving it, 3 removed, 6 new,
    // and a NULL key.
    let second: Vec<String> = vec![
        row("1", "eu", "ada@example.org", "0.5", &jan),
        row("2", "eu", "o\\'neil\\\\x@example.org", "0.9", &feb),
        row("4", "us", "di@example.org", "3.5", &jan),
        row("5", "eu", "ed@example.org", "2.0", &jan),
        row("6", "us", "fy@example.org", "0.1", &mar),
        row(
            "CAST(NULL AS INT64)",
            "eu",
            "nokey@example.org",
            "0.0",
            &mar,
        ),
    ];
    replace_people(port, &dataset, &second);
    for p in [&local, &warehouse] {
        people_run(p);
    }
    assert_same_step(
        "changes, a removal, a new key and a NULL key",
        &local,
        &warehouse,
    );
    let mirror = &counts(&warehouse)["bq_mirror"];
    assert_eq!(
        (
            &mirror["inserted"],
            &mirror["updated"],
            &mirror["deleted"],
            &mirror["rejected"]
        ),
        (&json!(1), &json!(2), &json!(1), &json!(1)),
        "{mirror}"
    );

    // A lock left by a killed run refuses the next one, naming how to clear it.
    let lock = format!("{state}.activate_lock");
    emulator_query(
        port,
        &format!(
            "MERGE {lock} AS l USING (SELECT 'process 1 since yesterday, run killed' AS h) AS n \
             ON TRUE WHEN MATCHED THEN UPDATE SET holder = n.h"
        ),
    );
    let refused = warehouse.activate(&["run", "--select", "bq_mirror"]);
    refused.assert_code(2);
    for needle in [
        &format!("holds the warehouse state lock of dataset `{state}`"),
        "run killed",
        "SET holder = NULL",
    ] {
        refused.assert_contains(needle);
    }
    emulator_query(
        port,
        &format!(
            "MERGE {lock} AS l USING (SELECT 1 AS one) AS n ON TRUE \
             WHEN MATCHED THEN UPDATE SET holder = CAST(NULL AS STRING)"
        ),
    );

    let history = warehouse.activate(&["history", "--select", "bq_mirror"]);
    history.assert_success();
    history.assert_contains("3 runs of 1 sync");

    for p in [&local, &warehouse] {
        p.activate(&["reset", "--select", "bq_mirror"])
            .assert_success();
        people_run(p);
    }
    assert_same_step("after a reset", &local, &warehouse);
    assert_eq!(counts(&warehouse)["bq_mirror"]["unchanged"], 0);
}
