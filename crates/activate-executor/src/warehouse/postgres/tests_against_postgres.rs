//! The postgres warehouse against the real server that scripts/test.sh starts
//! (`ACTIVATE_TEST_PG_URL`), and against DuckDB for the same data.

use std::str::FromStr;

use super::*;
use crate::value::Value;
use crate::warehouse::duckdb::DuckDbWarehouse;

fn admin_url() -> String {
    std::env::var("ACTIVATE_TEST_PG_URL").expect(
        "ACTIVATE_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs statements on `url` with the simple query protocol.
fn execute(url: &str, sql: &str) {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{sql}"));
    });
}

/// A fresh database; returns its name and a profile for it.
fn fresh_database() -> (String, PostgresProfile) {
    let admin = admin_url();
    let name = format!("wh_{}", uuid::Uuid::new_v4().simple());
    execute(&admin, &format!("CREATE DATABASE {name}"));
    (
        name.clone(),
        profile_for(&admin, &name, "unused-under-trust"),
    )
}

fn profile_for(url: &str, database: &str, password: &str) -> PostgresProfile {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    PostgresProfile::from_output(
        &serde_json::json!({
            "host": host, "port": port, "user": config.get_user().unwrap_or("postgres"),
            "password": password, "dbname": database, "schema": "analytics", "retries": 0
        }),
        "profile `unit` target `pg` in profiles.yml",
    )
    .unwrap()
}

fn url_of(profile: &PostgresProfile) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        profile.user, profile.host, profile.port, profile.database
    )
}

fn read_all(wh: &dyn Warehouse, relation: &str, batch_rows: usize) -> Vec<RowBatch> {
    let columns = wh.columns(relation).unwrap();
    let mut batches = Vec::new();
    wh.read(
        &ReadRequest {
            relation,
            columns: &columns,
            cursor_at_least: None,
            batch_rows,
        },
        &mut |b| {
            batches.push(b);
            Ok(())
        },
    )
    .unwrap();
    batches
}

