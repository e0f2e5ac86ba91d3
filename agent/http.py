"""The agent's HTTP endpoints: what HAProxy's health checks and Prometheus ask.

- `GET /primary`: 200 only while this node is the writable holder of the leader key, with a
  lease safely above the fence margin and a decision that keeps it writable; 503 otherwise.
  HAProxy (`option httpchk GET /primary`) sends writes only where this says 200.
- `GET /replica`: 200 only on a healthy replica: running, read-only, replicating from the
  current leader with the IO thread connected, lag known and under `replica_max_lag`; else 503.
- `GET /metrics`: Prometheus text exposition format (version 0.0.4), every family a gauge.
- HEAD works on each; any other path is 404.

Every answer is computed from the latest `Snapshot` the main loop published on the `Board`: a
request does no I/O to MariaDB or etcd, so a slow database or an unreachable etcd never makes a
health check hang, and the answer is what the last tick saw. Two things are judged at request
time: the lease is counted down against the monotonic clock (a tick that stalls cannot keep
/primary at 200 past the fence margin), and a snapshot older than `snapshot_max_age` answers 503
on both checks (a stuck agent stops vouching for its node). The body says why, for a human with
curl. Requests are not logged: each balancer checks every half second.

Stdlib only (http.server, threading), like the rest of agent/. Import it as `agent.http`, and
run the agent as a package (`python3 -m agent...`): with agent/ itself on sys.path, this file
would hide the stdlib's `http` from every module, the etcd client's http.client among them.
"""

import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.decision import Action, Decision

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("primary", "replica", "fenced", "writable_without_key", "down", "unknown")


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What one tick of the main loop knew, for the endpoints. Times are time.monotonic()
    unless they say epoch."""

    me: str
    taken_at: float  # when the tick finished
    etcd_ok: bool  # the tick's quorum read (and, on the holder, keepalive) succeeded
    leader: str | None  # the leader key's holder as last read; None: absent
    lease_deadline: float | None  # my lease is certainly alive until then (Lease.deadline)
    running: bool  # mariadbd answers
    read_only: bool
    replicating_from: str | None
    io_connected: bool
    replica_lag: float | None  # seconds behind the primary (heartbeat row); None: unknown
    semisync_primary: bool  # Rpl_semi_sync_master_status: commits wait for a replica's ack
    semisync_replica: bool  # Rpl_semi_sync_slave_status: this replica acknowledges
    degraded: bool  # etcd records semi-sync as relaxed
    last_failover_at: float | None  # epoch seconds of the last automatic failover
    decision: Decision | None  # this tick's decision; None: none made yet

    def lease_left(self, now: float) -> float:
        return 0.0 if self.lease_deadline is None else max(0.0, self.lease_deadline - now)

    def role(self) -> str:
        """What the database is, by its own facts (one of ROLES, never "unknown")."""
        if not self.running:
            return "down"
        if not self.read_only:
            return "primary" if self.leader == self.me else "writable_without_key"
        return "replica" if self.replicating_from else "fenced"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """When the checks say no. `fence_margin`: the decision's (Policy.fence_margin)."""

    fence_margin: float
    replica_max_lag: float = 5.0
    snapshot_max_age: float = 3.0  # a few ticks: older means the loop is stuck


class Board:
    """The latest snapshot: published by the main loop, read by the request threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def publish(self, snapshot: Snapshot | None) -> None:
        """The new snapshot (None: vouch for nothing, as before the first tick)."""
        with self._lock:
            self._snapshot = snapshot

    def read(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot


def _fresh(snap: Snapshot | None, now: float, limits: Limits) -> str | None:
    """Why the snapshot cannot be vouched for, or None if it can."""
    if snap is None:
        return "no tick has finished yet"
    if now - snap.taken_at > limits.snapshot_max_age:
        return (f"the last tick finished {now - snap.taken_at:.1f}s ago (more than "
                f"{limits.snapshot_max_age}s): the agent is stuck")
    return None


def primary_check(snap: Snapshot | None, now: float, limits: Limits) -> tuple[bool, str]:
    """(whether this node takes writes, why)."""
    if stale := _fresh(snap, now, limits):
        return False, stale
    if snap.leader != snap.me:
        return False, f"not the leader key's holder ({snap.leader or 'nobody'} is)"
    if snap.role() != "primary":
        return False, f"holding the leader key but {snap.role()}"
    if (left := snap.lease_left(now)) <= limits.fence_margin:
        return False, f"lease {left:.1f}s left, within the {limits.fence_margin}s fence margin"
    if snap.decision is not None and not snap.decision.action.writable:
        return False, f"decided to {snap.decision.action}: {snap.decision.reason}"
    return True, f"primary, lease {left:.1f}s left"


def replica_check(snap: Snapshot | None, now: float, limits: Limits) -> tuple[bool, str]:
    """(whether this node serves reads, why). etcd being unreachable does not matter here: the
    lag, measured from the primary's own heartbeat, is what proves the data fresh."""
    if stale := _fresh(snap, now, limits):
        return False, stale
    if snap.role() != "replica":
        return False, f"not a replica: {snap.role()}"
    if snap.leader is None or snap.replicating_from != snap.leader:
        return False, (f"replicating from {snap.replicating_from}, but the leader is "
                       f"{snap.leader or 'nobody'}")
    if not snap.io_connected:
        return False, f"not connected to {snap.leader}"
    if snap.replica_lag is None:
        return False, "lag unknown"
    if snap.replica_lag > limits.replica_max_lag:
        return False, f"lag {snap.replica_lag:.1f}s, above {limits.replica_max_lag}s"
    return True, f"replica of {snap.leader}, lag {snap.replica_lag:.1f}s"


