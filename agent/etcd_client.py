"""The database agent's etcd client: etcd's v3 JSON gateway over HTTPS with a client certificate.

Why not a library: Debian's python3-etcd3 (0.12.0, upstream's last release, from 2020) speaks gRPC:
it needs grpcio and protobuf at versions its generated code matches, and nobody maintains it. The
JSON gateway is etcd's own HTTP mapping of the same v3 API, served on the client port beside
gRPC, at `/v3/` on 3.4 (Debian 12) and 3.5 (Debian 13) alike: `POST /v3/kv/range` with a JSON
body, keys and values base64, 64-bit numbers as strings. The stdlib (http.client, ssl, json,
base64) is enough, and the agent needs only a dozen operations.

Behaviour an operator can rely on:

- TLS both ways, trusting the stack CA only (`tls_context`). Verification is never relaxed:
  VERIFY_X509_STRICT, Python 3.13's default, is set on 3.11 too, so both refuse the same
  certificates; webstack/tls.py issues ones that pass. A refusal is an `EtcdError` whose reason is
  OpenSSL's.
- Several members: a request goes to the member that answered last, then to each other in turn
  while members are unreachable (refused, reset, timed out, TLS failure) or cannot serve now (no
  leader, leader changed: gRPC Unavailable/DeadlineExceeded). A minority member cannot answer a
  linearizable read and simply times out, so the next member is asked. `timeout` (seconds, per
  attempt) is short on purpose: the agent's lease budget is a few seconds.
- Every operation is safe to send twice, because a timed-out request may still have been applied:
  put and delete are idempotent; `create` recognises its own earlier write (same value, same
  lease); `compare_and_delete` of an already deleted key answers False, which leaves the key
  not holding my value all the same; revoking a lease etcd no longer has is done.
- Every failure is one exception type, `EtcdError(endpoint, reason)`.
- A fresh connection per request: nothing stale to detect after a member restarts; a TLS
  handshake (about a millisecond on a LAN) is the price.

Leases: `grant` and `keepalive` return a `Lease` with etcd's granted TTL and the monotonic time the
successful request was sent. etcd counts the TTL from when it handled the request, which is later,
so `Lease.left()` is a conservative estimate of the lease's life: the `lease_left` of
agent/decision.py. Not thread-safe: one agent loop owns one client.
"""

import base64
import http.client
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 1.0  # seconds per attempt: connect, TLS handshake, and each read
# gRPC codes with which a member says "not now" rather than "no": another member may serve it.
_UNAVAILABLE, _DEADLINE_EXCEEDED = 14, 4


