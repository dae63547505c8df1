"""Materializes every asset of examples/dagster/activate_dagster.py for real (dbt build,
then each dbt-activate sync) and prints, as one JSON object, each materialized asset key
with its metadata. Run by tests/tests/e2e/orchestrators.rs in .tools/dagster-venv."""

import importlib.util
import json
import sys

from dagster import materialize

spec = importlib.util.spec_from_file_location("activate_dagster", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

defs = module.defs
result = materialize(list(defs.assets), resources=defs.resources, raise_on_error=False)
out = {"success": result.success, "assets": {}}
for event in result.get_asset_materialization_events():
    materialization = event.step_materialization_data.materialization
    out["assets"]["/".join(materialization.asset_key.path)] = {
        key: getattr(value, "value", value) for key, value in materialization.metadata.items()
    }
print(json.dumps(out, default=str))