def _family(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())  # fixed words: no escaping
        lines.append(f"{name}{{{rendered}}} {float(value)!r}" if labels
                     else f"{name} {float(value)!r}")
    return lines


def _one_hot(label: str, chosen: str, choices) -> list[tuple[dict[str, str], float]]:
    """Every choice as a series, 1 for the chosen one: an absent series would read as 'no data'."""
    return [({label: str(c)}, 1.0 if str(c) == chosen else 0.0) for c in choices]


def metrics(snap: Snapshot | None, now: float, limits: Limits) -> str:
    """The exposition text. Before the first tick: role unknown, everything else 0."""
    role = snap.role() if snap else "unknown"
    action = str(snap.decision.action) if snap and snap.decision else ""

    def fact(name: str) -> float:
        return float(getattr(snap, name) or 0.0) if snap else 0.0

    lines = [
        *_family("ha_agent_role", "What this node's database is (primary: writable holder of "
                 "the leader key; fenced: read-only, replicating from nobody).",
                 _one_hot("role", role, ROLES)),
        *_family("ha_agent_primary_check", "1 while GET /primary answers 200.",
                 [({}, primary_check(snap, now, limits)[0])]),
        *_family("ha_agent_replica_check", "1 while GET /replica answers 200.",
                 [({}, replica_check(snap, now, limits)[0])]),
        *_family("ha_agent_lease_seconds_left", "Seconds my lease on the leader key is "
                 "certainly still alive (0: no lease).",
                 [({}, snap.lease_left(now) if snap else 0.0)]),
        *_family("ha_agent_etcd_reachable", "1 if the last tick's quorum read of etcd succeeded.",
                 [({}, fact("etcd_ok"))]),
        *_family("ha_agent_semisync_primary_on", "1 if commits here wait for a replica's "
                 "acknowledgement (Rpl_semi_sync_master_status).",
                 [({}, fact("semisync_primary"))]),
        *_family("ha_agent_semisync_replica_on", "1 if this replica acknowledges to the primary "
                 "(Rpl_semi_sync_slave_status).", [({}, fact("semisync_replica"))]),
        *_family("ha_agent_degraded", "1 while etcd records semi-sync as relaxed: no automatic "
                 "failover.", [({}, fact("degraded"))]),
        *_family("ha_agent_last_failover_timestamp_seconds", "Epoch seconds of the last automatic "
                 "failover (0: none recorded).",
                 [({}, fact("last_failover_at"))]),
        *_family("ha_agent_decision", "The last tick's decision, 1 for its action.",
                 _one_hot("action", action, Action)),
        *_family("ha_agent_snapshot_age_seconds", "Seconds since the last tick finished (-1: none "
                 "yet).", [({}, now - snap.taken_at if snap else -1.0)]),
    ]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: "AgentHTTPServer"
    server_version = "ha-webstack-agent"
    timeout = 5  # a client that stalls mid-request holds its thread no longer than this

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        now, snap, limits = time.monotonic(), self.server.board.read(), self.server.limits
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE_METRICS, metrics(snap, now, limits)
        elif path in ("/primary", "/replica"):
            check = primary_check if path == "/primary" else replica_check
            ok, why = check(snap, now, limits)
            status, ctype, body = 200 if ok else 503, "text/plain; charset=utf-8", why + "\n"
        else:
            status, ctype, body = 404, "text/plain; charset=utf-8", "/primary, /replica, /metrics\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def log_message(self, *args):
        pass  # health checks every half second from each balancer would flood the journal


class AgentHTTPServer(ThreadingHTTPServer):
    """A thread per request; daemon threads, so a hung client never blocks the agent's exit."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], board: Board, limits: Limits):
        super().__init__(address, _Handler)
        self.board = board
        self.limits = limits

    def handle_error(self, request, client_address):
        """HAProxy's checks read the status line and reset the connection: not an error, and
        at two checks a second per web server, a traceback each would flood the journal."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(board: Board, limits: Limits, address: tuple[str, int]) -> AgentHTTPServer:
    """Answer on `address` (port 0: any free one, see `server_address`) from a background
    thread, until `shutdown()`; `server_close()` then frees the port."""
    server = AgentHTTPServer(address, board, limits)
    threading.Thread(target=server.serve_forever, name="agent-http", daemon=True).start()
    return server
