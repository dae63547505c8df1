//! The diff engine alone (issue #6, workload 4; not a test; run by bench/run.sh, figures in
//! docs/performance.md): N keyed customer rows against the state of a previous snapshot in
//! which every row was delivered, 1% of the rows changed. Only `PlanBuilder` is timed (the
//! rows are generated, and freed, outside the timed part), on the bench's one thread: wall
//! time and the thread's CPU time (the fair figure on a machine shared with other work). In the same run,
//! DuckDB's own full outer join of the two snapshots (as tables in memory), with one thread
//! and with all of them, counts the changed rows.
//!
//!   cargo bench -p activate-executor --bench diff_engine            # 10,000,000 rows
//!   BENCH_DIFF_ROWS=1000000 cargo bench -p activate-executor --bench diff_engine
//!   BENCH_DIFF_REVERSED=1 cargo bench ...   # the model read in the reverse order (worst case)
//!   BENCH_DIFF_REPEAT=5 cargo bench ...     # the diff 5 times in one process: each, and the median

use std::path::Path;
use std::time::{Duration, Instant};

use activate_executor::Value;
use activate_executor::plan::PlanBuilder;
use activate_executor::state::{Confirmed, SyncState};
use activate_executor::sync::SyncDefinition;
use activate_executor::warehouse::ColumnDesc;
use activate_manifest::{Manifest, extract_specs};

const BATCH: u64 = 10_000;
const COLUMNS: [(&str, &str); 7] = [
    ("id", "BIGINT"),
    ("email", "VARCHAR"),
    ("name", "VARCHAR"),
    ("lifetime_value", "DECIMAL(12,2)"),
    ("churn_score", "DOUBLE"),
    ("product_tier", "VARCHAR"),
    ("updated_at", "TIMESTAMP WITH TIME ZONE"),
];

fn definition() -> SyncDefinition {
    let activate = serde_json::json!({"destination": "d", "object": "customers",
        "sync_mode": "mirror", "primary_key": "id"});
    let doc = serde_json::json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "bench"},
        "nodes": {"model.bench.customers": {"unique_id": "model.bench.customers",
            "resource_type": "model", "name": "customers", "original_file_path": "models/customers.sql",
            "config": {"meta": {"activate": activate}}}},
    });
    let manifest = Manifest::from_slice(doc.to_string().as_bytes(), Path::new("manifest.json"))
        .expect("a manifest");
    let destinations = ["d".to_owned()].into_iter().collect();
    let spec = extract_specs(&manifest, &destinations)
        .expect("a spec")
        .remove(0);
    let columns: Vec<ColumnDesc> = COLUMNS
        .iter()
        .map(|(name, data_type)| ColumnDesc {
            name: (*name).into(),
            data_type: (*data_type).into(),
        })
        .collect();
    SyncDefinition::resolve(
        &spec,
        "sync.bench.customers".into(),
        "customers".into(),
        &columns,
    )
    .expect("a definition")
}

/// Row `id` of a snapshot; `changed` rows have another churn score.
fn customer(id: u64, changed: bool) -> Vec<Value> {
    let score = (id * 104_729 % 10_000) as f64 / 10_000.0 + if changed { 1.0 } else { 0.0 };
    vec![
        Value::Int(id as i64),
        Value::Text(format!("user{id}@example.com")),
        Value::Text(format!("Customer {id}")),
        Value::Number(format!(
            "{}.{:02}",
            id * 7919 % 1_000_000 / 100,
            id * 7919 % 100
        )),
        Value::Float(score),
        Value::Text(["free", "starter", "pro", "enterprise"][(id % 4) as usize].into()),
        Value::TimestampTz(format!("2025-01-01T00:00:00.{:06}Z", id % 1_000_000)),
    ]
}

/// CPU time of the calling thread so far (from /proc; zero where unavailable): on a machine
/// shared with other work, the engine's own cost on its one core.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

fn reversed() -> bool {
    std::env::var("BENCH_DIFF_REVERSED").is_ok_and(|v| v == "1")
}

/// Runs the diff over a snapshot in which every 100th row changed (when `changes`); returns
/// the plan and the time spent in the engine only.
fn diff(
    def: &SyncDefinition,
    state: &SyncState,
    rows: u64,
    changes: bool,
) -> (activate_executor::plan::Plan, Duration, Duration) {
    // As `run` diffs: no plan is recorded, so no data fingerprint is computed.
    let mut builder = PlanBuilder::new(def, state, false).fingerprint_rows(false);
    let mut engine = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut first = 1;
    while first <= rows {
        let last = (first + BATCH - 1).min(rows);
        // With BENCH_DIFF_REVERSED=1 the diff reads the model in the reverse of the order
        // the keys were delivered in: the state entry after the last one found is never the
        // next key, so every row is looked up in the table (the worst case).
        let ids: Vec<u64> = if changes && reversed() {
            (rows + 1 - last..=rows + 1 - first).rev().collect()
        } else {
            (first..=last).collect()
        };
        let batch: Vec<Vec<Value>> = ids
            .into_iter()
            .map(|id| {
                let row = customer(id, changes && id % 100 == 1);
                def.read_columns
                    .iter()
                    .map(|c| {
                        row[COLUMNS.iter().position(|(n, _)| *n == c.name).unwrap_or(0)].clone()
                    })
                    .collect()
            })
            .collect();
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        builder.add_rows(&batch);
        engine += start.elapsed();
        cpu += thread_cpu() - start_cpu;
        // Freeing the rows is the reader's cost (as allocating them is), outside the engine.
        drop(batch);
        first = last + 1;
    }
    let (start, start_cpu) = (Instant::now(), thread_cpu());
    let plan = builder.finish();
    (
        plan,
        engine + start.elapsed(),
        cpu + (thread_cpu() - start_cpu),
    )
}

