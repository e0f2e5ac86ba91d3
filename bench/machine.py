"""The machine a benchmark ran on: every figure is stated with it."""

import datetime
import os
import platform
import subprocess


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
