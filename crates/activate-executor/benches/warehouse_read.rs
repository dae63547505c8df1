//! Read throughput of the warehouses (not a test; figures in docs/warehouses.md):
//! the same generated model in PostgreSQL and DuckDB, read whole through each `Warehouse`
//! in batches of 10,000 rows, as a sync reads it.
//!
//!   bash scripts/bench-warehouses.sh                           # 1,000,000 rows
//!   BENCH_WAREHOUSE_ROWS=200000 bash scripts/bench-warehouses.sh

use std::str::FromStr;
use std::time::Instant;

use activate_executor::connections::PostgresProfile;
use activate_executor::warehouse::duckdb::DuckDbWarehouse;
use activate_executor::warehouse::postgres::PostgresWarehouse;
use activate_executor::warehouse::{ReadRequest, Warehouse};

const COLUMNS: &str = "id, email, company, score, seats, active, updated_at, tags";

fn main() {
    let rows: u64 = std::env::var("BENCH_WAREHOUSE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let admin = std::env::var("ACTIVATE_TEST_PG_URL")
        .expect("ACTIVATE_TEST_PG_URL is not set: run scripts/bench-warehouses.sh");
    let database = format!("bench_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let execute = |url: &str, sql: &str| {
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client.batch_execute(sql).await.expect("sql");
        })
    };
    execute(&admin, &format!("CREATE DATABASE {database}"));
    let config = tokio_postgres::Config::from_str(&admin).expect("a URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let url = format!("postgres://postgres@{host}:{port}/{database}");

    let generate = |series: &str, fmt_ts: &str, list: &str| {
        format!(
            "SELECT g::BIGINT AS id, 'user' || g || '@example.com' AS email, 'Company ' || (g % 997) AS company, \
             CAST((g % 10000) / 100.0 AS DECIMAL(6,2)) AS score, (g % 50)::INTEGER AS seats, g % 3 = 0 AS active, \
             {fmt_ts} AS updated_at, {list} AS tags FROM {series}"
        )
    };
    let started = Instant::now();
    execute(
        &url,
        &format!(
            "CREATE SCHEMA analytics; CREATE TABLE analytics.model AS {}",
            generate(
                &format!("generate_series(1, {rows}) AS g"),
                "TIMESTAMPTZ '2025-01-01 00:00:00+00' + g * interval '1 second'",
                "ARRAY['a', 'b' || (g % 7)]::text[]"
            )
        ),
    );
    let dir = tempfile::tempdir().expect("a temporary folder");
    let duck_path = dir.path().join("bench.duckdb");
    {
        let conn = duckdb::Connection::open(&duck_path).expect("duckdb");
        conn.execute_batch(&format!(
            "CREATE TABLE model AS {}",
            generate(
                &format!("range(1, {} + 1) AS t(g)", rows),
                "TIMESTAMPTZ '2025-01-01 00:00:00+00' + g * INTERVAL 1 SECOND",
                "['a', 'b' || (g % 7)]::VARCHAR[]"
            )
        ))
        .expect("duckdb model");
    }
    eprintln!(
        "generated {rows} rows in both warehouses in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let profile = PostgresProfile::from_output(
        &serde_json::json!({
            "host": host, "port": port, "user": "postgres", "password": "unused",
            "dbname": database, "schema": "analytics", "sslmode": "disable"
        }),
        "profile `bench` target `pg`",
    )
    .expect("a profile");
    let postgres = PostgresWarehouse::open(&profile).expect("postgres");
    let duck = DuckDbWarehouse::open(&duck_path).expect("duckdb");
    let pg_relation = format!("\"{database}\".\"analytics\".\"model\"");
    println!("| warehouse | rows | seconds | rows/s |");
    println!("|---|---|---|---|");
    for (name, wh, relation) in [
        (
            "postgres",
            &postgres as &dyn Warehouse,
            pg_relation.as_str(),
        ),
        ("duckdb", &duck as &dyn Warehouse, "model"),
    ] {
        let columns = wh.columns(relation).expect("columns");
        assert_eq!(
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            COLUMNS
        );
        let started = Instant::now();
        let mut read = 0u64;
        wh.read(
            &ReadRequest {
                relation,
                columns: &columns,
                cursor_at_least: None,
                batch_rows: 10_000,
            },
            &mut |batch| {
                read += batch.len() as u64;
                Ok(())
            },
        )
        .expect("read");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(read, rows);
        println!(
            "| {name} | {read} | {seconds:.2} | {:.0} |",
            read as f64 / seconds
        );
    }
    drop(postgres);
    execute(&admin, &format!("DROP DATABASE {database} WITH (FORCE)"));
}
