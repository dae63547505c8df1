#!/usr/bin/env bash
# The performance suite (not a test; results and how to read them in docs/performance.md):
# dbt-activate and the open-source peer drt (drt-core 1.2.1, installed here in its own venv)
# on the same generated data, in the same run, against the same private PostgreSQL and the
# same local HTTP sink. Prints a table of medians and ratios; raw samples go to
# bench/out/samples.tsv.
#
#   bash bench/run.sh                                  # 1,000,000 rows, 3 runs each (drt: 1)
#   BENCH_ROWS=100000 BENCH_RUNS=5 BENCH_DRT_RUNS=3 bash bench/run.sh
#   BENCH_SKIP_DRT=1 bash bench/run.sh                 # dbt-activate only
#   BENCH_DIFF_ROWS=10000000 (0: skip the diff engine), BENCH_MANIFEST_MODELS="1000 10000 50000" ("": skip)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { echo "bench/run.sh: $*" >&2; }

rows=${BENCH_ROWS:-1000000}
runs=${BENCH_RUNS:-3}
drt_runs=${BENCH_DRT_RUNS:-1}
skip_drt=${BENCH_SKIP_DRT:-0}
diff_rows=${BENCH_DIFF_ROWS:-10000000}
manifest_models=${BENCH_MANIFEST_MODELS-"1000 10000 50000"}
uptodate_activations=${BENCH_UPTODATE_ACTIVATIONS:-100}
out=${BENCH_OUT:-"$root/bench/out"}
rm -rf "$out"; mkdir -p "$out"
samples="$out/samples.tsv"
printf 'workload\ttool\twall_s\tpeak_rss_mb\tcpu_s\trows_sent\textra\n' >"$samples"

# ---- tools ---------------------------------------------------------------------
bash "$root/scripts/bootstrap.sh"
export LD_LIBRARY_PATH="$root/.tools/duckdb:${LD_LIBRARY_PATH:-}"
duckdb_version=$(grep -oP '^DUCKDB_VERSION=\K[0-9.]+' "$root/scripts/bootstrap.sh")
drt_venv="$root/.tools/drt-venv"
if [ ! -f "$drt_venv/.complete-1.2.1-$duckdb_version" ]; then
  log "installing drt-core 1.2.1 in .tools/drt-venv"
  rm -rf "$drt_venv"
  python3 -m venv "$drt_venv"
  "$drt_venv/bin/pip" install --quiet --disable-pip-version-check \
    "drt-core[postgres,duckdb]==1.2.1" "duckdb==$duckdb_version" pytz
  touch "$drt_venv/.complete-1.2.1-$duckdb_version"
fi
py="$drt_venv/bin/python"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
[ -n "${BENCH_ACTIVATE:-}" ] || cargo build --release -p dbt-activate   # BENCH_ACTIVATE: measure another build
activate="${BENCH_ACTIVATE:-$root/target/release/dbt-activate}"

# shellcheck source=scripts/postgres.sh
source "$root/scripts/postgres.sh"
pg_url=$ACTIVATE_TEST_PG_URL

# ---- the sink --------------------------------------------------------------------
"$py" "$root/bench/sink.py" "$out/sink.port" &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do [ -s "$out/sink.port" ] && break; sleep 0.1; done
sink_url="http://127.0.0.1:$(cat "$out/sink.port")/hook"
sink_count() { curl -s "$sink_url/count"; }
# CPU seconds (user + system) the sink has used so far.
sink_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$sink_pid/stat"; }

# ---- the data --------------------------------------------------------------------
work="$out/work"
log "generating $rows customers"
"$py" "$root/bench/workload.py" project "$work" "$rows" "$pg_url" "$sink_url"
(cd "$work/dbt" && "$root/.tools/venv/bin/dbt" run --profiles-dir . --quiet)

# measure WORKLOAD TOOL COMMAND...: wall time, peak RSS and CPU of COMMAND (and children).
measure() {
  local workload=$1 tool=$2; shift 2
  /usr/bin/time -f '%e %M %U %S' -o "$out/time" "$@" >"$out/last.log" 2>&1 \
    || { cat "$out/last.log" >&2; log "$tool failed on $workload"; exit 1; }
  read -r wall rss user sys <"$out/time"
  last_wall=$wall
  last_rss_mb=$(awk -v k="$rss" 'BEGIN{printf "%.0f", k / 1024}')
  last_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u + s}')
}
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$last_wall" "$last_rss_mb" "$last_cpu" "$3" "${4:-}" >>"$samples"
  if [ "$2" = dbt-activate ] && [ -n "$results_json" ]; then record_split "$1"; fi
}
# Workload 6: the time split of the run just measured, from its activate_results.json (summed
# over its syncs), next to its wall time: engine overhead = wall - warehouse - destination.
split="$out/engine.tsv"
printf 'workload\twall_s\trows_read\twarehouse_s\tdestination_s\tengine_s\n' >"$split"
results_json=""
record_split() {
  "$py" -c 'import json,sys
r=json.load(open(sys.argv[1]))["results"]
s=lambda k: sum(x.get(k, 0) for x in r)
print("%s\t%s\t%d\t%.3f\t%.3f\t%.3f" % (sys.argv[2], sys.argv[3], s("rows_read"), s("warehouse_time"), s("destination_time"), s("engine_time")))' \
    "$results_json" "$1" "$last_wall" >>"$split"
}

