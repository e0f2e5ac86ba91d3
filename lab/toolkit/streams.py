"""Bounded request and write streams through the floating IP, from the lab's `client` host (the
internet's view), read live: the one instrument of every drill, test and benchmark that needs
traffic while something breaks.

    with Stream("/healthz") as s:          # GETs, 50/s, each on a new HTTPS connection
        s.wait_for(20)                     # 20 answered 2xx since the stream began
        ...break something...
    s.failures, s.served_by_after(t)

    with Stream("/api/notes", method="POST", rate=20) as w:
        ...
    w.acked  -> {note id: database address the app wrote it to}
"""

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

from lab.toolkit.deploy import ROOT
from lab.toolkit.hosts import VIP, run, sh, wait_until

CLIENT = "client"
SCRIPT = Path(__file__).with_name("client_stream.py")
CA = ROOT / "secrets" / "lab-ca" / "ca.crt"
CLIENT_CA = "/etc/ha-webstack-lab-ca.crt"  # not /tmp: a tmpfs on Debian 13, which docker cp misses
READ_RATE, WRITE_RATE = 50, 20  # requests/s: steady, and well below what the stack serves


def ok(record: dict) -> bool:
    return isinstance(record["status"], int) and 200 <= record["status"] < 300


class Stream:
    """The in-client request stream as a context manager; its records grow while it runs."""

    def __init__(self, path: str, method: str = "GET", rate: float | None = None,
                 seconds: float = 120, tag: str | None = None, baseline_s: float = 0):
        self.tag = tag or f"stream-{uuid.uuid4().hex[:10]}"
        self.method, self.seconds, self.baseline_s = method, seconds, baseline_s
        self.rate = rate or (WRITE_RATE if method == "POST" else READ_RATE)
        self.url = f"https://{VIP}{path}"
        self.stop_file = f"/tmp/ha-webstack-{self.tag}.stop"
        self.records: list[dict] = []
        self.events: list[tuple[float, str]] = []
        self._proc: subprocess.Popen | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self):
        sh("docker", "cp", str(CA), f"{CLIENT}:{CLIENT_CA}", check=True)
        cmd = ["docker", "exec", "-i", CLIENT, "python3", "-", self.url, "--rate",
               str(self.rate), "--seconds", str(self.seconds), "--method", self.method,
               "--tag", self.tag, "--ca", CLIENT_CA, "--stop-file", self.stop_file]
        with open(SCRIPT) as script:
            self._proc = subprocess.Popen(cmd, stdin=script, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
        self.started = time.time()
        self._reader.start()
        if wait_until(lambda: self.records, timeout=15) is None:
            self.__exit__()
            raise RuntimeError(f"the stream to {self.url} answered nothing in 15 s")
        time.sleep(self.baseline_s)  # a baseline for the plots before anything breaks
        return self

    def _read(self):
        for line in self._proc.stdout:
            self.records.append(json.loads(line))

    def __exit__(self, *exc):
        time.sleep(self.baseline_s)  # and a tail after the stack is whole again
        run(CLIENT, "touch", self.stop_file)
        self._reader.join(timeout=60)  # stdout ends when the stream has finished
        if self._proc.wait(timeout=30) != 0:
            raise RuntimeError(f"stream failed: {self._proc.stderr.read()[-1000:]}")
        self.records.sort(key=lambda r: r["start"])

    # --- while it runs ---

    def mark(self, label: str) -> float:
        """Note an event (a fault, a repair) at this moment; returns the wall-clock time."""
        now = time.time()
        self.events.append((now, label))
        return now

    def wait_for(self, count: int, timeout: float = 30) -> bool:
        """Until `count` more requests have succeeded (for writes: been acknowledged)."""
        target = len(self.succeeded) + count
        return wait_until(lambda: len(self.succeeded) >= target, timeout) is not None

    # --- what it saw ---

    @property
    def succeeded(self) -> list[dict]:
        return [r for r in list(self.records) if ok(r)]

    @property
    def failures(self) -> list[dict]:
        return [r for r in list(self.records) if not ok(r)]

    @property
    def acked(self) -> dict[int, str]:
        """{note id: the database address it was written to} for every acknowledged write."""
        return {r["id"]: r["written_to"] for r in list(self.records) if r["id"] is not None}

    def served_by_after(self, t: float) -> set[str]:
        return {r["served_by"] for r in self.succeeded if r["start"] > t}

    def failure_window(self) -> float:
        """Seconds from the start of the first failed request to the end of the last."""
        failed = self.failures
        return max(r["end"] for r in failed) - failed[0]["start"] if failed else 0.0

    def summary(self) -> dict:
        """What a drill reports: sent, failed (by kind), longest gap between successes, the
        slowest request, who served, the events, and a per-second series for the plots."""
        records, t0 = self.records, self.started
        ends = sorted(r["end"] for r in self.succeeded)
        span = int(max((r["end"] for r in records), default=t0) - t0) + 1
        series = {"ok": [0] * span, "failed": [0] * span}
        kinds: dict[str, int] = {}
        for r in records:
            series["ok" if ok(r) else "failed"][int(r["end"] - t0)] += 1
            if not ok(r):
                kinds[str(r["status"])] = kinds.get(str(r["status"]), 0) + 1
        return {
            "path": self.url.split(VIP, 1)[1], "method": self.method, "rate": self.rate,
            "sent": len(records), "failed": len(self.failures), "failures_by_kind": kinds,
            "longest_gap_s": round(max((b - a for a, b in zip(ends, ends[1:], strict=False)),
                                       default=0.0), 3),
            "slowest_request_s": round(max((r["end"] - r["start"] for r in records),
                                           default=0.0), 3),
            "served_by": sorted({r["served_by"] for r in self.succeeded if r["served_by"]}),
            "events": [[round(t - t0, 2), label] for t, label in self.events],
            "series_per_s": series,
        }
