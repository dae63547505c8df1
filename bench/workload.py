"""Generates and changes the benchmark data (run with the drt venv's Python, which has duckdb).

  workload.py project DIR ROWS PG_URL SINK_URL   # the dbt project, the drt project, the source table
  workload.py mutate DIR ROWS                    # change 1%, delete 0.5%, insert 0.5% of the rows
  workload.py pg-reset PG_URL                    # (re)create the two destination tables, empty
  workload.py pg-count PG_URL TABLE              # rows in a destination table

The model `customers` is a view over `bench_src.customers_src`, so changing the source table
changes what both tools read without a dbt rebuild.
"""

import os
import sys
import textwrap

import duckdb

COLUMNS = ["id", "email", "name", "lifetime_value", "churn_score", "product_tier", "updated_at"]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())


def project(root, rows, pg_url, sink_url):
    dbt = os.path.join(root, "dbt")
    db = os.path.join(dbt, "bench.duckdb")
    write(f"{dbt}/dbt_project.yml", """
        name: bench
        version: "1.0"
        profile: bench
        model-paths: [models]
        """)
    write(f"{dbt}/profiles.yml", f"""
        bench:
          target: dev
          outputs:
            dev: {{type: duckdb, path: "{db}", threads: 1}}
        """)
    write(f"{dbt}/models/customers.sql", """
        {{ config(materialized='view') }}
        select * from bench_src.customers_src
        """)
    # No `mapping`: every column under its own name, as drt sends them.
    write(f"{dbt}/models/schema.yml", """
        version: 2
        models:
          - name: customers
            config:
              meta:
                activate:
                  - name: customers_pg
                    destination: pg
                    object: bench.customers_activate
                    sync_mode: mirror
                    primary_key: id
                  - name: customers_webhook
                    destination: sink
                    object: customers
                    sync_mode: full_refresh
                    primary_key: id
        """)
    write(f"{dbt}/activate.yml", f"""
        destinations:
          pg: {{type: postgres, url: "{pg_url}", batch_size: 10000}}
          sink: {{type: webhook, url: "{sink_url}", batch_size: 10000}}
        """)
    con = duckdb.connect(db)
    con.execute("create schema if not exists bench_src")
    con.execute(f"""
        create or replace table bench_src.customers_src as
        select
            i as id,
            'user' || i || '@example.com' as email,
            'Customer ' || i as name,
            round(((i * 7919) % 1000000) / 100.0, 2)::decimal(12, 2) as lifetime_value,
            ((i * 104729) % 10000) / 10000.0 as churn_score,
            ['free', 'starter', 'pro', 'enterprise'][1 + (i % 4)] as product_tier,
            timestamptz '2025-01-01 00:00:00+00' + to_seconds(i) as updated_at
        from range(1, {rows} + 1) t(i)
        """)
    con.close()

    drt = os.path.join(root, "drt")
    write(f"{drt}/home/.drt/profiles.yml", f"""
        bench:
          type: duckdb
          database: "{db}"
        """)
    write(f"{drt}/project/drt_project.yml", """
        name: bench
        version: "0.1"
        profile: bench
        """)
    from urllib.parse import urlparse
    pg = urlparse(pg_url)
    write(f"{drt}/project/syncs/customers_pg.yml", f"""
        name: customers_pg
        model: "select * from bench_src.customers_src"
        destination:
          type: postgres
          host: "{pg.hostname}"
          port: {pg.port}
          dbname: "{pg.path.lstrip('/')}"
          user: "{pg.username}"
          table: bench.customers_drt
          upsert_key: [id]
        sync:
          mode: mirror
          batch_size: 10000
        """)
    write(f"{drt}/project-webhook/drt_project.yml", """
        name: bench_webhook
        version: "0.1"
        profile: bench
        """)
    write(f"{drt}/project-webhook/syncs/customers_webhook.yml", f"""
        name: customers_webhook
        model: "select * from bench_src.customers_src"
        destination:
          type: rest_api
          url: "{sink_url}"
          method: POST
          headers:
            Content-Type: "application/json"
          body_mode: batch
          batch_template: "{{{{ rows | tojson_safe }}}}"
        sync:
          mode: full
          batch_size: 10000
        """)


def mutate(root, rows):
    """1% of the rows change a mapped value, 0.5% are deleted, 0.5% are inserted: 2% truly
    changed rows (10,000 + 5,000 + 5,000 at 1,000,000 rows)."""
    con = duckdb.connect(os.path.join(root, "dbt", "bench.duckdb"))
    con.execute("update bench_src.customers_src set churn_score = churn_score + 1 where id % 100 = 1")
    con.execute("delete from bench_src.customers_src where id % 200 = 2")
    first = int(con.execute("select max(id) from bench_src.customers_src").fetchone()[0]) + 1
    count = rows // 200
    con.execute(f"""
        insert into bench_src.customers_src
        select i, 'user' || i || '@example.com', 'Customer ' || i, 1.00, 0.5, 'free',
               timestamptz '2026-01-01 00:00:00+00'
        from range({first}, {first + count}) t(i)
        """)
    con.close()
    print(rows // 100 + rows // 200 + count)


def pg_connect(url):
    import psycopg2
    return psycopg2.connect(url)


def pg_reset(url):
    con = pg_connect(url)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("create schema if not exists bench")
    for table in ("customers_activate", "customers_drt"):
        cur.execute(f"drop table if exists bench.{table}")
        cur.execute(f"""create table bench.{table} (
            id bigint primary key, email text, name text, lifetime_value numeric(12, 2),
            churn_score double precision, product_tier text, updated_at timestamptz)""")
    con.close()


def pg_count(url, table):
    con = pg_connect(url)
    cur = con.cursor()
    cur.execute(f"select count(*) from {table}")
    print(cur.fetchone()[0])
    con.close()


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "project":
        project(args[0], int(args[1]), args[2], args[3])
    elif command == "mutate":
        mutate(args[0], int(args[1]))
    elif command == "pg-reset":
        pg_reset(args[0])
    elif command == "pg-count":
        pg_count(args[0], args[1])
    else:
        sys.exit(f"unknown command {command}")
