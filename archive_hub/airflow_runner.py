"""Running a generated DAG with Airflow itself (`airflow db migrate` + `airflow dags test`) on the
embedded defaults: metadata in SQLite under ARCHIVE_HUB_HOME/airflow, DAGs from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from archive_hub.settings import PROJECT_ROOT, Settings


def airflow_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(settings.home / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    env["ARCHIVE_HUB_HOME"] = str(settings.home)
    return env


def run_airflow_dag(
    dag_id: str,
    settings: Settings,
    log: Path,
    timeout: float | None = None,
    conf: dict[str, Any] | None = None,
) -> int:
    """`airflow db migrate` then `airflow dags test` (a real DAG run, tasks executed in-process)."""
    env = airflow_env(settings)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).parent / "airflow")
    with log.open("w") as fh:
        migrated = subprocess.run([airflow, "db", "migrate"], env=env, stdout=fh, stderr=subprocess.STDOUT)
        if migrated.returncode != 0:
            return migrated.returncode
        command = [airflow, "dags", "test", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
        return subprocess.run(
            command, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode
