"""Deploy speed: a full deploy onto fresh lab hosts, a no-change re-run, and the no-change re-run
again with 4 web servers instead of 2 (how its cost grows with the number of hosts).

This stage rebuilds the lab (`lab/lab.py up --fresh`) and scales it to 4 web servers and back,
as tests/test_scale_out.py does; it holds the lab lock throughout and leaves a freshly deployed
2-web-server lab. Run it on its own with `bench/run.py --stage deploy`.
"""

import time

from lab.toolkit.deploy import run_deploy
from lab.toolkit.hosts import lab_lock, lab_up, restore


def deploy() -> None:
    """One full `pyinfra -y inventories/lab.py deploy.py`; raises if it fails."""
    result = run_deploy(timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"deploy failed: {(result.stdout + result.stderr)[-800:]}")


def timed(step, *args, **kw) -> float:
    """Wall time of one step, in seconds."""
    start = time.monotonic()
    step(*args, **kw)
    return round(time.monotonic() - start, 1)


def run(lock: bool = True) -> dict:
    with lab_lock(lock):
        print("[bench] deploy speed: fresh lab (lab/lab.py up --fresh)", flush=True)
        r = {"lab_up_fresh_s": timed(lab_up, 2, fresh=True)}
        r["full_deploy_fresh_s"] = timed(deploy)
        print(f"[bench]   full deploy {r['full_deploy_fresh_s']} s", flush=True)
        r["no_change_rerun_2_web_s"] = timed(deploy)
        print(f"[bench]   no-change re-run (8 hosts) {r['no_change_rerun_2_web_s']} s", flush=True)
        try:
            r["lab_up_4_web_s"] = timed(lab_up, 4)
            r["deploy_adding_2_web_s"] = timed(deploy)
            r["no_change_rerun_4_web_s"] = timed(deploy)
            print(f"[bench]   no-change re-run (10 hosts) {r['no_change_rerun_4_web_s']} s",
                  flush=True)
        finally:
            lab_up(2)
            r["deploy_back_to_2_web_s"] = timed(deploy)
        restore()
    r["managed_hosts"] = {"2_web": 7, "4_web": 9}  # the client is not managed
    return r
