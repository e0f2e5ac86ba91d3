"""Stage 4 (last): the failure drills of lab/toolkit/drills.py, each run `repeat` times; the
automatic-failover drills (AGENT_DRILLS) at least AGENT_RUNS times, on the lab switched to the
database agents first.

A run is `run_drill`: the drill under its request stream, its figures and its verdict
('problems': the promises it broke, [] when every one held), the lab left whole. Per drill this
stage keeps every run (the per-second series only for the first, which the report plots) and
what they add up to: p50/p99/max of the longest gap between answers, the failed requests of
all runs, and in how many runs the verdict held.
"""

import statistics

from lab.toolkit.deploy import run_deploy
from lab.toolkit.drills import AGENT_DRILLS, DRILLS, run_drill
from lab.toolkit.hosts import DATABASES, agent_role, lab_lock, wait_until

# The automatic-failover drills run at least this often: a failover that works once in a while
# is no failover. They run last: switching the lab to the database agents is for good.
AGENT_RUNS = 10
# The lab switched to the agents with no anti-flap window, so each run may fail over again.
AGENTS = {"LAB_DB_FAILOVER": "automatic", "LAB_DB_ANTI_FLAP_S": "0"}


def aggregate(runs: list[dict]) -> dict:
    """A drill's runs and their aggregates (a skipped run has no figures; a verdict of None,
    not recorded, makes `verdict_held` unknown)."""
    gaps = sorted(r["longest_gap_s"] for r in runs if "sent" in r)
    q = statistics.quantiles(gaps, n=100, method="inclusive") if len(gaps) > 1 else gaps * 99
    verdicts = [r.get("problems") for r in runs]
    return {"runs": runs,
            "longest_gap_s": {"p50": round(q[49], 3), "p99": round(q[98], 3),
                              "max": round(gaps[-1], 3)} if gaps else None,
            "failed_total": sum(r.get("failed", 0) for r in runs),
            "verdict_held": None if None in verdicts else verdicts.count([])}


def run(names: list[str] | None = None, lock: bool = True, repeat: int = 1) -> dict:
    """Each run holds the lab lock on its own and leaves the lab whole (checked)."""
    results = {}
    for name in names or list(DRILLS):
        runs, times = [], repeat
        if name in AGENT_DRILLS:
            _switch_to_agents(lock)
            times = max(repeat, AGENT_RUNS)
        for i in range(1, times + 1):
            print(f"[bench] drill {name} ({i}/{times})", flush=True)
            r = run_drill(name, lock)
            if runs:
                r.pop("series_per_s", None)
            runs.append(r)
            print(f"[bench]   {_line(r)}", flush=True)
        results[name] = aggregate(runs)
    return results


def _switch_to_agents(lock: bool) -> None:
    """The deploy with mysql_failover = "automatic" (a no-op when the lab already runs it)."""
    with lab_lock(lock):
        result = run_deploy(env=AGENTS)
    if result.returncode != 0:
        raise RuntimeError("switching the lab to automatic failover failed:\n"
                           + result.stdout[-2000:] + result.stderr[-2000:])
    # The switch fences the writable primary once (agent/README.md): wait for the pair.
    pair = ["primary", "replica"]
    if wait_until(lambda: sorted(map(agent_role, DATABASES)) == pair, timeout=120) is None:
        raise RuntimeError(f"after the switch the agents say {[agent_role(h) for h in DATABASES]}")


def _line(r: dict) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    keys = ("sent", "failed", "longest_gap_s", "slowest_request_s", "whole_again_s")
    return ", ".join(f"{k}={r.get(k)}" for k in keys) + f"; problems={r['problems']}"
