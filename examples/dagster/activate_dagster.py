"""Dagster: every dbt-activate sync as an asset downstream of its dbt model's asset.

The dbt models are assets through dagster-dbt (`dbt build`); each sync that
`dbt-activate ls --output json` lists becomes an asset `activate/<sync>` that depends on
the models it reads. Materializing it runs `dbt-activate run --select <sync>` and reports
the counts of `target/activate_results.json` as the materialization's metadata; a failed
sync fails the asset.

Settings, from the environment:
  DBT_PROJECT_DIR     the dbt project (default: dbt_project_example beside examples/)
  DBT_PROFILES_DIR    where profiles.yml is (default: the project, if it has one, else ~/.dbt)
  DBT_TARGET          the dbt target (default: the profile's)
  DBT_ACTIVATE_BIN    the dbt-activate executable (default: `dbt-activate` on PATH)
  DBT_EXECUTABLE      the dbt executable (default: `dbt` on PATH)

Run it:  dagster dev -f examples/dagster/activate_dagster.py
"""

import json
import os
import subprocess
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets, get_asset_key_for_model

PROJECT_DIR = Path(
    os.environ.get(
        "DBT_PROJECT_DIR", Path(__file__).resolve().parents[2] / "dbt_project_example"
    )
)
PROFILES_DIR = os.environ.get("DBT_PROFILES_DIR") or (
    str(PROJECT_DIR) if (PROJECT_DIR / "profiles.yml").is_file() else None
)
TARGET = os.environ.get("DBT_TARGET") or None
ACTIVATE = os.environ.get("DBT_ACTIVATE_BIN", "dbt-activate")
DBT = os.environ.get("DBT_EXECUTABLE", "dbt")

# Exit codes of dbt-activate (docs/exit-codes.md): 0 every sync succeeded, 1 a sync failed
# or rows were rejected (retryable: the next run resends exactly what is missing),
# 2 a configuration or fatal error (not retryable until someone fixes it).
RETRYABLE = {1}

dbt_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROFILES_DIR, target=TARGET)


def activate_args(*args: str) -> list[str]:
    cmd = [ACTIVATE, *args, "--project-dir", str(PROJECT_DIR)]
    if TARGET:
        cmd += ["--target", TARGET]
    return cmd


@dbt_assets(manifest=dbt_project.manifest_path)
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


def list_syncs() -> list[dict]:
    """The project's syncs, as `dbt-activate ls --output json` prints them (one per line)."""
    out = subprocess.run(
        activate_args("ls", "--output", "json"),
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def sync_asset(sync: dict) -> AssetsDefinition:
    models = [
        node.split(".")[-1]
        for node in sync["depends_on"]["nodes"]
        if node.startswith("model.")
    ]

    @asset(
        key=AssetKey(["activate", sync["name"]]),
        deps=[get_asset_key_for_model([dbt_models], m) for m in models],
        group_name="activate",
        kinds={"dbt-activate"},
        description=f"{sync['name']}: {sync['sync_mode']} to {sync['destination']}.{sync['object']}",
    )
    def _sync(context: AssetExecutionContext) -> MaterializeResult:
        proc = subprocess.run(
            # Dagster decides when a sync runs: its own schedules and sensors replace
            # meta.activate's `schedule`.
            activate_args("run", "--select", sync["name"], "--ignore-schedule"),
            capture_output=True,
            text=True,
        )
        context.log.info(proc.stderr[-4000:])
        results = json.loads((PROJECT_DIR / "target" / "activate_results.json").read_text())
        result = next((r for r in results["results"] if r["name"] == sync["name"]), None)
        if proc.returncode != 0 or result is None or result["status"] != "success":
            raise Failure(
                description=f"dbt-activate run --select {sync['name']} exited {proc.returncode}: "
                + (result["message"] if result else proc.stderr[-2000:]),
                allow_retries=proc.returncode in RETRYABLE,
            )
        counts = {
            k: result[k]
            for k in ("rows_read", "inserted", "updated", "deleted", "cleared", "rejected", "unchanged")
        }
        return MaterializeResult(
            metadata={
                **counts,
                "destination": MetadataValue.text(f"{sync['destination']}.{sync['object']}"),
                "invocation_id": MetadataValue.text(results["metadata"]["invocation_id"]),
            }
        )

    return _sync


defs = Definitions(
    assets=[dbt_models, *(sync_asset(s) for s in list_syncs())],
    resources={
        "dbt": DbtCliResource(
            project_dir=dbt_project, profiles_dir=PROFILES_DIR, dbt_executable=DBT, target=TARGET
        )
    },
)
