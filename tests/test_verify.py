"""`make verify` reaches hosts over SSH only: with no `docker` anywhere on PATH it still checks
every host of the lab's inventory, and passes."""

import os
import subprocess
from pathlib import Path

import pytest

from lab.toolkit.deploy import ROOT
from lab.toolkit.hosts import LAB


def _path_without_docker(farm: Path) -> str:
    """A PATH of one directory holding every command on this PATH except docker's own."""
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            link = farm / tool.name
            if not tool.name.startswith("docker") and not link.exists():
                link.symlink_to(tool)
    return str(farm)


@pytest.mark.lab
def test_make_verify_passes_with_no_docker_on_path(tmp_path):
    path = _path_without_docker(tmp_path / "bin")
    assert subprocess.run(["sh", "-c", "command -v docker"], env={"PATH": path}).returncode != 0
    verify = subprocess.run(["make", "verify"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PATH": path})
    assert verify.returncode == 0, verify.stdout[-5000:] + verify.stderr[-2000:]
    summary = verify.stdout.split("verified per host", 1)[1]
    checked = {line.split()[0] for line in summary.splitlines()[1:] if "checks passed" in line}
    assert {h.name for h in LAB.managed_hosts} <= checked
