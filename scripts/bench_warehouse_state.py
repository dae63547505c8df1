"""The driver of scripts/bench-warehouse-state.sh (see there)."""

import argparse
import atexit
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL = """
select i as id,
       'customer-' || cast(i as varchar) as name,
       (i * 7) % 1000 + case when i % 100 = 0 then {{ var('round', 0) }} else 0 end as score,
       'segment-' || cast(i % 13 as varchar) as segment
from {% if target.type == 'duckdb' %}range({{ var('rows') }}) as t(i)
     {% else %}generate_series(0, {{ var('rows') }} - 1) as t(i){% endif %}
"""

SCHEMA = """version: 2
models:
  - name: big
    config:
      meta:
        activate:
          destination: sink
          object: big
          sync_mode: mirror
          primary_key: id
"""


class ByteCountingProxy:
    """A loopback TCP proxy counting the bytes the server sends to the client."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.server_to_client = 0
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer, count):
            try:
                while data := await reader.read(65536):
                    if count:
                        self.server_to_client += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            server_reader, server_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(
                pipe(client_reader, server_writer, False),
                pipe(server_reader, client_writer, True),
            )

        async def start():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        self.loop.run_until_complete(start())


def start_sink(tmp):
    """bench/sink.py on loopback, stopped when this process ends; returns its URL."""
    port_file = os.path.join(tmp, "sink.port")
    sink = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "sink.py"), port_file])
    atexit.register(sink.kill)
    for _ in range(100):
        if os.path.exists(port_file) and open(port_file).read():
            return f"http://127.0.0.1:{open(port_file).read()}/hook"
        time.sleep(0.1)
    sys.exit("bench/sink.py did not start")


def run(cmd, cwd, env, check=True):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def timed(cmd, cwd, env):
    """Wall seconds and peak RSS (MiB) of a command."""
    start = time.monotonic()
    out = run(["/usr/bin/time", "-v"] + cmd, cwd, env)
    wall = time.monotonic() - start
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    return wall, (int(rss.group(1)) / 1024 if rss else float("nan")), out


def project(tmp, name, kind, pg, warehouse_state, port, sink_url):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "models"))
    with open(os.path.join(d, "dbt_project.yml"), "w") as f:
        f.write(f"name: bench\nversion: '1.0'\nprofile: bench\nmodel-paths: [models]\n"
                f"models:\n  bench:\n    +materialized: table\n")
    with open(os.path.join(d, "models", "big.sql"), "w") as f:
        f.write(MODEL)
    with open(os.path.join(d, "models", "schema.yml"), "w") as f:
        f.write(SCHEMA)
    if kind == "duckdb":
        output = f"      type: duckdb\n      path: {d}/bench.duckdb\n      threads: 2\n"
    else:
        output = (f"      type: postgres\n      host: 127.0.0.1\n      port: {port}\n"
                  f"      user: {pg.username}\n      password: ''\n      dbname: {name}\n"
                  f"      schema: analytics\n      threads: 2\n")
    with open(os.path.join(d, "profiles.yml"), "w") as f:
        f.write(f"bench:\n  target: bench\n  outputs:\n    bench:\n{output}")
    # The first run sends every row to a local HTTP sink that answers at once (bench/sink.py):
    # the `file` destination rewrites its whole file after each batch, fine for debugging
    # but quadratic for a 10,000,000-row seeding run.
    activate = f"destinations:\n  sink: {{type: webhook, url: '{sink_url}', batch_size: 10000}}\n"
    if warehouse_state:
        activate += "state: {type: warehouse, schema: activate_state}\n"
    with open(os.path.join(d, "activate.yml"), "w") as f:
        f.write(activate)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--dbt", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--repeat", type=int, default=3, help="plan runs per case (median shown)")
    args = ap.parse_args()
    pg = urllib.parse.urlparse(args.pg_url)
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", NO_COLOR="1",
               DBT_ACTIVATE_IGNORE_SCHEDULE="true")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        sink_url = start_sink(tmp)
        for kind in ["duckdb", "postgres"]:
            for state in ["local", "warehouse"]:
                name = f"bench_{kind}_{state}"
                proxy = None
                port = pg.port
                if kind == "postgres":
                    run(["psql", args.pg_url, "-c", f"DROP DATABASE IF EXISTS {name}"], tmp, env,
                        check=False)
                    run(["psql", args.pg_url, "-c", f"CREATE DATABASE {name}"], tmp, env)
                    proxy = ByteCountingProxy(pg.hostname, pg.port)
                    port = proxy.port
                d = project(tmp, name, kind, pg, state == "warehouse", port, sink_url)
                dbt = [args.dbt, "build", "--profiles-dir", d, "--project-dir", d]
                run(dbt + ["--vars", f"{{rows: {args.rows}, round: 0}}"], d, env)
                first, first_rss, _ = timed([args.binary, "run", "--project-dir", d], d, env)
                run(dbt + ["--vars", f"{{rows: {args.rows}, round: 1}}"], d, env)
                walls, rsss = [], []
                for _ in range(args.repeat):
                    before = proxy.server_to_client if proxy else 0
                    wall, rss, out = timed([args.binary, "plan", "--project-dir", d], d, env)
                    sent = (proxy.server_to_client - before) if proxy else None
                    walls.append(wall)
                    rsss.append(rss)
                wall, rss = statistics.median(walls), max(rsss)
                line = next((l for l in (out.stdout + out.stderr).splitlines()
                             if " big " in l and "[" in l), "")
                results.append((kind, state, first, first_rss, wall, rss, sent, line.strip()))
                print(f"{kind:8} {state:9} first run {first:7.1f}s {first_rss:6.0f} MiB  "
                      f"plan {wall:6.2f}s  "
                      f"peak {rss:7.0f} MiB  bytes {sent}  | {line.strip()}", flush=True)
    print()
    print(f"rows: {args.rows:,}, 1% changed; `plan` median of {args.repeat} runs; machine: {platform.node()} "
          f"({os.cpu_count()} cores), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| warehouse | state | first run (s) | first run peak (MiB) | diff: `plan` (s) "
          "| `plan` peak memory (MiB) | bytes from PostgreSQL |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, state, first, first_rss, wall, rss, sent, _ in results:
        shown = f"{sent:,}" if sent is not None else "n/a (embedded)"
        print(f"| {kind} | {state} | {first:.1f} | {first_rss:.0f} | {wall:.2f} | {rss:.0f} "
              f"| {shown} |")


if __name__ == "__main__":
    main()
