#!/usr/bin/env python3
"""`make bench`: runs the benchmark stages on the lab, writes bench/results/<date>-<release>.json
(the Debian release of the lab's hosts: trixie, bookworm or mixed), then docs/benchmarks.md and
its plots (bench/report.py), which set each release's newest results side by side.

    .venv/bin/python bench/run.py                      every stage (deploy speed first)
    .venv/bin/python bench/run.py --stage dataplane    one stage: deploy, dataplane,
                                                       replication, drills (repeatable)
    .venv/bin/python bench/run.py --stage drills --drill web_pause --repeat 5

Each step takes the shared lab lock (/tmp/ha-webstack-lab.lock) itself, one drill or wrk
comparison at a time, so do not wrap this in `flock` (it would wait for itself). A stage run on
its own updates that stage in today's results file of the lab's release and keeps the others.
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dataplane, deploy_speed, drills, machine, replication, report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# drills last: its automatic-failover drills switch the lab to the database agents for good.
STAGES = ["deploy", "dataplane", "replication", "drills"]


def results_file(release: str) -> Path:
    """Today's results of one release: runs on Debian 12 and 13 are kept apart, side by side."""
    return RESULTS / f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d}-{release}.json"


def run_stage(stage: str, args) -> dict:
    lock = not args.no_lock
    if stage == "deploy":
        return deploy_speed.run(lock)
    if stage == "dataplane":
        return dataplane.run(lock)
    if stage == "drills":
        return drills.run(args.drill, lock, args.repeat)
    return replication.run(lock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["all", *STAGES], action="append",
                        help="repeatable; default: all")
    parser.add_argument("--drill", action="append", choices=list(drills.DRILLS),
                        help="with --stage drills: only these drills (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each drill N times (default: 1)")
    parser.add_argument("--no-lock", action="store_true",
                        help="do not take the lab lock (you already hold it)")
    args = parser.parse_args()
    stages = STAGES if not args.stage or "all" in args.stage else args.stage

    lab = machine.debian()  # the deploy stage rebuilds the lab on the same release
    path = results_file(lab["debian"])
    RESULTS.mkdir(exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["machine"] = machine.describe()
    print(f"[bench] machine: {machine.one_line(data['machine'])}; lab: Debian {lab['debian']}",
          flush=True)
    started = time.monotonic()
    for stage in stages:
        t = time.monotonic()
        result = run_stage(stage, args)
        if stage == "drills" and args.drill:  # a subset of drills replaces only those
            result = {**data.get("drills", {}), **result}
        data[stage] = result
        data[stage]["stage_seconds"] = round(time.monotonic() - t, 1)
        data[stage]["machine"] = data["machine"]
        # after the stage: the deploy stage installs the packages afresh
        data[stage]["lab"] = data["lab"] = machine.describe_lab()
        path.write_text(json.dumps(data, indent=1) + "\n")  # after each stage: keep what ran
    print(f"[bench] {', '.join(stages)} took {time.monotonic() - started:.0f} s; wrote {path}")
    print(report.generate())


if __name__ == "__main__":
    main()
