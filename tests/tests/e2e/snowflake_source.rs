//! Snowflake as the source: a real `dbt build` with dbt-snowflake against fakesnow's server
//! (started on loopback by scripts/fakesnow.sh, sourced by scripts/test.sh), then
//! `dbt-activate run` reading it through Snowflake's HTTP protocol.

use std::path::PathBuf;
use std::process::Command;

use dbt_activate_e2e::{
    HttpServer, Project, Reply, RunOutput, run_with_timeout, syncs, unique_suffix,
};

use crate::common::*;

fn fakesnow_port() -> u16 {
    std::env::var("ACTIVATE_TEST_FAKESNOW_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect(
            "ACTIVATE_TEST_FAKESNOW_PORT is not set: run the tests through scripts/test.sh, \
             which starts fakesnow (scripts/fakesnow.sh)",
        )
}

fn snowflake_dbt() -> PathBuf {
    let path = std::env::var_os("ACTIVATE_TEST_SNOWFLAKE_DBT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dbt_activate_e2e::repo_root().join(".tools/snowflake-venv/bin/dbt"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/fakesnow.sh`",
        path.display()
    );
    path
}

/// A profiles.yml whose `dev` output is Snowflake at `host:port` over plain HTTP.
fn snowflake_profile(port: u16, database: &str, extra: &str) -> String {
    format!(
        "activate_example:\n  target: dev\n  outputs:\n    dev:\n      type: snowflake\n      \
         account: fakesnow\n      user: dbt_user\n      password: \"{{{{ env_var('SNOWFLAKE_TEST_PASSWORD') }}}}\"\n      \
         role: transformer\n      warehouse: compute_wh\n      database: {database}\n      \
         schema: example\n      host: 127.0.0.1\n      port: {port}\n      protocol: http\n      \
         connect_timeout: 5\n      threads: 1\n{extra}"
    )
}

const PASSWORD: &str = "s3cret-Pa55word";

fn run_snowflake_dbt(p: &Project, args: &[&str]) -> RunOutput {
    let mut cmd = Command::new(snowflake_dbt());
    cmd.args(args)
        .arg("--profiles-dir")
        .arg(".")
        .current_dir(p.path())
        .env("SNOWFLAKE_TEST_PASSWORD", PASSWORD)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DO_NOT_TRACK", "1")
        .env("DBT_USE_COLORS", "false")
        .env("DBT_PARTIAL_PARSE", "false");
    for key in [
        "DBT_PROJECT_DIR",
        "DBT_PROFILES_DIR",
        "DBT_TARGET",
        "DBT_TARGET_PATH",
    ] {
        cmd.env_remove(key);
    }
    run_with_timeout(&mut cmd, std::time::Duration::from_secs(180))
}

fn activate_run(p: &Project) -> RunOutput {
    p.activate_cmd(&["run"])
        .env("SNOWFLAKE_TEST_PASSWORD", PASSWORD)
        .run()
}

/// Every file under synced/, with its lines sorted (file destinations append in read order).
fn synced_contents(p: &Project) -> Vec<(String, Vec<String>)> {
    p.synced_files()
        .into_iter()
        .map(|f| {
            let mut lines: Vec<String> = p
                .read_file(&format!("synced/{f}"))
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            (f, lines)
        })
        .collect()
}

