"""Replication lag on the replica (db-02) while sysbench writes to the primary (db-01).

sysbench runs on the control machine inside web-01's network namespace: the firewall lets only
the app servers (and databases, monitoring) reach MariaDB, and `client` is the internet. It
logs in as a temporary user bench@<web-01> on a temporary database `sbtest`, both dropped
afterwards. The stack's own heartbeat beats once a second, too coarse for sub-second lag, so
this stage writes its own beat (sbtest.bench_beat, DATETIME(6)) on the primary every 0.1 s and
reads the replica's copy every 0.05 s: age = now - replicated beat (every container shares the
machine's clock), lag = max(0, age - beat period), i.e. resolution 0.1 s.
"""

import re
import secrets
import statistics
import subprocess
import threading
import time

from lab.toolkit.hosts import addr, caught_up, in_netns, lab_lock, primary, replica, sh, sql

BEAT_PERIOD, SAMPLE_PERIOD = 0.1, 0.05
SYSBENCH = {"test": "oltp_write_only", "threads": 4, "seconds": 30, "tables": 4,
            "table_size": 10000}
IDLE_S = 3  # before and after the load: the lag of an idle pair, for comparison
PRIMARY, REPLICA = primary(), replica()  # as the inventory has them (LAB_DB_PRIMARY)


class BeatWriter(threading.Thread):
    """REPLACE a timestamp row on the primary every BEAT_PERIOD, through one mariadb client."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.proc = subprocess.Popen(["docker", "exec", "-i", PRIMARY, "mariadb", "-n"],
                                     stdin=subprocess.PIPE, text=True)

    def run(self):
        while not self.stop.wait(BEAT_PERIOD):
            self.proc.stdin.write("REPLACE INTO sbtest.bench_beat VALUES (1, UTC_TIMESTAMP(6));\n")
            self.proc.stdin.flush()

    def close(self):
        self.stop.set()
        self.join()
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class LagSampler(threading.Thread):
    """Ask the replica every SAMPLE_PERIOD how old its copy of the beat is: [(time, age s)]."""

    QUERY = ("SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) / 1e6 "
             "FROM sbtest.bench_beat WHERE id = 1;\n")

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", REPLICA, "mariadb", "-N", "-B", "-n"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self):
        while not self.stop.wait(SAMPLE_PERIOD):
            self.proc.stdin.write(self.QUERY)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline().strip()
            if line and line != "NULL":
                self.samples.append((time.time(), float(line)))

    def close(self):
        self.stop.set()
        self.join()
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def stats(ages: list[float]) -> dict:
    lags = sorted(max(0.0, a - BEAT_PERIOD) for a in ages)
    if not lags:
        return {"samples": 0}
    q = statistics.quantiles(lags, n=100, method="inclusive") if len(lags) > 1 else lags * 99
    return {"samples": len(lags), "p50_s": round(q[49], 3), "p99_s": round(q[98], 3),
            "max_s": round(lags[-1], 3)}


def setup(password: str) -> None:
    web = addr("web-01")
    sql(PRIMARY, "CREATE DATABASE IF NOT EXISTS sbtest; "
                 "CREATE TABLE IF NOT EXISTS sbtest.bench_beat (id TINYINT PRIMARY KEY, "
                 "ts DATETIME(6) NOT NULL); "
                 "REPLACE INTO sbtest.bench_beat VALUES (1, UTC_TIMESTAMP(6)); "
                 f"CREATE USER IF NOT EXISTS 'bench'@'{web}' IDENTIFIED BY '{password}'; "
                 f"GRANT ALL ON sbtest.* TO 'bench'@'{web}'")


def teardown() -> None:
    sql(PRIMARY,
        f"DROP DATABASE IF EXISTS sbtest; DROP USER IF EXISTS 'bench'@'{addr('web-01')}'")
    caught_up(REPLICA, PRIMARY, 60)


def sysbench(command: str, password: str) -> str:
    s = SYSBENCH
    cmd = in_netns("web-01", "sysbench", s["test"], "--db-driver=mysql",
                   f"--mysql-host={addr(PRIMARY)}", "--mysql-user=bench",
                   f"--mysql-password={password}", "--mysql-db=sbtest", f"--tables={s['tables']}",
                   f"--table-size={s['table_size']}", f"--threads={s['threads']}",
                   f"--time={s['seconds']}", command)
    return sh(*cmd, timeout=s["seconds"] + 120, check=True).stdout


def parse_sysbench(out: str) -> dict:
    def grab(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None
    return {"transactions_per_s": grab(r"transactions:\s+\d+\s+\(([\d.]+) per sec"),
            "queries_per_s": grab(r"queries:\s+\d+\s+\(([\d.]+) per sec"),
            "latency_p95_ms": grab(r"95th percentile:\s+([\d.]+)"),
            "errors": grab(r"ignored errors:\s+(\d+)")}


def run(lock: bool = True) -> dict:
    password = secrets.token_urlsafe(18)
    with lab_lock(lock):
        print("[bench] replication lag under sysbench", flush=True)
        try:
            setup(password)
            sysbench("prepare", password)
            caught_up(REPLICA, PRIMARY, 60)
            beat, sampler = BeatWriter(), LagSampler()
            beat.start()
            sampler.start()
            time.sleep(IDLE_S)
            load_start = time.time()
            out = sysbench("run", password)
            load_end = time.time()
            time.sleep(IDLE_S)
            sampler.close()
            beat.close()
        finally:
            teardown()
    t0 = load_start - IDLE_S
    under_load = [a for t, a in sampler.samples if load_start <= t <= load_end]
    idle = [a for t, a in sampler.samples if t < load_start]
    result = {"sysbench": {**SYSBENCH, **parse_sysbench(out),
                           "origin": "control machine in web-01's network namespace"},
              "primary": PRIMARY, "replica": REPLICA,
              "beat_period_s": BEAT_PERIOD, "sample_period_s": SAMPLE_PERIOD,
              "lag_under_load": stats(under_load), "lag_idle": stats(idle),
              "load_window_s": [round(load_start - t0, 2), round(load_end - t0, 2)],
              "series": [[round(t - t0, 2), round(max(0.0, a - BEAT_PERIOD), 3)]
                         for t, a in sampler.samples]}
    lag = result["lag_under_load"]
    print(f"[bench]   {result['sysbench']['transactions_per_s']} tx/s; lag p50 {lag.get('p50_s')}"
          f" s, p99 {lag.get('p99_s')} s, max {lag.get('max_s')} s", flush=True)
    return result