activate_sent() {
  "$py" -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1]))["results"] if x["name"]==sys.argv[2]][0]; print(r["inserted"]+r["updated"]+r["deleted"])' \
    "$work/dbt/target/activate_results.json" "$1"
}
ours_pg() { measure "$1" dbt-activate "$activate" run --project-dir "$work/dbt" --profiles-dir "$work/dbt" -s sync:customers_pg "${@:2}"; }
drt_pg() { measure "$1" drt env -C "$work/drt/project" HOME="$work/drt/home" "$drt_venv/bin/drt" run; }
# Rows drt reports as synced (its summary line: `✓ 20000 synced`).
drt_sent() { grep -oP '[0-9,]+(?= synced)' "$out/last.log" | tail -1 | tr -d , || echo '?'; }
pg_rows() { "$py" "$root/bench/workload.py" pg-count "$pg_url" "$1"; }

# ---- (2) DuckDB -> PostgreSQL, first full sync ----------------------------------------
results_json="$work/dbt/target/activate_results.json"
for i in $(seq "$runs"); do
  "$py" "$root/bench/workload.py" pg-reset "$pg_url"
  rm -rf "$work/dbt/.dbt-activate"
  ours_pg full_sync
  record full_sync dbt-activate "$(activate_sent customers_pg)" "dest_rows=$(pg_rows bench.customers_activate)"
done
if [ "$skip_drt" != 1 ]; then
  for i in $(seq "$drt_runs"); do
    "$py" "$root/bench/workload.py" pg-reset "$pg_url"
    rm -rf "$work/drt/project/.drt" "$work/drt/project/target"
    drt_pg full_sync
    n=$(pg_rows bench.customers_drt)
    record full_sync drt "$n" "dest_rows=$n"
  done
fi

# ---- (3) change detection: 1% changed, 0.5% deleted, 0.5% inserted; then no change ----
changed=$("$py" "$root/bench/workload.py" mutate "$work" "$rows")
ours_pg mirror_changed
record mirror_changed dbt-activate "$(activate_sent customers_pg)" "truly_changed=$changed"
ours_pg mirror_unchanged
record mirror_unchanged dbt-activate "$(activate_sent customers_pg)" "truly_changed=0"
if [ "$skip_drt" != 1 ]; then
  drt_pg mirror_changed
  record mirror_changed drt "$(drt_sent)" "truly_changed=$changed"
  drt_pg mirror_unchanged
  record mirror_unchanged drt "$(drt_sent)" "truly_changed=0"
fi

# ---- (5) HTTP webhook to the local sink ------------------------------------------------
webhook_once() {
  local tool=$1; shift
  local before_count before_cpu
  before_count=$(sink_count); before_cpu=$(sink_cpu)
  "$@"
  local got=$(( $(sink_count) - before_count ))
  local cpu=$(awk -v a="$(sink_cpu)" -v b="$before_cpu" 'BEGIN{printf "%.2f", a - b}')
  record webhook "$tool" "$got" "sink_cpu_s=$cpu"
}
for i in $(seq "$runs"); do
  rm -rf "$work/dbt/.dbt-activate"
  webhook_once dbt-activate measure webhook dbt-activate "$activate" run --project-dir "$work/dbt" --profiles-dir "$work/dbt" -s sync:customers_webhook
done
if [ "$skip_drt" != 1 ]; then
  for i in $(seq "$drt_runs"); do
    webhook_once drt measure webhook drt env -C "$work/drt/project-webhook" HOME="$work/drt/home" "$drt_venv/bin/drt" run
  done
fi

# ---- (1) manifest: load, extract activations and build the graph (`ls`) vs json.load -----
results_json=""   # `ls` writes no results
for models in $manifest_models; do
  dir="$out/manifest-$models"
  "$py" "$root/bench/manifest.py" generate "$work/dbt/target/manifest.json" "$models" "$dir"
  mb=$(du -m "$dir/target/manifest.json" | cut -f1)
  for i in $(seq "$runs"); do
    measure "manifest_$models" dbt-activate "$activate" ls --project-dir "$dir" --profiles-dir "$dir"
    record "manifest_$models" dbt-activate "$((models / 10))" "file_mb=$mb"
    measure "manifest_$models" python-json.load "$py" "$root/bench/manifest.py" json-load "$dir/target/manifest.json"
    last_wall=$(cat "$out/last.log")   # json.load alone, without the interpreter's start
    record "manifest_$models" python-json.load 0 "file_mb=$mb"
  done
  rm -rf "$dir"
done

# ---- (7) no wasted warehouse work: N table models not rebuilt since their last sync --------
if [ "$uptodate_activations" != 0 ]; then
  ut="$work/uptodate"
  results_json="$ut/target/activate_results.json"
  "$py" "$root/bench/uptodate.py" project "$ut" "$uptodate_activations"
  (cd "$ut" && "$root/.tools/venv/bin/dbt" run --profiles-dir . --quiet)
  ours_ut() { measure "$1" dbt-activate "$activate" run --project-dir "$ut" --profiles-dir "$ut" "${@:2}"; }
  ours_ut uptodate_first_sync   # every sync reads its model once
  for i in $(seq "$runs"); do
    ours_ut uptodate
    n=$(grep -c ': up to date: ' "$out/last.log" || true)
    record uptodate dbt-activate 0 "up_to_date=$n/$uptodate_activations"
  done
  for i in $(seq "$runs"); do   # the same run, every model queried (what a run did before)
    ours_ut uptodate_queried --ignore-schedule
    record uptodate_queried dbt-activate 0 "up_to_date=0/$uptodate_activations"
  done
fi

# ---- (4) the diff engine alone, with DuckDB's full outer join in the same run -----------
if [ "$diff_rows" != 0 ]; then
  BENCH_DIFF_ROWS=$diff_rows cargo bench -p activate-executor --bench diff_engine 2>/dev/null | tee "$out/diff_engine.txt"
fi

"$py" "$root/bench/report.py" "$samples" "$rows" "$split"
[ ! -s "$out/diff_engine.txt" ] || { echo; cat "$out/diff_engine.txt"; }
