"""Workload 1: synthetic dbt manifests (N models, each with 20 documented columns and two
tests, one in ten models activated), and Python's `json.load` of each, to compare with
`dbt-activate ls` reading the same file.

  manifest.py generate TEMPLATE_MANIFEST MODELS OUT   # OUT/target/manifest.json + project files
  manifest.py json-load FILE                          # prints the seconds json.load took

TEMPLATE_MANIFEST is a real manifest written by dbt for the bench project: its model node
`model.bench.customers` is the template every generated model is cloned from.
"""

import copy
import json
import os
import sys
import time

COLUMN_DOC = "A documented column of the generated model, as teams write them: what it holds, " \
    "where it comes from, how it is computed and who owns it. " * 3


def generate(template_path, models, out):
    with open(template_path) as f:
        manifest = json.load(f)
    template = manifest["nodes"]["model.bench.customers"]
    activation = template["config"]["meta"]["activate"][0]
    nodes, parent_map, child_map = {}, {}, {}
    for i in range(models):
        name = f"model_{i:05d}"
        uid = f"model.bench.{name}"
        node = copy.deepcopy(template)
        parent = f"model.bench.model_{(i - 1) // 2:05d}" if i > 0 else None
        node.update(
            name=name, unique_id=uid, alias=name, fqn=["bench", name],
            path=f"{name}.sql", original_file_path=f"models/{name}.sql",
            relation_name=f'"bench"."main"."{name}"',
            raw_code=f"select * from {{{{ ref('model_{(i - 1) // 2:05d}') }}}}\n" * 10,
            compiled_code=f'select * from "bench"."main"."model_{(i - 1) // 2:05d}"\n' * 10,
            description=COLUMN_DOC,
            columns={f"column_{c:02d}": {"name": f"column_{c:02d}", "description": COLUMN_DOC,
                                         "meta": {}, "data_type": None, "constraints": [],
                                         "quote": None, "tags": [], "granularity": None,
                                         "doc_blocks": []} for c in range(20)},
        )
        node["depends_on"] = {"macros": [], "nodes": [parent] if parent else []}
        node["refs"] = [{"name": f"model_{(i - 1) // 2:05d}", "package": None, "version": None}] if parent else []
        meta = {"activate": dict(activation, name=f"{name}_pg", object=f"bench.{name}")} \
            if i % 10 == 0 else {}
        node["config"] = dict(node["config"], meta=meta)
        node["meta"] = meta
        node["unrendered_config"] = dict(node.get("unrendered_config", {}), meta=meta)
        nodes[uid] = node
        parent_map[uid] = [parent] if parent else []
        child_map.setdefault(uid, [])
        if parent:
            child_map[parent].append(uid)
        for test in ("not_null", "unique"):
            tid = f"test.bench.{test}_{name}_id.{i:08x}"
            nodes[tid] = {
                "database": "bench", "schema": "main_dbt_test__audit", "name": f"{test}_{name}_id",
                "resource_type": "test", "package_name": "bench", "path": f"{test}_{name}_id.sql",
                "original_file_path": "models/schema.yml", "unique_id": tid,
                "fqn": ["bench", f"{test}_{name}_id"], "alias": f"{test}_{name}_id",
                "checksum": {"name": "none", "checksum": ""},
                "config": {"enabled": True, "severity": "ERROR", "meta": {}, "tags": []},
                "tags": [], "description": "", "columns": {}, "meta": {},
                "raw_code": "{{ test_" + test + "(**_dbt_generic_test_kwargs) }}",
                "compiled_code": f'select id from "bench"."main"."{name}" where id is null\n' * 8,
                "depends_on": {"macros": [f"macro.dbt.test_{test}"], "nodes": [uid]},
                "refs": [{"name": name, "package": None, "version": None}],
                "column_name": "id", "attached_node": uid,
                "test_metadata": {"name": test, "kwargs": {"column_name": "id", "model": f"{{{{ get_where_subquery(ref('{name}')) }}}}"}, "namespace": None},
            }
            parent_map[tid] = [uid]
            child_map[uid].append(tid)
            child_map[tid] = []
    manifest["nodes"] = nodes
    manifest["parent_map"] = parent_map
    manifest["child_map"] = child_map
    os.makedirs(os.path.join(out, "target"), exist_ok=True)
    with open(os.path.join(out, "target", "manifest.json"), "w") as f:
        json.dump(manifest, f)
    root = os.path.dirname(os.path.dirname(template_path))
    for name in ("dbt_project.yml", "profiles.yml", "activate.yml"):
        with open(os.path.join(root, name)) as src, open(os.path.join(out, name), "w") as dst:
            dst.write(src.read())


def json_load(path):
    start = time.perf_counter()
    with open(path) as f:
        json.load(f)
    print(f"{time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "json-load":
        json_load(sys.argv[2])
