"""Data plane: HTTPS through the floating IP vs plain HTTP straight to web-01, side by side.

Both sides run wrk from the control machine (the same binary, the same network path into the
lab's bridge): `client` may not reach a web server directly (by design of the firewall), and
running both from one place keeps the comparison fair. For each endpoint: full load (-t2 -c16,
10 s) for requests/s, p50 and p99; then a paced run at half of the plain-HTTP rate for p50 at a
load both sides can carry. HAProxy's CPU time per request comes from /proc/<pid>/stat of every
haproxy process on lb-01 before and after each HTTPS run.
"""

import json

from lab.toolkit.hosts import VIP, addr, lab_lock, sh
from lab.toolkit.hosts import run as on_host  # run() is this stage's entry point

THREADS, CONNECTIONS, SECONDS = 2, 16, 10
WRK_SCRIPT = "bench/wrk.lua"
ENDPOINTS = {
    "/api/notes": "app: notes API (reads from the replica)",
    "/": "app: status page (queries both databases, writes a visit)",
    "/static/style.css": "nginx only: a static file",
}


def wrk(url: str, rate: float = 0, headers: tuple[str, ...] = ()) -> dict:
    """One bounded wrk run; its summary (from bench/wrk.lua) plus requests/s."""
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "5s",
           "-s", WRK_SCRIPT]
    for h in headers:
        cmd += ["-H", h]
    cmd += [url, "--", str(rate), str(THREADS)]
    out = sh(*cmd, timeout=SECONDS + 30, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    r = json.loads(line.split(" ", 1)[1])
    errors = sum(r["errors"].values())
    return {"requests": r["requests"], "errors": errors,
            "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
            "p50_ms": r["latency_us"]["p50"] / 1000, "p99_ms": r["latency_us"]["p99"] / 1000,
            "max_ms": r["latency_us"]["max"] / 1000, "target_rps": rate or None}


def haproxy_cpu_ticks() -> int:
    """utime + stime (clock ticks) of every haproxy process on lb-01."""
    out = on_host("lb-01", "sh", "-c",
                  "for p in $(pgrep -x haproxy); do cat /proc/$p/stat; done", check=True).stdout
    total = 0
    for line in out.splitlines():
        fields = line.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return total


def clock_ticks() -> int:
    return int(on_host("lb-01", "getconf", "CLK_TCK", check=True).stdout)


def https_with_cpu(url: str, rate: float = 0, headers: tuple[str, ...] = ()) -> dict:
    before = haproxy_cpu_ticks()
    result = wrk(url, rate, headers)
    used_s = (haproxy_cpu_ticks() - before) / clock_ticks()
    result["haproxy_cpu_s"] = round(used_s, 2)
    result["haproxy_cpu_us_per_request"] = round(1e6 * used_s / max(result["requests"], 1), 1)
    return result


def compare(path: str, lock: bool) -> dict:
    """Full load, then half of the plain rate, both modes back to back under one lock hold."""
    plain_url, https_url = f"http://{addr('web-01')}:80{path}", f"https://{VIP}:443{path}"
    with lab_lock(lock):
        plain, https = wrk(plain_url), https_with_cpu(https_url)
        half = round(plain["rps"] / 2, 1)
        plain_half, https_half = wrk(plain_url, half), https_with_cpu(https_url, half)
    return {
        "what": ENDPOINTS[path], "plain_http_direct": plain, "https_via_lb": https,
        "rps_ratio": round(https["rps"] / plain["rps"], 3) if plain["rps"] else None,
        "half_load": {"target_rps": half, "plain_http_direct": plain_half,
                      "https_via_lb": https_half,
                      "p50_added_ms": round(https_half["p50_ms"] - plain_half["p50_ms"], 3)},
    }


def tls_handshakes(lock: bool) -> dict:
    """New connection per request (Connection: close): every HTTPS request is a full TLS
    handshake (tickets are off, wrk resumes no sessions)."""
    path = "/static/style.css"
    with lab_lock(lock):
        https = https_with_cpu(f"https://{VIP}:443{path}", headers=("Connection: close",))
        plain = wrk(f"http://{addr('web-01')}:80{path}", headers=("Connection: close",))
    return {"path": path, "https_via_lb": https, "plain_http_direct": plain}


def run(lock: bool = True) -> dict:
    results = {"threads": THREADS, "connections": CONNECTIONS, "seconds": SECONDS,
               "wrk_origin": "control machine (both sides)", "endpoints": {}}
    for path in ENDPOINTS:
        print(f"[bench] data plane {path}", flush=True)
        results["endpoints"][path] = r = compare(path, lock)
        print(f"[bench]   plain {r['plain_http_direct']['rps']} req/s, https "
              f"{r['https_via_lb']['rps']} req/s (ratio {r['rps_ratio']}), p50 added at half "
              f"load {r['half_load']['p50_added_ms']} ms", flush=True)
    print("[bench] data plane: TLS full handshakes", flush=True)
    results["tls_handshakes"] = tls = tls_handshakes(lock)
    print(f"[bench]   {tls['https_via_lb']['rps']} TLS connections/s", flush=True)
    return results
