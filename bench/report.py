#!/usr/bin/env python3
"""docs/benchmarks.md and docs/benchmarks/*.png from the newest results of each Debian release.

    .venv/bin/python bench/report.py [bench/results/<file>.json ...]  (default: all of them)

Each release's newest results file (bench/results/<date>-<release>.json; <date>.json: from before
the release was recorded, a bookworm lab) is one column: Debian 12 and 13 side by side, "not yet
measured" for a release without results. Generated, never edited by hand: the figures, each
column's machine, date and packages, and every target of issue #9 judged "met" or "not met" per
release with the reason read from the figures.
"""

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plots  # noqa: E402
from bench.drills import aggregate  # noqa: E402
from bench.machine import one_line  # noqa: E402
from lab.topology import RECORDED_DEBIAN_BEFORE_RELEASES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
# The columns, in this order (the release a fleet upgrades from, first); a release found only in
# the results (a mixed lab) gets a column after them.
RELEASES = {"bookworm": "Debian 12 (bookworm)", "trixie": "Debian 13 (trixie)"}
NOT_YET = "not yet measured"
APP_ENDPOINTS = ("/api/notes", "/")
DRILL_TITLES = {
    "nginx_graceful_stop": "graceful `systemctl stop nginx` on web-01, then start",
    "web_kill9": "`kill -9` of nginx and the app on web-01 (systemd restarts the app; "
                 "nginx is started again)",
    "app_kill9": "`kill -9` of the app alone on web-01 (nginx stays up; systemd restarts "
                 "the app)",
    "web_pause": "web-01 frozen (`docker pause`, 8 s), then resumed",
    "haproxy_kill9": "`kill -9` of HAProxy on lb-01 (systemd restarts it)",
    "lb_stop": "lb-01 container stopped (floating IP moves to lb-02), then started again",
    "replica_kill9": "`kill -9` of mariadbd on the replica (db-02) during a write stream",
    "primary_restart": "`systemctl restart mariadb` on the primary (db-01) during a write stream",
    "primary_kill9_agents": "`kill -9` of mariadbd on the primary during a write stream, with "
                            "automatic failover (the agents promote the standby; the app follows "
                            "through its web server's local routes)",
    "primary_switchover_agents": "a planned switchover through the agents during a write "
                                 "stream (the primary hands over to its standby, then rejoins)",
    "primary_stop_agents": "`systemctl stop mariadb` on the primary during a write stream, with "
                           "automatic failover (started again once the standby took over)",
    "primary_host_kill_agents": "the primary's host killed (`docker kill`) during a write "
                                "stream, with automatic failover (its lease runs out), then "
                                "started again",
    "primary_host_stop_agents": "the primary's host shut down (`docker stop`) during a write "
                                "stream, with automatic failover, then started again",
    "primary_pause_agents": "the primary's host frozen (`docker pause`, 30 s) during a write "
                            "stream, with automatic failover, then resumed (it fences itself)",
    "primary_partition_agents": "the primary cut off the network (every packet dropped inside "
                                "its host, 15 s) during a write stream, with automatic failover",
    "primary_etcd_cut_agents": "only etcd cut off from the primary (15 s) during a write "
                               "stream, with automatic failover",
}
OLD_DRILL_NAMES = {"db02_kill9": "replica_kill9", "db01_restart": "primary_restart"}


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


# --- targets --------------------------------------------------------------------------------

