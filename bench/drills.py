"""Failure drills under a steady request stream from `client` through the floating IP.

Each drill starts a paced stream (bench/stream.py, run inside `client`), breaks one thing,
repairs it (or lets systemd/keepalived do so), waits until the stack is whole again and then
reports: requests sent and failed, the longest gap between successful answers, the slowest
request, the seconds until whole again, and a per-second series for the plots.
"""

import json
import subprocess
import time
from pathlib import Path

from bench.labctl import (
    VIP,
    all_servers_up,
    db_roles_as_built,
    dexec,
    lab_lock,
    mariadb_answers,
    replica_caught_up,
    replica_running,
    restore,
    server_up,
    sh,
    sql,
    vip_holders,
    wait_until,
)

STREAM_SCRIPT = Path(__file__).with_name("stream.py")
CA = Path(__file__).resolve().parent.parent / "secrets" / "lab-ca" / "ca.crt"
CLIENT_CA = "/tmp/ha-webstack-lab-ca.crt"
READ_RATE, WRITE_RATE = 50, 20  # requests/s: steady, and well below what the stack serves


class Stream:
    """The in-client request stream as a context manager; `.result` after the block."""

    def __init__(self, path: str, method: str = "GET", rate: float = READ_RATE,
                 seconds: float = 120, tag: str = "bench"):
        self.stop_file = f"/tmp/ha-webstack-stream-{tag}.stop"
        self.cmd = ["docker", "exec", "-i", "client", "python3", "-", f"https://{VIP}{path}",
                    "--rate", str(rate), "--seconds", str(seconds), "--method", method,
                    "--tag", tag, "--ca", CLIENT_CA, "--stop-file", self.stop_file]
        self.seconds = seconds
        self.events: list[tuple[float, str]] = []
        self.result: dict = {}

    def __enter__(self):
        sh("docker", "cp", str(CA), f"client:{CLIENT_CA}", check=True)
        with open(STREAM_SCRIPT) as script:
            self.proc = subprocess.Popen(self.cmd, stdin=script, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
        self.started = time.time()
        time.sleep(2)  # a baseline before anything breaks
        return self

    def mark(self, label: str) -> float:
        now = time.time()
        self.events.append((now, label))
        return now

    def __exit__(self, *exc):
        time.sleep(2)  # and a tail after the stack is whole again
        dexec("client", "touch", self.stop_file)
        out, err = self.proc.communicate(timeout=self.seconds + 30)
        if self.proc.returncode != 0:
            raise RuntimeError(f"stream failed: {err[-1000:]}")
        self.result = json.loads(out)


def summarize(stream: Stream) -> dict:
    records = stream.result["records"]
    ok = [r for r in records if isinstance(r[2], int) and 200 <= r[2] < 300]
    failed = [r for r in records if r not in ok]
    ends = sorted(r[1] for r in ok)
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    t0 = stream.started
    span = int(max((r[1] for r in records), default=t0) - t0) + 1
    series = {"ok": [0] * span, "failed": [0] * span}
    for r in records:
        series["ok" if r in ok else "failed"][int(r[1] - t0)] += 1
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[str(r[2])] = kinds.get(str(r[2]), 0) + 1
    return {
        "path": stream.result["url"].split(VIP, 1)[1], "method": stream.result["method"],
        "rate": stream.result["rate"], "sent": len(records), "failed": len(failed),
        "failures_by_kind": kinds,
        "longest_gap_s": round(max(gaps, default=0.0), 3),
        "slowest_request_s": round(max((r[1] - r[0] for r in records), default=0.0), 3),
        "served_by": sorted({r[3] for r in ok if r[3]}),
        "events": [[round(t - t0, 2), label] for t, label in stream.events],
        "series_per_s": series,
    }


def seconds_since(t: float) -> float:
    return round(time.time() - t, 2)


def _whole_since(t: float, predicate, timeout: float) -> float | None:
    """Seconds from t until predicate() holds; None if it did not within timeout."""
    return seconds_since(t) if wait_until(predicate, timeout) is not None else None


# --- the drills -----------------------------------------------------------------------------

def _out_and_back(tag: str, fault: str, do_fault, hold_s: float, fix: str, do_fix) -> dict:
    """Break web-01 under a stream, hold the fault for hold_s, repair it: when HAProxy took it
    out of rotation, and how long after the repair it was whole again."""
    with Stream("/healthz", tag=tag) as s:
        t = s.mark(fault)
        do_fault()
        out = wait_until(lambda: not server_up("web-01"), 15)
        time.sleep(max(0.0, hold_s - (time.time() - t)))
        t_fix = s.mark(fix)
        do_fix()
        whole = _whole_since(t_fix, lambda: server_up("web-01"), 30)
    return {**summarize(s), "out_of_rotation_s": _r(out), "whole_again_s": whole,
            "whole_again_from": fix, "_fault_at": t - s.started}


def nginx_graceful_stop() -> dict:
    return _out_and_back(
        "graceful", "systemctl stop nginx (web-01)",
        lambda: dexec("web-01", "systemctl", "stop", "nginx", check=True), 4,
        "systemctl start nginx", lambda: dexec("web-01", "systemctl", "start", "nginx", check=True))


def web_kill9() -> dict:
    # nginx has no Restart=: it is started again; the app restarts itself (Restart=always).
    return _out_and_back(
        "kill9", "kill -9 nginx + app (web-01)",
        lambda: dexec("web-01", "systemctl", "kill", "--signal=KILL", "nginx", "ha-webstack-app",
                      check=True), 3,
        "systemctl start nginx", lambda: dexec("web-01", "systemctl", "start", "nginx", check=True))


def app_kill9() -> dict:
    """The app alone: nginx stays up and answers 502 until systemd has restarted gunicorn."""
    with Stream("/healthz", tag="appkill") as s:
        t = s.mark("kill -9 the app only (web-01)")
        dexec("web-01", "systemctl", "kill", "--signal=KILL", "ha-webstack-app", check=True)
        time.sleep(0.5)
        whole = wait_until(lambda: dexec("web-01", "curl", "-sf", "-o", "/dev/null",
                                         "http://127.0.0.1/healthz").returncode == 0
                           and server_up("web-01"), 30)
    return {**summarize(s), "whole_again_s": _r(whole, 0.5), "whole_again_from": "kill",
            "_fault_at": t - s.started}


def web_pause(seconds: float = 8) -> dict:
    return _out_and_back("pause", "docker pause web-01",
                         lambda: sh("docker", "pause", "web-01", check=True), seconds,
                         "docker unpause web-01",
                         lambda: sh("docker", "unpause", "web-01", check=True))


def haproxy_kill9() -> dict:
    with Stream("/healthz", tag="haproxy") as s:
        t = s.mark("kill -9 haproxy (lb-01)")
        dexec("lb-01", "systemctl", "kill", "--signal=KILL", "haproxy", check=True)
        seen: set[str] = set()

        def whole() -> bool:  # also notes whether keepalived moved the VIP meanwhile
            holders = vip_holders()
            seen.update(holders)
            return holders == ["lb-01"] and all_servers_up()

        time.sleep(0.5)
        back = wait_until(whole, 60)
    return {**summarize(s), "whole_again_s": _r(back, 0.5), "whole_again_from": "kill",
            "vip_moved_to_lb02": "lb-02" in seen, "_fault_at": t - s.started}


def lb_stop() -> dict:
    with Stream("/healthz", tag="lbstop") as s:
        t = s.mark("docker stop lb-01")
        sh("docker", "stop", "-t", "2", "lb-01", check=True)
        moved = wait_until(lambda: vip_holders() == ["lb-02"], 20)
        moved = seconds_since(t) if moved is not None else None
        time.sleep(3)
        s.mark("docker start lb-01")
        sh("docker", "start", "lb-01", check=True)
        back = wait_until(lambda: vip_holders() == ["lb-01"] and all_servers_up(), 90)
        s.mark("VIP back on lb-01")
    result = summarize(s)
    return {**result, "vip_on_lb02_after_s": moved, "whole_again_s": _r(back),
            "whole_again_from": "lb-01 started", "_fault_at": t - s.started,
            "first_ok_after_stop_s": _first_ok_after(s, t)}


def db02_kill9() -> dict:
    with Stream("/api/notes", method="POST", rate=WRITE_RATE, tag=f"db02kill-{int(time.time())}"
                ) as s:
        t = s.mark("kill -9 mariadbd (db-02)")
        pid = dexec("db-02", "systemctl", "show", "-p", "MainPID", "--value", "mariadb").stdout
        dexec("db-02", "kill", "-9", pid.strip(), check=True)
        time.sleep(1)
        whole = wait_until(lambda: replica_running() and replica_caught_up(30), 90, 0.5)
        s.mark("db-02 caught up")
    return {**summarize(s), **_writes_check(s), "whole_again_s": _r(whole, 1),
            "whole_again_from": "kill", "_fault_at": t - s.started}


def db01_restart() -> dict:
    with Stream("/api/notes", method="POST", rate=WRITE_RATE, tag=f"db01rst-{int(time.time())}"
                ) as s:
        t = s.mark("systemctl restart mariadb (db-01)")
        dexec("db-01", "systemctl", "restart", "mariadb", timeout=120, check=True)
        back = seconds_since(t)
        whole = wait_until(lambda: mariadb_answers("db-01") and replica_running()
                           and replica_caught_up(30), 90, 0.5)
        s.mark("db-02 caught up")
    return {**summarize(s), **_writes_check(s), "primary_back_s": back,
            "whole_again_s": _r(whole + back if whole is not None else None, 1),
            "whole_again_from": "restart", "_fault_at": t - s.started}


# --- helpers --------------------------------------------------------------------------------

def _r(value: float | None, plus: float = 0.0):
    return None if value is None else round(value + plus, 2)


def _first_ok_after(s: Stream, t: float):
    """Seconds from the fault to the first success of a request started after it."""
    ok = [r for r in s.result["records"]
          if r[0] > t and isinstance(r[2], int) and 200 <= r[2] < 300]
    return round(min(r[1] for r in ok) - t, 2) if ok else None


def _writes_check(s: Stream) -> dict:
    """Every acknowledged note (201 with an id) must be on db-01 and on db-02."""
    acked = {r[4] for r in s.result["records"] if r[2] == 201 and r[4] is not None}
    tag = s.cmd[s.cmd.index("--tag") + 1]
    query = f"SELECT id FROM webstack.notes WHERE text LIKE '{tag}-%'"
    on = {h: {int(x) for x in sql(h, query).split()} for h in ("db-01", "db-02")}
    sql("db-01", f"DELETE FROM webstack.notes WHERE text LIKE '{tag}-%'")  # leave no trace
    return {"writes_acknowledged": len(acked),
            "acknowledged_missing_db01": sorted(acked - on["db-01"]),
            "acknowledged_missing_db02": sorted(acked - on["db-02"]),
            "unacknowledged_but_stored": len(on["db-01"] - acked)}


DRILLS = {
    "nginx_graceful_stop": nginx_graceful_stop,
    "web_kill9": web_kill9,
    "app_kill9": app_kill9,
    "web_pause": web_pause,
    "haproxy_kill9": haproxy_kill9,
    "lb_stop": lb_stop,
    "db02_kill9": db02_kill9,
    "db01_restart": db01_restart,
}


def run(names: list[str] | None = None, lock: bool = True) -> dict:
    """Each drill holds the lab lock on its own and leaves the lab whole (checked)."""
    results = {}
    for name in names or list(DRILLS):
        with lab_lock(lock):
            print(f"[bench] drill {name}", flush=True)
            wrong = db_roles_as_built() if name.startswith("db") else None
            if wrong:
                results[name] = {"skipped": f"the databases are not as built: {wrong}"}
                print(f"[bench]   skipped: {wrong}", flush=True)
                continue
            try:
                results[name] = DRILLS[name]()
            finally:
                repaired = restore()
            results[name]["repaired_afterwards"] = repaired
            results[name].pop("_fault_at", None)
            print(f"[bench]   {_line(results[name])}", flush=True)
    return results


def _line(r: dict) -> str:
    keys = ("sent", "failed", "longest_gap_s", "slowest_request_s", "whole_again_s")
    return ", ".join(f"{k}={r.get(k)}" for k in keys)