/// The example built by dbt-snowflake into fakesnow and synced to the file destinations lands
/// exactly what the same example built by dbt-duckdb lands: same rows, same value types.
#[test]
fn dbt_snowflake_build_then_run_lands_what_duckdb_lands() {
    let port = fakesnow_port();
    let reference = Project::new();
    activate_run(&reference).assert_success();
    let expected = synced_contents(&reference);
    assert_eq!(expected.len(), 6, "the DuckDB run wrote {expected:?}");

    let p = Project::new();
    let database = format!("e2e_{}", unique_suffix());
    p.write_file("profiles.yml", &snowflake_profile(port, &database, ""));
    run_snowflake_dbt(&p, &["build"]).assert_success();
    let out = activate_run(&p);
    out.assert_success();
    out.assert_contains("warehouse snowflake");
    assert!(
        !out.text().contains(PASSWORD),
        "the password must never be printed\n{out}"
    );
    assert_eq!(synced_contents(&p), expected);

    // A second run finds nothing changed; then a seed change flows through both dbt and the sync.
    let again = activate_run(&p);
    again.assert_success();
    assert_eq!(synced_contents(&p), expected);
    let leads_before = p.synced_jsonl("crm", "Lead").len();
    p.edit_seed("leads", |s| {
        format!("{s}new.lead@example.org,Example Org,New,Lead,US,2025-03-20 10:00:00\n")
    });
    run_snowflake_dbt(&p, &["build"]).assert_success();
    activate_run(&p).assert_success();
    let leads = p.synced_jsonl("crm", "Lead");
    assert_eq!(leads.len(), leads_before + 1, "{leads:?}");
    assert!(
        leads
            .iter()
            .any(|l| l["Email"] == "new.lead@example.org" && l["Lead_Score__c"] == "cold"),
        "{leads:?}"
    );

    // A relation dropped since dbt wrote the manifest: named, and nothing is sent.
    let drop = format!(
        "import snowflake.connector\n\
         c = snowflake.connector.connect(user='dbt_user', password='x', account='fakesnow', \
         host='127.0.0.1', port={port}, protocol='http', database='{database}', schema='example')\n\
         c.cursor().execute('drop table {database}.example.churn_risk')\n"
    );
    let dropped = run_with_timeout(
        Command::new(snowflake_python()).arg("-c").arg(&drop),
        std::time::Duration::from_secs(60),
    );
    dropped.assert_success();
    let before = synced_contents(&p);
    let out = activate_run(&p);
    out.assert_code(2);
    for needle in ["model `churn_risk`", "churn_risk", "does not exist"] {
        out.assert_contains(needle);
    }
    assert_eq!(synced_contents(&p), before, "nothing was sent");
}

#[test]
fn missing_required_key_names_the_profile_and_the_key() {
    let p = Project::new();
    let profile = snowflake_profile(fakesnow_port(), "e2e_missing", "")
        .replace("      database: e2e_missing\n", "");
    p.write_file("profiles.yml", &profile);
    let out = activate_run(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `dev`",
            "`database:`",
            "profiles.yml",
        ],
    );
}