/// (column, DuckDB expression, PostgreSQL expression, the value both must give).
fn common_types() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        ("i2", "7::SMALLINT", "7::int2", Value::Int(7)),
        ("i4", "-1::INTEGER", "-1::int4", Value::Int(-1)),
        (
            "i8",
            "9007199254740993::BIGINT",
            "9007199254740993::int8",
            Value::Int(9_007_199_254_740_993),
        ),
        (
            "d",
            "12345678901234567890.123::DECIMAL(38,3)",
            "12345678901234567890.123::numeric(38,3)",
            Value::Number("12345678901234567890.123".into()),
        ),
        (
            "money",
            "1250.50::DECIMAL(12,2)",
            "1250.50::numeric(12,2)",
            Value::Number("1250.50".into()),
        ),
        ("f4", "1.1::FLOAT", "1.1::float4", Value::Float(1.1)),
        ("f8", "0.1::DOUBLE", "0.1::float8", Value::Float(0.1)),
        (
            "f8_nan",
            "'NaN'::DOUBLE",
            "'NaN'::float8",
            Value::Float(f64::NAN),
        ),
        (
            "f8_inf",
            "'Infinity'::DOUBLE",
            "'Infinity'::float8",
            Value::Float(f64::INFINITY),
        ),
        (
            "f8_ninf",
            "'-Infinity'::DOUBLE",
            "'-Infinity'::float8",
            Value::Float(f64::NEG_INFINITY),
        ),
        ("b", "true", "true", Value::Bool(true)),
        (
            "s",
            "'x''y é'::VARCHAR",
            "'x''y é'::text",
            Value::Text("x'y é".into()),
        ),
        (
            "vc",
            "'abc'::VARCHAR(10)",
            "'abc'::varchar(10)",
            Value::Text("abc".into()),
        ),
        (
            "dt",
            "DATE '2024-02-29'",
            "DATE '2024-02-29'",
            Value::Date("2024-02-29".into()),
        ),
        (
            "ts",
            "TIMESTAMP '2024-01-01 10:00:00.5'",
            "TIMESTAMP '2024-01-01 10:00:00.5'",
            Value::Timestamp("2024-01-01T10:00:00.500000".into()),
        ),
        (
            "tz",
            "TIMESTAMPTZ '2024-01-01 10:00:00.000001+02'",
            "TIMESTAMPTZ '2024-01-01 10:00:00.000001+02'",
            Value::TimestampTz("2024-01-01T08:00:00.000001Z".into()),
        ),
        (
            "js",
            r#"'{"a": 1, "b": [true, null, "x"]}'::JSON"#,
            r#"'{"a": 1, "b": [true, null, "x"]}'::jsonb"#,
            Value::json(serde_json::json!({"a": 1, "b": [true, null, "x"]})),
        ),
        (
            "js_plain",
            r#"'[1, 2.5]'::JSON"#,
            r#"'[1, 2.5]'::json"#,
            Value::json(serde_json::json!([1, 2.5])),
        ),
        (
            "ints",
            "[1, 2]::INTEGER[]",
            "ARRAY[1, 2]::int4[]",
            Value::json(serde_json::json!([1, 2])),
        ),
        (
            "texts",
            "['a', NULL]::VARCHAR[]",
            "ARRAY['a', NULL]::text[]",
            Value::json(serde_json::json!(["a", null])),
        ),
        (
            "empty",
            "[]::VARCHAR[]",
            "'{}'::varchar[]",
            Value::json(serde_json::json!([])),
        ),
        (
            "u",
            "'7a5a4c8e-5e3a-4b7c-9d1e-2f3a4b5c6d7e'::UUID",
            "'7a5a4c8e-5e3a-4b7c-9d1e-2f3a4b5c6d7e'::uuid",
            Value::Text("7a5a4c8e-5e3a-4b7c-9d1e-2f3a4b5c6d7e".into()),
        ),
        (
            "tm",
            "TIME '10:00:00'",
            "TIME '10:00:00'",
            Value::Text("10:00:00".into()),
        ),
        (
            "blob",
            r"'\x01\x02'::BLOB",
            r"'\x0102'::bytea",
            Value::Blob(vec![1, 2]),
        ),
        ("n_text", "NULL::VARCHAR", "NULL::text", Value::Null),
        ("n_int", "NULL::INTEGER", "NULL::int4", Value::Null),
        (
            "n_ts",
            "NULL::TIMESTAMPTZ",
            "NULL::timestamptz",
            Value::Null,
        ),
        ("n_arr", "NULL::INTEGER[]", "NULL::int4[]", Value::Null),
    ]
}

