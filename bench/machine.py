"""The machine a benchmark ran on and what the lab's hosts ran: every figure is stated with it."""

import datetime
import os
import platform
import subprocess

from lab.toolkit.hosts import LAB, primary, run
from lab.topology import Topology


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with open("/proc/meminfo") as f:
        kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return round(kib / 2**20, 1)


def _docker_version() -> str:
    out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def describe() -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "kernel": platform.release(),
        "docker_server": _docker_version(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def one_line(m: dict) -> str:
    return (f"{m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel "
            f"{m['kernel']}, Docker {m['docker_server']}; {m['date_utc']}")


# The package behind each tier, asked of the host the figures lean on: lb-01 holds the floating
# IP, web-01 is the plain-HTTP side, the primary takes the writes (None: whichever it is).
PACKAGES = (("lb-01", "haproxy"), ("web-01", "nginx"), (None, "mariadb-server"))


def debian(lab: Topology = LAB) -> dict:
    """The Debian release of the lab's hosts; a mixed lab is 'mixed', with each host's."""
    if len(lab.releases) == 1:
        return {"debian": lab.releases[0]}
    return {"debian": "mixed", "hosts": {h.name: h.debian for h in lab.hosts}}


def _version(host: str, package: str) -> str | None:
    """A package's version on a lab host; None if it is not installed or the host did not
    answer (a stage's figures are written all the same)."""
    try:
        out = run(host, "dpkg-query", "-W", "-f", "${Version}", package, timeout=20)
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def packages() -> dict:
    """{host: {package: version}} of the packages under test, from dpkg on the lab's hosts."""
    found = {}
    for host, package in PACKAGES:
        host = host or primary()
        found.setdefault(host, {})[package] = _version(host, package)
    return found


def describe_lab() -> dict:
    """The lab as the figures ran on it (lab/.state/topology.json): release and packages."""
    return {**debian(), "packages": packages()}