#[test]
fn unreachable_host_is_one_clear_error_in_bounded_time() {
    let p = Project::new();
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    p.write_file(
        "profiles.yml",
        &snowflake_profile(port, "e2e_unreachable", ""),
    );
    let out = activate_run(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `dev`",
            "could not reach the server",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert_eq!(
        out.text().matches("could not reach").count(),
        1,
        "one error, not one per model\n{out}"
    );
}

/// Snowflake answers a refused login with `success: false` and code 390100 ("Incorrect username
/// or password was specified."); fakesnow accepts any password, so a loopback server answers
/// the login request the way Snowflake's documentation shows.
#[test]
fn wrong_password_names_the_profile_and_sends_nothing() {
    let p = Project::new();
    let server = HttpServer::start();
    server.respond_with(|_, _| {
        Reply::ok().body(
            r#"{"data":{"nextAction":"RETRY_LOGIN","authnMethod":"USERNAME_PASSWORD"},"code":"390100","message":"Incorrect username or password was specified.","success":false,"headers":null}"#,
        )
    });
    let port: u16 = server
        .url()
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the fake's port");
    p.write_file("profiles.yml", &snowflake_profile(port, "e2e_wrong", ""));
    let out = activate_run(&p);
    assert_config_error(
        &p,
        &out,
        &[
            "profile `activate_example` target `dev`",
            "login failed",
            "Incorrect username or password",
            "390100",
        ],
    );
    assert!(!out.text().contains(PASSWORD), "{out}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one login attempt: {requests:?}");
    assert!(requests[0].path.starts_with("/session/v1/login-request"));
    let body = requests[0].json();
    assert_eq!(body["data"]["LOGIN_NAME"], "dbt_user");
    assert_eq!(body["data"]["PASSWORD"], PASSWORD);
}

/// Python with `cryptography` (a dependency of snowflake-connector-python) from the fakesnow venv.
fn snowflake_python() -> PathBuf {
    snowflake_dbt().with_file_name("python")
}

/// Key-pair authentication: the login carries `AUTHENTICATOR: SNOWFLAKE_JWT` and a JWT whose
/// claims and RS256 signature are what Snowflake's key-pair documentation asks for; checked
/// with Python's `cryptography` against the public key of a freshly generated key.
#[test]
fn key_pair_login_sends_a_jwt_signed_by_the_private_key() {
    let p = Project::new();
    let key_path = p.file("rsa_key.p8");
    let generate = format!(
        "from cryptography.hazmat.primitives.asymmetric import rsa\n\
         from cryptography.hazmat.primitives import serialization\n\
         k = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n\
         open({path:?}, 'wb').write(k.private_bytes(serialization.Encoding.PEM, \
         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))\n",
        path = key_path.display().to_string()
    );
    run_with_timeout(
        Command::new(snowflake_python()).arg("-c").arg(&generate),
        std::time::Duration::from_secs(60),
    )
    .assert_success();

    let server = HttpServer::start();
    server.respond_with(|_, _| {
        Reply::ok().body(
            r#"{"data":null,"code":"390144","message":"JWT token is invalid.","success":false}"#,
        )
    });
    let port: u16 = server
        .url()
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the fake's port");
    let profile = snowflake_profile(port, "e2e_keypair", "").replace(
        "      password: \"{{ env_var('SNOWFLAKE_TEST_PASSWORD') }}\"\n",
        &format!("      private_key_path: {}\n", key_path.display()),
    );
    p.write_file(
        "profiles.yml",
        &profile.replace("account: fakesnow", "account: xy12345.eu-central-1"),
    );
    let out = activate_run(&p);
    assert_config_error(
        &p,
        &out,
        &["login failed", "JWT token is invalid", "390144"],
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let data = requests[0].json()["data"].clone();
    assert_eq!(data["AUTHENTICATOR"], "SNOWFLAKE_JWT");
    assert!(data.get("PASSWORD").is_none(), "{data}");
    let jwt = data["TOKEN"].as_str().expect("a TOKEN").to_owned();
    assert!(!out.text().contains(&jwt), "the token must not be printed");
    let verify = format!(
        "import base64, json, hashlib, sys\n\
         from cryptography.hazmat.primitives import serialization, hashes\n\
         from cryptography.hazmat.primitives.asymmetric import padding\n\
         k = serialization.load_pem_private_key(open({path:?}, 'rb').read(), password=None)\n\
         pub = k.public_key()\n\
         der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)\n\
         fp = 'SHA256:' + base64.b64encode(hashlib.sha256(der).digest()).decode()\n\
         h, c, s = sys.argv[1].split('.')\n\
         pad = lambda x: x + '=' * (-len(x) % 4)\n\
         pub.verify(base64.urlsafe_b64decode(pad(s)), (h + '.' + c).encode(), padding.PKCS1v15(), hashes.SHA256())\n\
         header = json.loads(base64.urlsafe_b64decode(pad(h)))\n\
         claims = json.loads(base64.urlsafe_b64decode(pad(c)))\n\
         assert header['alg'] == 'RS256', header\n\
         assert claims['sub'] == 'XY12345.DBT_USER', claims\n\
         assert claims['iss'] == 'XY12345.DBT_USER.' + fp, (claims, fp)\n\
         assert claims['exp'] - claims['iat'] == 3600, claims\n\
         print('verified')\n",
        path = key_path.display().to_string()
    );
    run_with_timeout(
        Command::new(snowflake_python())
            .arg("-c")
            .arg(&verify)
            .arg(&jwt),
        std::time::Duration::from_secs(60),
    )
    .assert_success()
    .assert_contains("verified");
}

/// What fakesnow does not do: a query first answered "in progress" (code 333334 with a
/// `getResultUrl`), then a JSON result whose rows come partly inline (`rowset`) and partly in
/// two chunks fetched from their URLs with the `chunkHeaders`, as Snowflake's drivers receive
/// them. Every row lands, and each chunk is fetched once.
#[test]
fn in_progress_query_and_result_chunks_are_all_read() {
    let server = HttpServer::start();
    let base = server.url().trim_end_matches("/hooks/activate").to_owned();
    let rowtype = serde_json::json!([
        {"name": "ID", "type": "fixed", "precision": 38, "scale": 0, "nullable": false},
        {"name": "EMAIL", "type": "text", "nullable": true}]);
    let chunk_base = base.clone();
    server.respond_with(move |_, request| {
        let ok = |v: serde_json::Value| Reply::ok().body(&v.to_string());
        let path = request.path.as_str();
        if path.starts_with("/session/v1/login-request") {
            return ok(serde_json::json!({"data": {"token": "session-token"}, "success": true}));
        }
        if path.starts_with("/chunks/") {
            assert_eq!(request.header("x-test-chunk-key"), Some("k"));
            return Reply::ok().body(if path == "/chunks/1" {
                r#"["3","u3@example.org"],["4","u4@example.org"]"#
            } else {
                r#"["5",null]"#
            });
        }
        if path.starts_with("/queries/in-progress") {
            return ok(serde_json::json!({"success": true, "data": {
                "rowtype": rowtype, "queryResultFormat": "json",
                "rowset": [["1", "u1@example.org"], ["2", "u2@example.org"]],
                "chunkHeaders": {"x-test-chunk-key": "k"},
                "chunks": [{"url": format!("{chunk_base}/chunks/1"), "rowCount": 2},
                           {"url": format!("{chunk_base}/chunks/2"), "rowCount": 1}]}}));
        }
        let sql = request.json()["sqlText"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if sql.contains("LIMIT 0") || sql == "SELECT 1" {
            return ok(serde_json::json!({"success": true, "data": {
                "rowtype": rowtype, "queryResultFormat": "json", "rowset": []}}));
        }
        ok(serde_json::json!({"success": false, "code": "333334",
            "message": "Asynchronous execution in progress.",
            "data": {"queryId": "q1", "getResultUrl": "/queries/in-progress/result"}}))
    });
    let port: u16 = base
        .trim_start_matches("http://127.0.0.1:")
        .parse()
        .expect("the fake's port");
    let p = Project::new();
    p.write_file("profiles.yml", &snowflake_profile(port, "e2e_chunks", ""));
    p.edit_file("activate.yml", |s| {
        s.replace(
            "syncs:\n",
            "syncs:\n  sf_rows:\n    query: \"{% set gate = ref('stg_leads') %}select id, email from users\"\n    \
             destination: sales\n    object: sf_rows\n    sync_mode: incremental\n    primary_key: ID\n",
        )
    });
    let out = p
        .activate_cmd(&["run", "--select", "sf_rows"])
        .env("SNOWFLAKE_TEST_PASSWORD", PASSWORD)
        .run();
    out.assert_success();
    // Snowflake's folded `ID` and `EMAIL` are shown as `id` and `email`, as DuckDB would give
    // them; `primary_key: ID` names the same column, so no second key field is added.
    let mut rows = p.synced_jsonl("sales", "sf_rows");
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"id": 1, "email": "u1@example.org"}),
            serde_json::json!({"id": 2, "email": "u2@example.org"}),
            serde_json::json!({"id": 3, "email": "u3@example.org"}),
            serde_json::json!({"id": 4, "email": "u4@example.org"}),
            serde_json::json!({"id": 5, "email": null}),
        ]
    );
    let selects: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/queries/v1/query-request"))
        .filter_map(|r| r.json()["sqlText"].as_str().map(str::to_owned))
        .filter(|sql| sql.starts_with("SELECT \""))
        .collect();
    assert!(
        selects
            .iter()
            .any(|sql| sql.starts_with("SELECT \"ID\", \"EMAIL\" FROM")),
        "the read selects Snowflake's own column names: {selects:?}"
    );
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    for fetched in ["/queries/in-progress/result", "/chunks/1", "/chunks/2"] {
        assert_eq!(
            paths.iter().filter(|p| p.as_str() == fetched).count(),
            1,
            "{fetched} once: {paths:?}"
        );
    }
    let queries = server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/queries/v1/query-request"))
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    assert!(
        queries
            .iter()
            .all(|a| a == "Snowflake Token=\"session-token\""),
        "{queries:?}"
    );
}

/// Runs one statement in `database` of fakesnow through snowflake-connector-python and returns
/// its rows, one line each (the cells joined by `|`).
fn snowflake_sql(port: u16, database: &str, sql: &str) -> Vec<String> {
    let script = format!(
        "import sys, snowflake.connector\n\
         c = snowflake.connector.connect(user='dbt_user', password='x', account='fakesnow', \
         host='127.0.0.1', port={port}, protocol='http', database='{database}', schema='example')\n\
         cur = c.cursor()\n\
         cur.execute(sys.argv[1])\n\
         for row in cur.fetchall():\n    print('|'.join(str(v) for v in row))\n"
    );
    let out = run_with_timeout(
        Command::new(snowflake_python())
            .arg("-c")
            .arg(&script)
            .arg(sql),
        std::time::Duration::from_secs(60),
    );
    out.assert_success();
    out.stdout.lines().map(str::to_owned).collect()
}

/// `dbt seed` and `dbt run` with dbt-snowflake: the models rebuilt without their tests (a
/// NULL key would fail `not_null`; the engine's own rejection is what is compared).
fn snowflake_rebuild_without_tests(p: &Project) {
    run_snowflake_dbt(p, &["seed"]).assert_success();
    run_snowflake_dbt(p, &["run"]).assert_success();
}