/// `Value` has no `Eq` for NaN; compare the debug form.
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn every_common_type_reads_as_duckdb_reads_it() {
    let cases = common_types();

    let (db, profile) = fresh_database();
    let pg_select: Vec<String> = cases
        .iter()
        .map(|(name, _, pg, _)| format!("{pg} AS {name}"))
        .collect();
    execute(
        &url_of(&profile),
        &format!(
            "CREATE SCHEMA analytics; CREATE TABLE analytics.types AS SELECT {}",
            pg_select.join(", ")
        ),
    );
    let pg = PostgresWarehouse::open(&profile).unwrap();
    // The relation as dbt-postgres writes it in the manifest.
    let relation = format!("\"{db}\".\"analytics\".\"types\"");
    let pg_rows: Vec<Vec<Value>> = read_all(&pg, &relation, 100).concat();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    {
        let duck_select: Vec<String> = cases
            .iter()
            .map(|(name, duck, _, _)| format!("{duck} AS {name}"))
            .collect();
        let conn = ::duckdb::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE types AS SELECT {}",
            duck_select.join(", ")
        ))
        .unwrap();
    }
    let duck = DuckDbWarehouse::open(&path).unwrap();
    let duck_rows: Vec<Vec<Value>> = read_all(&duck, "types", 100).concat();

    assert_eq!((pg_rows.len(), duck_rows.len()), (1, 1));
    let mut wrong = Vec::new();
    for (i, (name, _, _, want)) in cases.iter().enumerate() {
        let (p, d) = (&pg_rows[0][i], &duck_rows[0][i]);
        if !same(p, want) || !same(d, want) {
            wrong.push(format!(
                "{name}: postgres {p:?}, duckdb {d:?}, expected {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn postgres_only_values() {
    let (db, profile) = fresh_database();
    execute(
        &url_of(&profile),
        "CREATE SCHEMA analytics; CREATE TYPE mood AS ENUM ('ok', 'sad'); \
         CREATE DOMAIN score AS numeric(5,2); CREATE TYPE pair AS (n int4, s text); \
         CREATE TABLE analytics.t AS SELECT 'NaN'::numeric AS n_nan, 'Infinity'::numeric AS n_inf, \
         12.5::score AS dom, 'sad'::mood AS en, 'infinity'::timestamp AS ts_inf, \
         '12.34'::money AS cash, ARRAY[ARRAY[1,2],ARRAY[3,4]] AS grid, \
         ROW(1, 'a')::pair AS rec, 'a  '::char(3) AS ch, '1 day 02:00:00'::interval AS iv",
    );
    let pg = PostgresWarehouse::open(&profile).unwrap();
    let rows = read_all(&pg, &format!("\"{db}\".\"analytics\".\"t\""), 10).concat();
    let row = &rows[0];
    assert!(
        matches!(row[0], Value::Float(f) if f.is_nan()),
        "{:?}",
        row[0]
    );
    assert_eq!(row[1], Value::Float(f64::INFINITY));
    assert_eq!(row[2], Value::Number("12.50".into()));
    assert_eq!(row[3], Value::Text("sad".into()));
    assert_eq!(row[4], Value::Text("infinity".into()));
    assert_eq!(row[5], Value::Number("12.34".into()));
    assert_eq!(row[6], Value::json(serde_json::json!([[1, 2], [3, 4]])));
    assert_eq!(row[7], Value::json(serde_json::json!({"n": 1, "s": "a"})));
    // char(n) loses its padding, as its cast to text does (and as DuckDB, which has no padding).
    assert_eq!(row[8], Value::Text("a".into()));
    assert_eq!(row[9], Value::Text("1 day 02:00:00".into()));
}

#[test]
fn streams_in_batches_with_the_cursor_pushed_down() {
    let (db, profile) = fresh_database();
    execute(
        &url_of(&profile),
        "CREATE SCHEMA analytics; CREATE TABLE analytics.big AS \
         SELECT g AS id, 'row ' || g AS label, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * interval '1 minute' AS updated_at \
         FROM generate_series(1, 2500) AS g",
    );
    let pg = PostgresWarehouse::open(&profile).unwrap();
    let relation = format!("\"{db}\".\"analytics\".\"big\"");
    let columns = pg.columns(&relation).unwrap();
    assert_eq!(
        columns,
        vec![
            ColumnDesc {
                name: "id".into(),
                data_type: "int4".into()
            },
            ColumnDesc {
                name: "label".into(),
                data_type: "text".into()
            },
            ColumnDesc {
                name: "updated_at".into(),
                data_type: "timestamptz".into()
            },
        ]
    );
    let sizes: Vec<usize> = read_all(&pg, &relation, 1000)
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);

    // The cursor value as a previous read gave it: only rows at or after it leave the server.
    let cursor = Value::TimestampTz("2024-01-02T16:40:00.000000Z".into());
    let mut ids = Vec::new();
    pg.read(
        &ReadRequest {
            relation: &relation,
            columns: &columns,
            cursor_at_least: Some(("updated_at", &cursor)),
            batch_rows: 1000,
        },
        &mut |b| {
            ids.extend(b.into_iter().map(|r| r[0].clone()));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(ids.len(), 61, "ids 2440..=2500: {ids:?}");
    assert_eq!(ids[0], Value::Int(2440));

    // A stopped read (on_batch failing) leaves the connection usable for the next one.
    let err = pg
        .read(
            &ReadRequest {
                relation: &relation,
                columns: &columns,
                cursor_at_least: None,
                batch_rows: 100,
            },
            &mut |_| Err(WarehouseError::new("stop")),
        )
        .unwrap_err();
    assert_eq!(err.message, "stop");
    assert_eq!(read_all(&pg, &relation, 5000)[0].len(), 2500);
}

#[test]
fn a_missing_relation_is_named() {
    let (db, profile) = fresh_database();
    let pg = PostgresWarehouse::open(&profile).unwrap();
    let relation = format!("\"{db}\".\"analytics\".\"gone\"");
    let err = pg.columns(&relation).unwrap_err();
    assert!(
        err.message
            .contains(r#"relation "analytics.gone" does not exist"#),
        "{}",
        err.message
    );
}

#[test]
fn search_path_and_role_are_applied() {
    let (_db, mut profile) = fresh_database();
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    execute(
        &url_of(&profile),
        &format!(
            "CREATE SCHEMA analytics; CREATE TABLE analytics.t AS SELECT 1 AS x; CREATE ROLE {role}; GRANT {role} TO CURRENT_USER; \
             GRANT USAGE ON SCHEMA analytics TO {role}; GRANT SELECT ON analytics.t TO {role}"
        ),
    );
    profile.search_path = Some("analytics".into());
    profile.role = Some(role.clone());
    let pg = PostgresWarehouse::open(&profile).unwrap();
    // An unqualified name resolves through search_path (as query syncs may write it).
    assert_eq!(read_all(&pg, "t", 10)[0][0][0], Value::Int(1));
    let who = read_all(&pg, "(SELECT current_user::text AS u) AS q", 10);
    assert_eq!(who[0][0][0], Value::Text(role));
}

#[test]
fn a_refused_port_fails_fast_and_names_the_target() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let profile = profile_for(
        &format!("postgres://u@127.0.0.1:{port}/db"),
        "db",
        "pw-1234",
    );
    let pg = PostgresWarehouse::open(&profile).unwrap();
    let err = pg.health_check().unwrap_err();
    assert!(
        err.message.contains("profile `unit` target `pg`")
            && err.message.contains(&format!("127.0.0.1:{port}"))
            && err.message.contains("hint: is PostgreSQL running"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("pw-1234"));
}

#[test]
fn a_silent_server_is_bounded_by_connect_timeout() {
    // Accepts the TCP connection and never answers the startup message.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut profile = profile_for(
        &format!("postgres://u@127.0.0.1:{port}/db"),
        "db",
        "pw-1234",
    );
    profile.connect_timeout = 1;
    let pg = PostgresWarehouse::open(&profile).unwrap();
    let err = pg.health_check().unwrap_err();
    assert!(
        err.message
            .contains("no answer within connect_timeout (1 s)"),
        "{}",
        err.message
    );
    drop(listener);
}

#[test]
fn a_wrong_password_is_refused_at_once_and_named() {
    // scripts/postgres.sh makes members of activate_password_auth log in with a password.
    let (db, profile) = fresh_database();
    let user = format!("pw_{}", uuid::Uuid::new_v4().simple());
    execute(
        &admin_url(),
        &format!(
            "CREATE ROLE {user} LOGIN PASSWORD 'right-horse-battery' IN ROLE activate_password_auth"
        ),
    );
    let with_password = |password: &str| {
        let mut p = profile_for(&url_of(&profile), &db, password);
        p.user = user.clone();
        p.retries = 3;
        PostgresWarehouse::open(&p).unwrap()
    };
    let err = with_password("wrong-staple-1234")
        .health_check()
        .unwrap_err();
    assert!(
        err.message.contains("profile `unit` target `pg`")
            && err.message.contains("password authentication failed")
            && err.message.contains("hint: check `password`")
            && !err.message.contains("attempts"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("wrong-staple-1234"),
        "{}",
        err.message
    );
    with_password("right-horse-battery").health_check().unwrap();
}

/// Whether the warehouse's own connection is encrypted, from the server's side.
fn connection_uses_tls(pg: &PostgresWarehouse) -> bool {
    let rows = read_all(
        pg,
        "(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS s",
        10,
    );
    match &rows[0][0][0] {
        Value::Bool(b) => *b,
        other => panic!("pg_stat_ssl.ssl: {other:?}"),
    }
}

fn tls_profile(host: &str, sslmode: &str, root: Option<&str>) -> PostgresProfile {
    let (_db, mut profile) = fresh_database();
    profile.host = host.to_owned();
    profile.sslmode = Some(sslmode.to_owned());
    profile.sslrootcert = root.map(str::to_owned);
    profile
}

fn test_ca(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run the tests through scripts/test.sh"))
}

#[test]
fn sslmode_decides_encryption_as_libpq_does() {
    // The test server offers TLS (scripts/postgres.sh): prefer (the default) and require use it.
    for (mode, encrypted) in [
        ("disable", false),
        ("allow", false),
        ("prefer", true),
        ("require", true),
    ] {
        let pg = PostgresWarehouse::open(&tls_profile("127.0.0.1", mode, None)).unwrap();
        assert_eq!(connection_uses_tls(&pg), encrypted, "sslmode {mode}");
    }
    let (_db, mut unset) = fresh_database();
    unset.sslmode = None;
    assert!(connection_uses_tls(
        &PostgresWarehouse::open(&unset).unwrap()
    ));
}

#[test]
fn verify_full_checks_the_ca_and_the_host_name() {
    let ca = test_ca("ACTIVATE_TEST_PG_CA");
    // The certificate names `localhost`.
    let pg = PostgresWarehouse::open(&tls_profile("localhost", "verify-full", Some(&ca))).unwrap();
    assert!(connection_uses_tls(&pg));
    // 127.0.0.1 is not in it: verify-full refuses, verify-ca (the chain only) accepts.
    let err = PostgresWarehouse::open(&tls_profile("127.0.0.1", "verify-full", Some(&ca)))
        .unwrap()
        .health_check()
        .unwrap_err();
    assert!(
        err.message.contains("certificate")
            && err
                .message
                .contains("hint: the TLS handshake failed under `sslmode: verify-full`"),
        "{}",
        err.message
    );
    let pg = PostgresWarehouse::open(&tls_profile("127.0.0.1", "verify-ca", Some(&ca))).unwrap();
    assert!(connection_uses_tls(&pg));
    // A CA that did not sign the server's certificate: refused, with no retry.
    let other = test_ca("ACTIVATE_TEST_PG_OTHER_CA");
    let mut profile = tls_profile("localhost", "verify-ca", Some(&other));
    profile.retries = 3;
    let err = PostgresWarehouse::open(&profile)
        .unwrap()
        .health_check()
        .unwrap_err();
    assert!(
        err.message.contains("certificate") && !err.message.contains("attempts"),
        "{}",
        err.message
    );
}

#[test]
fn verify_modes_need_a_root_certificate_file() {
    let mut profile = tls_profile("localhost", "verify-full", Some("/nonexistent/root.crt"));
    profile.site = "profile `unit` target `pg` in profiles.yml".into();
    let err = PostgresWarehouse::open(&profile).err().unwrap().to_string();
    assert!(
        err.contains("the root certificate file /nonexistent/root.crt does not exist")
            && err.contains("hint: set `sslrootcert:`"),
        "{err}"
    );
}

#[test]
fn retries_after_a_network_failure_as_dbt_does() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut profile = profile_for(
        &format!("postgres://u@127.0.0.1:{port}/db"),
        "db",
        "pw-1234",
    );
    profile.retries = 1;
    let err = PostgresWarehouse::open(&profile)
        .unwrap()
        .health_check()
        .unwrap_err();
    assert!(
        err.message.contains("(after 2 attempts)"),
        "{}",
        err.message
    );
}