/// Heap bytes of the state: its table and its arena of keys, as allocated.
fn state_bytes(state: &SyncState) -> usize {
    state.snapshot.heap_bytes()
}

fn main() {
    let rows: u64 = std::env::var("BENCH_DIFF_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let def = definition();

    // The previous snapshot, all delivered: the state the diff runs against.
    let empty = SyncState::default();
    let (first, first_time, _) = diff(&def, &empty, rows, false);
    let mut state = SyncState::default();
    for (row, key) in first.upserts.iter().zip(first.upsert_keys.iter()) {
        state.apply(&Confirmed::Upserted {
            key: key.into(),
            row_hash: row.row_hash,
        });
    }
    // As loaded from a snapshot file: the arena without spare capacity.
    state.snapshot.shrink_to_fit();
    drop(first);
    let state_bytes = state_bytes(&state);

    // On a machine shared with other work one diff's time is noisy: BENCH_DIFF_REPEAT diffs
    // in the same process, the median shown.
    let repeat: usize = std::env::var("BENCH_DIFF_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..repeat {
        let (plan, time, cpu) = diff(&def, &state, rows, true);
        samples.push((time, cpu));
        last = Some(plan);
    }
    let plan = last.expect("at least one diff");
    let mut times: Vec<f64> = samples.iter().map(|(t, _)| t.as_secs_f64()).collect();
    let mut cpus: Vec<f64> = samples.iter().map(|(_, c)| c.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    if repeat > 1 {
        let each: Vec<String> = samples
            .iter()
            .map(|(t, _)| format!("{:.3}", t.as_secs_f64()))
            .collect();
        println!("diff_engine repeat={repeat} diff_s_each={}", each.join(","));
    }
    let (time, cpu) = (
        Duration::from_secs_f64(times[repeat / 2]),
        Duration::from_secs_f64(cpus[repeat / 2]),
    );
    let found = plan.upserts.len() + plan.removals.len();
    println!(
        "diff_engine rows={rows} changed_found={found} expected={} order={}",
        rows.div_ceil(100),
        if reversed() { "reversed" } else { "delivered" }
    );
    println!(
        "diff_engine first_snapshot_s={:.3} diff_s={:.3} diff_cpu_s={:.3} rows_per_s={:.0} state_bytes_per_row={:.1}",
        first_time.as_secs_f64(),
        time.as_secs_f64(),
        cpu.as_secs_f64(),
        rows as f64 / time.as_secs_f64(),
        state_bytes as f64 / rows as f64
    );
    drop(plan);
    drop(state);

    // DuckDB: the two snapshots as tables, joined on the key, rows that differ counted.
    let db = duckdb::Connection::open_in_memory().expect("duckdb");
    let snapshot = |table: &str, changed: &str| {
        format!(
            "create table {table} as select i as id, 'user' || i || '@example.com' as email, \
             'Customer ' || i as name, ((i * 7919) % 1000000 / 100.0)::decimal(12,2) as lifetime_value, \
             ((i * 104729) % 10000) / 10000.0 + (case when {changed} then 1 else 0 end) as churn_score, \
             ['free','starter','pro','enterprise'][1 + i % 4] as product_tier, \
             timestamptz '2025-01-01 00:00:00+00' + to_microseconds(i % 1000000) as updated_at \
             from range(1, {rows} + 1) t(i)"
        )
    };
    db.execute_batch(&snapshot("previous", "false"))
        .expect("previous");
    db.execute_batch(&snapshot("current", "i % 100 = 1"))
        .expect("current");
    let join = "select count(*) from previous p full outer join current c on p.id = c.id \
                where p.id is null or c.id is null or (p.email, p.name, p.lifetime_value, \
                p.churn_score, p.product_tier, p.updated_at) is distinct from (c.email, c.name, \
                c.lifetime_value, c.churn_score, c.product_tier, c.updated_at)";
    let threads: i64 = db
        .query_row("select current_setting('threads')", [], |r| r.get(0))
        .unwrap_or(0);
    for setting in [1, threads] {
        db.execute_batch(&format!("set threads = {setting}"))
            .expect("threads");
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        let changed: i64 = db.query_row(join, [], |r| r.get(0)).expect("join");
        // With one thread DuckDB runs the query on the calling thread: its CPU time compares
        // with `diff_cpu_s`.
        println!(
            "duckdb_full_outer_join threads={setting} changed_found={changed} s={:.3} calling_thread_cpu_s={:.3}",
            start.elapsed().as_secs_f64(),
            (thread_cpu() - start_cpu).as_secs_f64()
        );
    }
}
