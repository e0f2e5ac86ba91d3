"""Run pyinfra as an operator would (the deploy, or an ops/ file) and read what it changed."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAB_INVENTORY = "inventories/lab.py"


def run_deploy(*extra: str, cwd: Path = ROOT, inventory: str = LAB_INVENTORY,
               timeout: int = 900, deploy: str = "deploy.py",
               env: dict | None = None) -> subprocess.CompletedProcess:
    """pyinfra with a deploy file (deploy.py or an ops/ file); env adds variables, e.g.
    LAB_DB_PRIMARY for the lab inventory."""
    return subprocess.run([str(ROOT / ".venv/bin/pyinfra"), "-y", *extra, inventory, deploy],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def changed_by_host(result: subprocess.CompletedProcess) -> dict[str, set[str]]:
    """From `pyinfra --json` output: {host: names of the operations that changed it}."""
    changed: dict[str, set[str]] = {}
    for op in json.loads(result.stdout)["results"]["operations"]:
        for name in op["success"]:
            changed.setdefault(name, set()).add(op["name"])
    return changed


def changed_operations(result: subprocess.CompletedProcess) -> list[str]:
    """From `pyinfra --json` output: 'operation: hosts' for every op that changed or failed."""
    results = json.loads(result.stdout)["results"]
    return [f"{op['name']}: {op['success'] + op['error']}" for op in results["operations"]
            if op["success"] or op["error"]]