def target_rows(data: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    dr = data.get("drills", {})
    for name in ("nginx_graceful_stop", "web_kill9", "app_kill9"):
        r = figures(dr.get(name))
        failed, out = r.get("failed"), r.get("out_of_rotation_s")
        ok = None if failed is None else (failed == 0 and (out is None or out <= 3))
        why = "" if ok else (f"{failed} requests failed ({r.get('failures_by_kind')})"
                             if failed else f"out of rotation after {out} s")
        if failed and name == "app_kill9":
            why += (": nginx answers 502 while systemd restarts gunicorn (RestartSec=1 plus its "
                    "start), and HAProxy retries only `conn-failure empty-response "
                    "response-timeout`, not a 502")
        rows.append((f"{name}: 0 failed requests, out of rotation within 3 s",
                     "-" if failed is None else f"{failed} failed of {r.get('sent')}"
                     + (f"; out of rotation after {out} s" if out is not None else ""),
                     verdict(ok), why if ok is False else ""))
    r = figures(dr.get("web_pause"))
    slow = r.get("slowest_request_s")
    rows.append(("frozen web server: no request waits more than 3 s",
                 "-" if slow is None else f"slowest request {slow} s, {r.get('failed')} failed",
                 verdict(
                     None if slow is None else slow <= 3),
                 "" if slow is None or slow <= 3 else
                 "requests HAProxy had already sent to the frozen server wait until it thaws "
                 "or `timeout server`; new ones go elsewhere once the health checks mark it "
                 "down (no `on-marked-down shutdown-sessions`: it lost a request caught "
                 "connecting; see templates/haproxy/haproxy.cfg.j2)"))
    r = figures(dr.get("lb_stop"))
    gap = r.get("longest_gap_s")
    rows.append(("floating IP failover: service back within 5 s (longest gap between answers)",
                 "-" if gap is None else f"longest gap {gap} s; VIP on lb-02 after "
                 f"{r.get('vip_on_lb02_after_s')} s; {r.get('failed')} failed",
                 verdict(None if gap is None else gap <= 5),
                 "" if gap is None or gap <= 5 else "see the drill's notes"))
    dp = get(data, "dataplane", "endpoints", default={})
    for path in APP_ENDPOINTS:
        e = dp.get(path)
        ratio = e and e["rps_ratio"]
        rows.append((f"`GET {path}`: HTTPS via LB >= 90% of plain HTTP requests/s",
                     f"{ratio:.0%}" if e else "-", verdict(None if e is None else ratio >= 0.9),
                     "" if e is None or ratio >= 0.9 else ratio_why(e, cores(data, "dataplane"))))
        added = e and e["half_load"]["p50_added_ms"]
        rows.append((f"`GET {path}`: adds < 1 ms to p50 at half load",
                     f"{added:+.2f} ms at {e['half_load']['target_rps']} req/s" if e else "-",
                     verdict(None if e is None else added < 1), "" if e is None or added < 1
                     else "TLS and the extra hop (HAProxy, then nginx) on cores the whole lab "
                          "shares"))
    lag = get(data, "replication", "lag_under_load", "p99_s")
    rows.append(("replication lag p99 < 1 s under sysbench", "-" if lag is None else f"p99 {lag} s",
                 verdict(None if lag is None else lag < 1), ""
                 if lag is None or lag < 1 else "sysbench runs unpaced, as fast as the primary "
                 "commits (sync_binlog=1); the replica applies it (4 parallel threads) on the "
                 f"same {cores(data, 'replication')} cores as the primary and sysbench, so it "
                 "trails at full load"))
    d = data.get("deploy", {})
    t2, t4 = d.get("no_change_rerun_2_web_s"), d.get("no_change_rerun_4_web_s")
    rows.append(("no-change re-run on the 8-host lab < 30 s", "-" if t2 is None else f"{t2} s",
                 verdict(None if t2 is None else t2 < 30), "" if t2 is None or t2 < 30 else
                 "pyinfra gathers facts for every operation on every host over SSH"))
    growth = t2 and t4 and t4 / t2
    rows.append(("no-change re-run grows less than linearly with web servers (2 -> 4)",
                 f"{t4} s with 4 web servers: x{growth:.2f} for x2 web servers" if growth
                 else "-", verdict(None if not growth else growth < 2), ""))
    for name in ("replica_kill9", "primary_restart"):
        r = figures(dr.get(name))
        lost = (None if "writes_acknowledged" not in r else
                sum(len(ids) for ids in r["acknowledged_missing"].values()))
        rows.append((f"{name}: 0 acknowledged writes lost",
                     "-" if lost is None else f"{lost} lost of {r['writes_acknowledged']} "
                     f"acknowledged; {r['failed']} writes failed (not acknowledged)",
                     verdict(None if lost is None else lost == 0), ""))
    return rows


def ratio_why(e: dict, cores: int | None) -> str:
    cpu = e["https_via_lb"].get("haproxy_cpu_us_per_request")
    return (f"HAProxy spends {cpu} us of CPU per request (TLS, HTTP parsing, a second "
            f"connection to nginx) on the same {cores} cores the app servers use, so every "
            "request through the LB takes CPU from the app")


def cores(data: dict, stage: str) -> int | None:
    """The cores of the machine a stage ran on (the whole lab shares them)."""
    return get(data, stage, "machine", "cores", default=get(data, "machine", "cores"))


def target_table(cols: dict[str, dict | None]) -> list[str]:
    """The targets, one row each: what each release measured and whether it met them."""
    rows = {r: target_rows(d or {}) for r, d in cols.items()}
    lines = [row("target (issue #9)", [f"{label(r)} | verdict" for r in cols] + ["why not"]),
             "|---" * (2 * len(cols) + 2) + "|"]
    for i, (target, *_) in enumerate(rows[next(iter(cols))]):
        per = {r: rows[r][i] for r in cols}
        cells = [f"{m} | {v}" if cols[r] else f"- | {NOT_YET}" for r, (_, m, v, _) in per.items()]
        why = "<br>".join(f"{label(r)}: {w}" for r, (*_, w) in per.items() if w)
        lines.append(row(target, [*cells, why]))
    return lines


# --- results, one column per release -------------------------------------------------------

def release_of(data: dict) -> str:
    """The release the lab's hosts ran; results from before it was recorded came from bookworm."""
    return get(data, "lab", "debian", default=RECORDED_DEBIAN_BEFORE_RELEASES)


def load(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {**data, "drills": upgrade_drills(data.get("drills", {})), "file": path.name}


def latest(paths) -> dict[str, dict | None]:
    """Each release's newest results, by column (None: not yet measured)."""
    newest = {}
    for path in sorted(paths, key=lambda p: p.name):  # <date>[-<release>].json: oldest first
        data = load(path)
        newest[release_of(data)] = data
    return {r: newest.get(r) for r in [*RELEASES, *sorted(set(newest) - set(RELEASES))]}


def label(release: str) -> str:
    return RELEASES.get(release, f"{release} releases")


def measured(cols: dict[str, dict | None], stage: str) -> dict[str, dict]:
    """The releases whose results have figures of a stage."""
    return {r: d for r, d in cols.items() if not status(d, stage)}


def status(data: dict | None, stage: str) -> str:
    """Why a release has no figures of a stage; '' when it has them."""
    if data is None:
        return NOT_YET
    return "" if data.get(stage) else f"not run in `{data['file']}`"


def machine_of(data: dict, stage: str) -> str:
    """The machine and date a stage ran on (a stage run alone may be newer than the file)."""
    return one_line(data[stage].get("machine", data["machine"]))


def lab_text(section: dict) -> str:
    """The packages under test as recorded, with each host's release in a mixed lab."""
    lab = section.get("lab", {})
    hosts = {}
    for host, release in lab.get("hosts", {}).items():
        hosts.setdefault(release, []).append(host)
    packages = [f"{package} {version or 'unknown'} ({host})"
                for host, found in lab.get("packages", {}).items()
                for package, version in found.items()]
    return "; ".join([*(f"{r}: {', '.join(h)}" for r, h in sorted(hosts.items())),
                      ", ".join(packages) or "packages not recorded"])


def caption(data: dict, stage: str, release: str) -> str:
    """A plot's caption: release, machine and date (the file's name adds no more)."""
    return f"{label(release)}: {machine_of(data, stage)}"


def row(name: str, cells: list[str]) -> str:
    return f"| {name} | " + " | ".join(cells) + " |"


def figure(cell, section: dict | None) -> str:
    """One cell: '' on a heading row; '-' where a column lacks the figure (the stage did not
    run, or its results predate the figure)."""
    if cell is None:
        return ""
    if not section:
        return "-"
    try:
        return str(cell(section))
    except (KeyError, TypeError):
        return "-"


def source(data: dict | None, stage: str) -> tuple[str, str, str]:
    """Where a release's figures of a stage come from: results file, machine and date, lab
    hosts; or why it has none."""
    if status(data, stage):
        return status(data, stage), "-", "-"
    return f"`bench/results/{data['file']}`", machine_of(data, stage), lab_text(data[stage])


def side_by_side(cols: dict[str, dict | None], stage: str, rows: list) -> list[str]:
    """A table with one column per release and one row per figure, rows as (name, cell) with
    cell(the release's section) -> text, None for a heading row. The first rows say where each
    column's figures come from, or why it has none."""
    sources = [source(d, stage) for d in cols.values()]
    lines = [row("", [label(r) for r in cols]), "|---" * (len(cols) + 1) + "|"]
    lines += [row(name, [s[i] for s in sources])
              for i, name in enumerate(("results", "machine; date", "lab hosts"))]
    sections = [(d or {}).get(stage) for d in cols.values()]
    return lines + [row(name, [figure(cell, s) for s in sections]) for name, cell in rows]


def per_release(cols: dict[str, dict | None], stage: str, render) -> list[str]:
    """A section not set side by side: each release's figures under its name and source,
    render(section, release, caption); a release without them is named, with why."""
    lines = []
    for release, data in cols.items():
        if why := status(data, stage):
            lines += [f"*{label(release)}: {why}.*", ""]
            continue
        results, machine, lab = source(data, stage)
        lines += [f"*{label(release)}, {results}. Machine: {machine}. Lab hosts: {lab}.*", "",
                  *render(data[stage], release, caption(data, stage, release))]
    return lines


# --- sections -------------------------------------------------------------------------------

def deploy_section(d: dict, *_) -> list[str]:
    """The deploy's wall times (no plot: per_release's release and caption go unused)."""
    hosts = d.get("managed_hosts", {})
    two, four = hosts.get("2_web"), hosts.get("4_web")
    return ["| step | wall time |", "|---|---|",
            f"| `lab/lab.py up --fresh` ({two} managed hosts and `client`, not part of the "
            f"deploy) | {d['lab_up_fresh_s']} s |",
            f"| full deploy onto the fresh hosts ({two} managed) | {d['full_deploy_fresh_s']} s |",
            f"| no-change re-run, 2 web servers ({two} managed hosts) | "
            f"{d['no_change_rerun_2_web_s']} s |",
            f"| deploy adding web-03 and web-04 | {d.get('deploy_adding_2_web_s')} s |",
            f"| no-change re-run, 4 web servers ({four} managed hosts) | "
            f"{d.get('no_change_rerun_4_web_s')} s |",
            f"| deploy back to 2 web servers | {d.get('deploy_back_to_2_web_s')} s |", ""]


def latency(r: dict) -> str:
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms"


def saturated(half: dict) -> str:
    """The HTTPS side could not carry half the plain rate: its p50 is taken at saturation."""
    return " (HTTPS saturated)" if half["https_via_lb"]["rps"] < 0.95 * half["target_rps"] else ""


PLAIN, HTTPS, HALF = "plain_http_direct", "https_via_lb", "half_load"
ENDPOINT_ROWS = (  # (figure, cell(one endpoint's results))
    ("plain HTTP direct to web-01: req/s", lambda e: f"{e[PLAIN]['rps']:,.0f}"),
    ("plain HTTP: p50 / p99", lambda e: latency(e[PLAIN])),
    ("HTTPS via the floating IP: req/s", lambda e: f"{e[HTTPS]['rps']:,.0f}"),
    ("HTTPS: p50 / p99", lambda e: latency(e[HTTPS])),
    ("errors, plain / HTTPS", lambda e: f"{e[PLAIN]['errors']} / {e[HTTPS]['errors']}"),
    ("HAProxy CPU per HTTPS request", lambda e: f"{e[HTTPS]['haproxy_cpu_us_per_request']} us"),
    ("**ratio HTTPS / plain req/s**", lambda e: f"**{e['rps_ratio']:.0%}**"),
    ("half load: both paced at", lambda e: f"{e[HALF]['target_rps']:,} req/s"),
    ("half load: p50 plain / HTTPS", lambda e: f"{e[HALF][PLAIN]['p50_ms']:.2f} / "
                                               f"{e[HALF][HTTPS]['p50_ms']:.2f} ms"),
    ("half load: added p50", lambda e: f"{e[HALF]['p50_added_ms']:+.2f} ms"),
    ("half load: achieved req/s, plain / HTTPS", lambda e: f"{e[HALF][PLAIN]['rps']:,.0f} / "
                                                           f"{e[HALF][HTTPS]['rps']:,.0f}"
                                                           f"{saturated(e[HALF])}"),
)
TLS_ROWS = (  # (figure, cell(the handshake runs))
    ("**new HTTPS connections/s** via the floating IP", lambda t: f"**{t[HTTPS]['rps']:,.0f}**"),
    ("HAProxy CPU per new connection", lambda t: f"{t[HTTPS]['haproxy_cpu_us_per_request']} us"),
    ("plain HTTP direct, a connection per request: req/s", lambda t: f"{t[PLAIN]['rps']:,.0f}"),
)


def dataplane_rows(dps: list[dict]) -> list:
    """The figure rows of the releases' data-plane results: every endpoint any of them ran."""
    rows = [("wrk, keep-alive", lambda dp: f"-t{dp['threads']} -c{dp['connections']}, "
                                           f"{dp['seconds']} s per run")]
    for path in dict.fromkeys(p for dp in dps for p in dp["endpoints"]):
        what = next(dp["endpoints"][path]["what"] for dp in dps if path in dp["endpoints"])
        rows.append((f"**`{path}`** ({what})", None))
        rows += [(name, lambda dp, cell=cell, path=path: cell(dp["endpoints"][path]))
                 for name, cell in ENDPOINT_ROWS]
    tls = next((dp["tls_handshakes"]["path"] for dp in dps if "tls_handshakes" in dp), None)
    if tls:
        rows.append((f"**full TLS handshakes** (`Connection: close`, `{tls}`)", None))
        rows += [(name, lambda dp, cell=cell: cell(dp["tls_handshakes"]))
                 for name, cell in TLS_ROWS]
    return rows


def dataplane_section(cols: dict[str, dict | None]) -> list[str]:
    ran = measured(cols, "dataplane")
    rows = dataplane_rows([d["dataplane"] for d in ran.values()])
    lines = ["wrk from the control machine for both sides (see *Where each load runs*): plain "
             "HTTP straight to web-01 and HTTPS through the floating IP at full load, then both "
             "paced at half of the plain-HTTP rate (bench/wrk.lua), then a new connection per "
             "request.", "",
             *side_by_side(cols, "dataplane", rows), ""]
    if ran:
        plots.dataplane({label(r): d["dataplane"] for r, d in ran.items()},
                        PLOTS / "dataplane-rps.png",
                        "; ".join(f"{label(r)}: {d['file']}" for r, d in ran.items()))
        lines += ["![requests/s per endpoint and release](benchmarks/dataplane-rps.png)", ""]
    return lines + [RATIO_NOTE, ""]


RATIO_NOTE = (
    "**What the ratio shows, and what it does not.** Every lab host is a container on the same "
    "machine's cores (the *machine* row), and wrk runs there too. The ratio is therefore the "
    "share of those cores that TLS and the extra hop take from everything else: it shows the "
    "cost per request (see HAProxy's CPU time per request), not the capacity of a real load "
    "balancer, which has cores of its own. HTTPS via the floating IP is balanced over web-01 "
    "and web-02 while plain HTTP hits web-01 alone; on shared cores the second server adds "
    "gunicorn workers but no CPU. For the static file the ratio mostly measures nginx's speed "
    "against HAProxy's TLS on the same cores; for the app endpoints, where Python and MariaDB "
    "dominate, the LB's share is small. Absolute figures do not carry over to other machines; "
    "the HAProxy CPU per request and the TLS handshake rate are the most portable figures here.")


def drill_notes(r: dict) -> str:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}."
    over = f"Over {r['runs']} runs (counts summed, times at their worst): " if "runs" in r else ""
    parts = [f"{over}{r['method']} `{r['path']}` at {r['rate']:g}/s from `client`: sent "
             f"{r['sent']}, failed {r['failed']}"
             + (f" ({', '.join(f'{k}: {v}' for k, v in r['failures_by_kind'].items())})"
                if r["failures_by_kind"] else "")
             + f"; longest gap between successful answers {r['longest_gap_s']} s; slowest "
             f"request {r['slowest_request_s']} s; whole again {r['whole_again_s']} s after "
             f"{r['whole_again_from']}."]
    if "out_of_rotation_s" in r:
        parts.append(f"web-01 out of HAProxy's rotation {r['out_of_rotation_s']} s after the "
                     "fault (polled through the runtime API, ~0.2 s resolution).")
    if "vip_on_lb02_after_s" in r:
        parts.append(f"Floating IP on lb-02 {r['vip_on_lb02_after_s']} s after `docker stop`.")
    if "vip_moved_to_lb02" in r:
        parts.append("The floating IP " + ("moved to lb-02 and back." if r["vip_moved_to_lb02"]
                                           else "stayed on lb-01 (HAProxy was back before "
                                                "keepalived's check failed twice)."))
    if "writes_acknowledged" in r:
        missing = ", on ".join(f"{h}: {len(ids)}" for h, ids in r["acknowledged_missing"].items())
        parts.append(f"{r['writes_acknowledged']} writes acknowledged; missing on {missing}; "
                     f"stored but not acknowledged: {r['unacknowledged_but_stored']}.")
    if r.get("repaired_afterwards"):
        parts.append(f"Repaired afterwards by the bench: {r['repaired_afterwards']}.")
    return " ".join(parts)


def verdict_note(d: dict) -> str:
    """How often the drill's verdict (lab/toolkit/drills.py) held; '' if it was not recorded."""
    held, runs = d.get("verdict_held"), d["runs"]
    if held is None:
        return ""
    broken = list(dict.fromkeys(p for r in runs for p in r["problems"]))
    return (f"Verdict (lab/toolkit/drills.py): held in {held} of {len(runs)} runs"
            + (f"; broken: {'; '.join(broken[:5])}." if broken else "."))


DRILL_ROWS = (  # (figure, cell(the drill's figures over its runs, the drill's results))
    ("failed of sent", lambda r, d: f"{r['failed']} of {r['sent']}"),
    ("longest gap between answers", lambda r, d: gap_text(d)),
    ("slowest request", lambda r, d: f"{r['slowest_request_s']} s"),
    ("whole again", lambda r, d: f"{r['whole_again_s']} s after {r['whole_again_from']}"),
    ("verdict held", lambda r, d: "not recorded" if d["verdict_held"] is None
     else f"in {d['verdict_held']} of {len(d['runs'])} runs"),
)


def gap_text(d: dict) -> str:
    gap = d["longest_gap_s"]
    if len(d["runs"]) > 1:
        return f"p50 {gap['p50']} / p99 {gap['p99']} / max {gap['max']} s"
    return f"{gap['max']} s"


def runs_text(d: dict) -> str:
    r = figures(d)
    return "skipped" if "skipped" in r else f"{len(d['runs'])} run" + "s" * (len(d["runs"]) > 1)


def drill_rows(names: list[str]) -> list:
    rows = []
    for name in names:
        rows.append((f"**{name}**", lambda dr, name=name: runs_text(dr[name])))
        rows += [(what, lambda dr, cell=cell, name=name: cell(figures(dr[name]), dr[name]))
                 for what, cell in DRILL_ROWS]
    return rows


def drills_section(cols: dict[str, dict | None]) -> list[str]:
    ran = measured(cols, "drills")
    names = list(dict.fromkeys(name for d in ran.values() for name, x in d["drills"].items()
                               if isinstance(x, dict) and "runs" in x))
    lines = [*side_by_side(cols, "drills", drill_rows(names)), ""]
    for name in names:
        if name in DRILL_TITLES:
            lines += [f"### {name}: {DRILL_TITLES[name]}", "", *drill_details(ran, name)]
    return lines


def drill_details(ran: dict[str, dict], name: str) -> list[str]:
    """One drill's notes and plot (its first run), for each release that ran it."""
    lines = []
    for release, data in ran.items():
        d = data["drills"].get(name)
        if not d:
            continue
        notes = " ".join(filter(None, (drill_notes(figures(d)), verdict_note(d))))
        lines += [f"**{label(release)}.** {notes}", ""]
        if "series_per_s" in d["runs"][0]:
            png = f"drill-{name}-{release}.png"
            plots.drill(name, d["runs"][0], PLOTS / png, caption(data, "drills", release))
            lines += [f"![{name}, {label(release)}](benchmarks/{png})", ""]
    return lines


SUMMED = ("sent", "failed", "writes_acknowledged", "unacknowledged_but_stored")
WORST = ("longest_gap_s", "slowest_request_s", "out_of_rotation_s", "vip_on_lb02_after_s")


def figures(d: dict | None) -> dict:
    """One drill's runs as one set of figures: a single run's as they are; over several runs,
    counts summed, times at their worst (whole_again_s None if any run never got whole),
    failures and missing writes merged, plus 'runs'. {} if the drill did not run."""
    runs = [r for r in (d or {}).get("runs", []) if "sent" in r]
    if len(runs) < 2:
        return runs[0] if runs else ((d or {}).get("runs") or [{}])[0]
    f = {**runs[0], "runs": len(runs),
         "failures_by_kind": dict(sum((Counter(r["failures_by_kind"]) for r in runs),
                                      Counter())),
         "repaired_afterwards": [x for r in runs for x in r["repaired_afterwards"]]}
    f.update({k: sum(r[k] for r in runs) for k in SUMMED if k in f})
    f.update({k: max((r[k] for r in runs if r[k] is not None), default=None)
              for k in WORST if k in f})
    whole = [r["whole_again_s"] for r in runs]
    f["whole_again_s"] = None if None in whole else max(whole)
    if "acknowledged_missing" in f:
        f["acknowledged_missing"] = {h: [i for r in runs for i in r["acknowledged_missing"][h]]
                                     for h in f["acknowledged_missing"]}
    if "vip_moved_to_lb02" in f:
        f["vip_moved_to_lb02"] = any(r["vip_moved_to_lb02"] for r in runs)
    return f


def upgrade_drills(dr: dict) -> dict:
    """A drills section written before lab/toolkit (as in bench/results/2026-11-26.json: one
    result per drill, db-named drills, acknowledged_missing_db01/_db02, no verdict) in today's
    shape, in memory: one run per drill, its verdict None (not recorded). Today's passes as is."""
    upgraded = {}
    for name, r in dr.items():
        if isinstance(r, dict) and name != "machine" and "runs" not in r:
            r = {**r, "problems": None}
            if "acknowledged_missing_db01" in r:
                r["acknowledged_missing"] = {h: r.pop(f"acknowledged_missing_{h.replace('-', '')}")
                                             for h in ("db-01", "db-02")}
            name, r = OLD_DRILL_NAMES.get(name, name), aggregate([r])
        upgraded[name] = r
    return upgraded


def replication_section(rp: dict, release: str, caption: str) -> list[str]:
    s, lag, idle = rp["sysbench"], rp["lag_under_load"], rp["lag_idle"]
    primary = rp.get("primary", "db-01")  # results before 2026-11-27 do not name it
    png = f"replication-lag-{release}.png"
    plots.replication_lag(rp, PLOTS / png, caption)
    return [f"sysbench `{s['test']}`, {s['threads']} threads, {s['seconds']} s, {s['tables']} "
            f"tables of {s['table_size']:,} rows, against {primary}: {s['transactions_per_s']} "
            f"transactions/s ({s['queries_per_s']} queries/s, p95 {s['latency_p95_ms']} ms).", "",
            "| | samples | p50 | p99 | max |", "|---|---|---|---|---|",
            f"| lag under the sysbench load | {lag['samples']} | {lag['p50_s']} s | "
            f"{lag['p99_s']} s | {lag['max_s']} s |",
            f"| lag idle (before the load) | {idle['samples']} | {idle.get('p50_s')} s | "
            f"{idle.get('p99_s')} s | {idle.get('max_s')} s |", "",
            f"Resolution: a beat is written on {primary} every {rp['beat_period_s']} s (its own "
            f"table, `DATETIME(6)`), the replica's copy read every {rp['sample_period_s']} s; "
            "lag = now - the replicated beat - one beat period, clipped at 0 (all containers "
            f"share one clock). A lag under {rp['beat_period_s']} s reads as 0; the stack's own "
            "heartbeat (1 s) is too coarse for these figures.", "",
            f"![replication lag, {label(release)}](benchmarks/{png})", ""]


def render(cols: dict[str, dict | None]) -> list[str]:
    """docs/benchmarks.md, as lines, from each release's newest results (plots drawn meanwhile)."""
    return ["# Benchmarks and failure drills", "",
            "Generated by `bench/report.py` (`make bench`) from the newest results of each "
            "Debian release the lab's hosts ran (`LAB_DEBIAN`); do not edit by hand. What each "
            "figure means: [bench/README.md](../bench/README.md).", "",
            *(f"- {label(r)}: " + (f"`bench/results/{d['file']}`" if d else NOT_YET)
              for r, d in cols.items()), "",
            "## Targets", "", *target_table(cols), "",
            "## 1. Deploy speed", "", *per_release(cols, "deploy", deploy_section),
            "## 2. Data plane: HTTPS through the load balancer vs plain HTTP direct", "",
            *dataplane_section(cols),
            "## 3. Failure drills under a steady request stream", "", *drills_section(cols),
            "## 4. Replication lag under sysbench", "",
            *per_release(cols, "replication", replication_section),
            "## Where each load runs, and why", "", *WHERE, ""]


def generate(paths: list[Path] | None = None) -> str:
    """docs/benchmarks.md and its plots from the given results files (default: all of them,
    each release's newest counts); returns a summary for the terminal."""
    cols = latest(paths or RESULTS.glob("*.json"))
    PLOTS.mkdir(parents=True, exist_ok=True)
    for old in PLOTS.glob("*.png"):  # all are drawn again: none outlives its drill or layout
        old.unlink()
    DOC.write_text("\n".join(render(cols)))
    return "\n".join([f"[bench] wrote {DOC.relative_to(ROOT)} and plots in "
                      f"{PLOTS.relative_to(ROOT)}/", *target_table(cols)])


WHERE = [
    "- **Data plane**: wrk runs on the control machine for both sides (the lab's admin "
    "network, 10.213.0.1). The issue asks for `client`, but the firewall lets `client` reach "
    "only the floating IP's ports 80/443, not a web server directly; running both sides from "
    "one place, with the same wrk binary and the same path into the lab's bridge, keeps the "
    "comparison fair.",
    "- **Failure drills**: the request stream runs in `client` (`lab/toolkit/client_stream.py`, "
    "python3, a "
    "new verified HTTPS connection per request, like independent users).",
    "- **sysbench** runs on the control machine inside web-01's network namespace (`nsenter "
    "--net`) because the firewall lets only app servers (and databases, monitoring) reach "
    "MariaDB; it logs in as a temporary user `bench@10.213.0.21` on a temporary database "
    "`sbtest`, both dropped afterwards.",
    "- All loads are bounded in time and count and aimed only at lab addresses.",
]


def main() -> None:
    print(generate([Path(a) for a in sys.argv[1:]]))


if __name__ == "__main__":
    main()