class EtcdError(Exception):
    """etcd could not do what was asked. `endpoint`: the member that refused, or when none
    answered the last one tried; `reason`: why (for every member tried, when none answered)."""

    def __init__(self, endpoint: str, reason: str):
        super().__init__(f"etcd {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class _Unreachable(Exception):
    """This member cannot serve the request now: ask the next one."""


@dataclass(frozen=True)
class Lease:
    """A lease as etcd granted or renewed it.

    `ttl`: seconds etcd granted (0: the lease is gone, expired or revoked). `sent_at`:
    time.monotonic() just before the request that granted or renewed it was sent."""

    id: int
    ttl: int
    sent_at: float

    @property
    def deadline(self) -> float:
        """The monotonic time before which the lease is certainly alive in etcd."""
        return self.sent_at + self.ttl

    def left(self, now: float | None = None) -> float:
        """Seconds the lease is certainly still alive in etcd (0 once gone)."""
        return max(0.0, self.deadline - (time.monotonic() if now is None else now))


def tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """Trust the CA at `ca` only, present this host's certificate and key, verify strictly."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(cert, key)
    return context


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes a range read cover every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # etcd: every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _gateway_error(answer: dict) -> tuple[int | None, str]:
    """(gRPC code, message) from the gateway's error body, plain or inside a stream."""
    error = answer.get("error")
    if isinstance(error, dict):  # a streamed reply: {"error": {"grpc_code": .., "message": ..}}
        return error.get("grpc_code"), error.get("message", "")
    return answer.get("code"), answer.get("message") or str(error)


class Client:
    """etcd's v3 API for the agent: keys, compare-and-swap, leases."""

    def __init__(self, endpoints: Sequence[str], context: ssl.SSLContext,
                 timeout: float = DEFAULT_TIMEOUT):
        if not endpoints:
            raise ValueError("at least one etcd endpoint (https://address:port)")
        for url in endpoints:
            if urlsplit(url).scheme != "https" or urlsplit(url).port is None:
                raise ValueError(f"etcd endpoint {url!r}: https://address:port")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._context = context
        self._preferred = 0  # the member that answered last: asked first

    @classmethod
    def from_files(cls, endpoints: Sequence[str], ca: str, cert: str, key: str,
                   timeout: float = DEFAULT_TIMEOUT) -> "Client":
        return cls(endpoints, tls_context(ca, cert, key), timeout)

    # Keys

    def get(self, key: str, linearizable: bool = True) -> str | None:
        """The key's value, None if absent. Linearizable: a majority confirms it is current;
        serializable (linearizable=False) is the answering member's local, possibly stale copy."""
        answer = self._call("/v3/kv/range", {"key": _b64(key.encode()),
                                             "serializable": not linearizable})
        kvs = answer.get("kvs", [])
        return _text(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, prefix: str, linearizable: bool = True) -> dict[str, str]:
        """Every key starting with `prefix` and its value, read at one revision."""
        raw = prefix.encode()
        answer = self._call("/v3/kv/range", {"key": _b64(raw), "range_end": _b64(_prefix_end(raw)),
                                             "serializable": not linearizable})
        return {_text(kv["key"]): _text(kv.get("value", "")) for kv in answer.get("kvs", [])}

    def put(self, key: str, value: str, lease: int | None = None) -> None:
        """Set the key; attached to `lease`, it is deleted when the lease ends."""
        self._call("/v3/kv/put", {"key": _b64(key.encode()), "value": _b64(value.encode()),
                                  "lease": str(lease or 0)})

    def delete(self, key: str) -> bool:
        """Delete the key; whether it existed."""
        answer = self._call("/v3/kv/deleterange", {"key": _b64(key.encode())})
        return int(answer.get("deleted", 0)) > 0

    def create(self, key: str, value: str, lease: int | None = None) -> bool:
        """Set the key only if it does not exist (compare create_revision == 0, in one
        transaction), attached to `lease`. Whether this client won: True also when the key
        already holds exactly this value under this lease, i.e. an earlier attempt of this very
        call was applied though its answer was lost (the lease is this agent's alone)."""
        k, v = _b64(key.encode()), _b64(value.encode())
        answer = self._call("/v3/kv/txn", {
            "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": v, "lease": str(lease or 0)}}],
            "failure": [{"request_range": {"key": k}}]})
        if answer.get("succeeded"):
            return True
        held = answer["responses"][0]["response_range"].get("kvs", [])
        return bool(held) and held[0].get("value", "") == v and int(
            held[0].get("lease", 0)) == (lease or 0)

    def compare_and_delete(self, key: str, value: str) -> bool:
        """Delete the key only while it holds `value` (my own name on the leader key: never
        release another's). Whether it was deleted now; False leaves the key alone (it holds
        another value, or none). Either way, afterwards the key does not hold `value`."""
        k = _b64(key.encode())
        answer = self._call("/v3/kv/txn", {
            "compare": [{"key": k, "target": "VALUE", "result": "EQUAL",
                         "value": _b64(value.encode())}],
            "success": [{"request_delete_range": {"key": k}}],
            "failure": []})
        return bool(answer.get("succeeded"))

    # Leases

    def grant(self, ttl: int) -> Lease:
        """A new lease. etcd may grant more than asked (its minimum is about 1.5 election
        timeouts): the answer's `ttl` is what counts."""
        answer, sent_at = self._call_timed("/v3/lease/grant", {"TTL": str(ttl)})
        return Lease(int(answer["ID"]), int(answer["TTL"]), sent_at)

    def keepalive(self, lease_id: int) -> Lease:
        """Renew the lease for its full TTL; `ttl` 0 means it is gone (expired or revoked) and
        cannot be renewed: a holder must step down."""
        answer, sent_at = self._call_timed("/v3/lease/keepalive", {"ID": str(lease_id)})
        # A stream endpoint: one reply per request sent, each wrapped in "result".
        return Lease(lease_id, int(answer.get("result", {}).get("TTL", 0)), sent_at)

    def revoke(self, lease_id: int) -> None:
        """End the lease now: every key attached to it (the leader key) is deleted at once.
        A lease etcd no longer has is already ended."""
        try:
            self._call("/v3/lease/revoke", {"ID": str(lease_id)})
        except EtcdError as e:
            if "lease not found" not in e.reason:
                raise

    def time_to_live(self, lease_id: int) -> int | None:
        """Seconds etcd itself gives the lease (whole seconds, rounded down); None once gone."""
        ttl = int(self._call("/v3/lease/timetolive", {"ID": str(lease_id)}).get("TTL", -1))
        return None if ttl < 0 else ttl

    def lease_keys(self, lease_id: int) -> list[str] | None:
        """The keys attached to the lease; None once it is gone (expired or revoked)."""
        answer = self._call("/v3/lease/timetolive", {"ID": str(lease_id), "keys": True})
        if int(answer.get("TTL", -1)) < 0:
            return None
        return [_text(key) for key in answer.get("keys", [])]

    # Transport

    def _call(self, path: str, body: dict) -> dict:
        return self._call_timed(path, body)[0]

    def _call_timed(self, path: str, body: dict) -> tuple[dict, float]:
        """The member's answer, and the monotonic time its request was sent. Members are
        asked in turn, the last one that answered first, until one answers."""
        order = [*range(self._preferred, len(self.endpoints)), *range(self._preferred)]
        failures = []
        for i in order:
            endpoint = self.endpoints[i]
            sent_at = time.monotonic()
            try:
                answer = self._post(endpoint, path, body)
            except _Unreachable as e:
                failures.append(f"{endpoint}: {e}")
                continue
            self._preferred = i
            return answer, sent_at
        raise EtcdError(endpoint, "no member answered (" + "; ".join(failures) + ")")

    def _post(self, endpoint: str, path: str, body: dict) -> dict:
        url = urlsplit(endpoint)
        conn = http.client.HTTPSConnection(url.hostname, url.port, context=self._context,
                                           timeout=self.timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            status, data = response.status, response.read()
        except TimeoutError as e:
            raise _Unreachable(f"no answer within {self.timeout}s") from e
        except (OSError, http.client.HTTPException) as e:  # refused, reset, TLS refusals
            raise _Unreachable(f"{type(e).__name__}: {e}") from e
        finally:
            conn.close()
        return _answer(endpoint, status, data)


def _answer(endpoint: str, status: int, data: bytes) -> dict:
    """The decoded JSON answer; a transient refusal raises _Unreachable, any other EtcdError."""
    try:
        # Stream endpoints send one JSON document per line; one request, one line.
        lines = [line for line in data.splitlines() if line.strip()]
        answer = json.loads(lines[0]) if lines else {}
    except ValueError:
        raise EtcdError(endpoint, f"HTTP {status}, not JSON: {data[:200]!r}") from None
    if status == 200 and "error" not in answer:
        return answer
    code, message = _gateway_error(answer)
    if code in (_UNAVAILABLE, _DEADLINE_EXCEEDED):
        raise _Unreachable(f"{message} (gRPC code {code})")
    raise EtcdError(endpoint, f"{message or f'HTTP {status}'} (gRPC code {code})")
