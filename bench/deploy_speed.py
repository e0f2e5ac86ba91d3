"""Deploy speed: a full deploy onto fresh lab hosts, a no-change re-run, and the no-change re-run
again with 4 web servers instead of 2 (how its cost grows with the number of hosts).

This stage rebuilds the lab (`lab/lab.py up --fresh`) and scales it to 4 web servers and back,
as tests/test_scale_out.py does; it holds the lab lock throughout and leaves a freshly deployed
2-web-server lab. Run it on its own with `bench/run.py --stage deploy`.
"""

import os
import time

from bench.labctl import ROOT, lab_lock, restore, sh

PYINFRA = str(ROOT / ".venv/bin/pyinfra")


def lab_up(web_servers: int, fresh: bool = False) -> float:
    env = dict(os.environ, LAB_WEB_SERVERS=str(web_servers))
    start = time.monotonic()
    sh("python3", "lab/lab.py", "up", *(["--fresh"] if fresh else []), cwd=ROOT, env=env,
       timeout=900, check=True)
    return round(time.monotonic() - start, 1)


def deploy() -> float:
    """Wall time of one full `pyinfra -y inventories/lab.py deploy.py`."""
    start = time.monotonic()
    sh(PYINFRA, "-y", "inventories/lab.py", "deploy.py", cwd=ROOT, timeout=1200, check=True)
    return round(time.monotonic() - start, 1)


def run(lock: bool = True) -> dict:
    with lab_lock(lock):
        print("[bench] deploy speed: fresh lab (lab/lab.py up --fresh)", flush=True)
        r = {"lab_up_fresh_s": lab_up(2, fresh=True)}
        r["full_deploy_fresh_s"] = deploy()
        print(f"[bench]   full deploy {r['full_deploy_fresh_s']} s", flush=True)
        r["no_change_rerun_2_web_s"] = deploy()
        print(f"[bench]   no-change re-run (8 hosts) {r['no_change_rerun_2_web_s']} s", flush=True)
        try:
            r["lab_up_4_web_s"] = lab_up(4)
            r["deploy_adding_2_web_s"] = deploy()
            r["no_change_rerun_4_web_s"] = deploy()
            print(f"[bench]   no-change re-run (10 hosts) {r['no_change_rerun_4_web_s']} s",
                  flush=True)
        finally:
            lab_up(2)
            r["deploy_back_to_2_web_s"] = deploy()
        restore()
    r["managed_hosts"] = {"2_web": 7, "4_web": 9}  # the client is not managed
    return r