/// `state: {type: warehouse}` in Snowflake: the example built by dbt-snowflake into two
/// fakesnow databases, one synced with local state and one with the state in the warehouse;
/// after a first run, an unchanged rerun, changed/new/NULL-key rows and removals (mirror
/// deletes), the file destinations hold the same records and every count is the same.
#[test]
fn snowflake_warehouse_state_gives_the_results_of_local_state() {
    use crate::warehouse_state::{STATE_LINE, assert_same_step, change_models, remove_rows};
    let port = fakesnow_port();
    let local = Project::new();
    let warehouse = Project::new();
    let local_db = format!("e2e_{}", unique_suffix());
    let warehouse_db = format!("e2e_{}", unique_suffix());
    local.write_file("profiles.yml", &snowflake_profile(port, &local_db, ""));
    warehouse.write_file("profiles.yml", &snowflake_profile(port, &warehouse_db, ""));
    warehouse.edit_file("activate.yml", |s| s + STATE_LINE);
    let run = |p: &Project| {
        let out = activate_run(p);
        assert!(
            out.code == 0 || out.code == 1,
            "the run must not be refused\n{out}"
        );
        assert!(!out.text().contains("panicked"), "{out}");
        out
    };

    for p in [&local, &warehouse] {
        run_snowflake_dbt(p, &["build"]).assert_success();
        run(p).assert_success();
    }
    assert_same_step("first run", &local, &warehouse);
    let tables = snowflake_sql(
        port,
        &warehouse_db,
        "select table_name from information_schema.tables where table_schema = 'activate_state' order by 1",
    );
    assert_eq!(
        tables,
        [
            "activate_history",
            "activate_lock",
            "activate_pending",
            "activate_snapshot",
            "activate_sync_state"
        ]
    );
    assert!(
        !warehouse.file(".dbt-activate").join("dev").exists(),
        "warehouse state writes no local state"
    );
    let snapshot_rows = snowflake_sql(
        port,
        &warehouse_db,
        "select count(*) from \"activate_state\".\"activate_snapshot\"",
    );
    assert_ne!(
        snapshot_rows,
        ["0"],
        "the snapshot holds the delivered keys"
    );

    for p in [&local, &warehouse] {
        run(p).assert_success();
    }
    assert_same_step("unchanged rerun", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "unchanged"), 30);

    for p in [&local, &warehouse] {
        change_models(p);
        snowflake_rebuild_without_tests(p);
        run(p);
    }
    assert_same_step("changes, a new key and a NULL key", &local, &warehouse);
    assert_eq!(count(&warehouse.result(syncs::LEADS), "rejected"), 1);

    for p in [&local, &warehouse] {
        remove_rows(p);
        snowflake_rebuild_without_tests(p);
        run(p);
    }
    assert_same_step("removals", &local, &warehouse);
    assert!(count(&warehouse.result(syncs::HIGH_VALUE), "deleted") >= 1);

    // Each run gave the lock back; a lock left by a killed run refuses the next one, naming
    // how to clear it.
    let lock = "\"activate_state\".\"activate_lock\"";
    assert_eq!(
        snowflake_sql(
            port,
            &warehouse_db,
            &format!("select count(*) from {lock} where holder is not null")
        ),
        ["0"]
    );
    snowflake_sql(
        port,
        &warehouse_db,
        &format!("update {lock} set holder = 'process 1 since yesterday, run killed'"),
    );
    let refused = activate_run(&warehouse);
    refused.assert_code(2);
    for needle in [
        "holds the warehouse state lock of schema `activate_state`",
        "run killed",
        "SET holder = NULL",
    ] {
        refused.assert_contains(needle);
    }
    snowflake_sql(
        port,
        &warehouse_db,
        &format!("update {lock} set holder = NULL"),
    );
    for p in [&local, &warehouse] {
        run(p).assert_success();
    }
    assert_same_step("after the lock was cleared", &local, &warehouse);
}
