"""Workload 7 (no wasted warehouse work): a dbt-duckdb project of N table models, each with
one activation to a local file destination (run with the drt venv's Python).

  uptodate.py project DIR N     # writes DIR/dbt_project.yml, profiles.yml, activate.yml, models/

bench/run.sh then runs `dbt run`, a first `dbt-activate run` (every sync reads its model),
and times the next runs: no model was rebuilt, so no sync should query the warehouse.
"""

import os
import sys
import textwrap


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())


def project(root, n):
    db = os.path.join(root, "uptodate.duckdb")
    write(f"{root}/dbt_project.yml", """
        name: uptodate
        version: "1.0"
        profile: uptodate
        model-paths: [models]
        models:
          uptodate:
            +materialized: table
        """)
    write(f"{root}/profiles.yml", f"""
        uptodate:
          target: dev
          outputs:
            dev: {{type: duckdb, path: "{db}", threads: 4}}
        """)
    write(f"{root}/activate.yml", """
        destinations:
          files: {type: file, path: "synced", format: jsonl}
        """)
    entries = []
    for i in range(n):
        name = f"segment_{i:03d}"
        write(f"{root}/models/{name}.sql", f"""
            select r as id, 'member ' || r || ' of {name}' as label, r % 7 as tier
            from range(1, 101) t(r)
            """)
        entries.append(f"""
          - name: {name}
            config:
              meta:
                activate:
                  destination: files
                  object: {name}
                  sync_mode: mirror
                  primary_key: id
        """)
    write(f"{root}/models/schema.yml", "version: 2\nmodels:\n" + "".join(
        textwrap.indent(textwrap.dedent(e).lstrip(), "  ") for e in entries))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "project":
        project(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
