"""docs/benchmarks.md from bench/results (bench/report.py): each Debian release's newest results
in a column of its own, side by side, from small synthetic results files; a release without
results says so; results written before the release was recorded count as bookworm. No lab, no
plots drawn (the plot calls are recorded instead)."""

import json
import subprocess
import warnings

import pytest

from lab.topology import DEBIAN_RELEASES, Topology

with warnings.catch_warnings():  # matplotlib 3.9 (bench/plots.py) calls pyparsing 3.3's
    warnings.simplefilter("ignore", DeprecationWarning)  # deprecated names on import
    from bench import machine, plots, report
    from bench.drills import aggregate

MACHINE = {"cpu_model": "Test CPU", "cores": 4, "ram_gib": 8.0, "kernel": "6.1.0",
           "docker_server": "26.1", "date_utc": "2026-12-01 10:00 UTC"}


@pytest.fixture(autouse=True)
def drawn(monkeypatch, tmp_path):
    """The plots the report asks for, by kind: (first argument, file name); none is drawn."""
    calls = {"dataplane": [], "drill": [], "replication_lag": []}
    monkeypatch.setattr(plots, "dataplane", lambda runs, path, _: calls["dataplane"].append(
        (list(runs), path.name)))
    monkeypatch.setattr(plots, "drill", lambda name, _, path, __: calls["drill"].append(
        (name, path.name)))
    monkeypatch.setattr(plots, "replication_lag", lambda _, path, __: calls[
        "replication_lag"].append((None, path.name)))
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    monkeypatch.setattr(report, "DOC", tmp_path / "benchmarks.md")
    return calls


def wrk(rps: float, p50: float = 1.0) -> dict:
    return {"requests": int(rps * 10), "errors": 0, "rps": rps, "p50_ms": p50, "p99_ms": 2 * p50,
            "haproxy_cpu_us_per_request": 100.0}


def endpoint(plain: float, https: float) -> dict:
    half = plain / 2
    return {"what": "an endpoint", "plain_http_direct": wrk(plain), "https_via_lb": wrk(https),
            "rps_ratio": round(https / plain, 3),
            "half_load": {"target_rps": half, "plain_http_direct": wrk(half, 1.0),
                          "https_via_lb": wrk(half, 1.5), "p50_added_ms": 0.5}}


def dataplane(plain: float, https: float) -> dict:
    return {"threads": 2, "connections": 16, "seconds": 10, "machine": MACHINE,
            "endpoints": {p: endpoint(plain, https) for p in report.APP_ENDPOINTS},
            "tls_handshakes": {"path": "/", "https_via_lb": wrk(900),
                               "plain_http_direct": wrk(9000)}}


def drill_run(sent: int, failed: int = 0) -> dict:
    return {"method": "GET", "path": "/healthz", "rate": 50.0, "sent": sent, "failed": failed,
            "failures_by_kind": {"503": failed} if failed else {}, "longest_gap_s": 0.04,
            "slowest_request_s": 0.05, "whole_again_s": 1.0, "whole_again_from": "start",
            "repaired_afterwards": [], "problems": ["failed requests"] if failed else [],
            "series_per_s": {"ok": [50], "failed": [failed]}, "events": []}


def results(release: str | None, plain: float = 400, https: float = 300, **extra) -> dict:
    """A results file as bench/run.py writes it (release None: as it wrote them before)."""
    data = {"machine": MACHINE, "dataplane": dataplane(plain, https),
            "drills": {"web_kill9": aggregate([drill_run(400)]), "machine": MACHINE}, **extra}
    if release:
        data["lab"] = {"debian": release}
    return data


def render(tmp_path, **files: dict) -> str:
    """docs/benchmarks.md from results files named <name>.json (keyword: the name)."""
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / f"{name.replace('_', '-')}.json")
        paths[-1].write_text(json.dumps(data))
    return "\n".join(report.render(report.latest(paths)))


def cells(md: str, name: str) -> list[str]:
    """The cells after the row name of the first table row that has it."""
    line = next(x for x in md.splitlines() if x.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_the_columns_are_the_labs_releases():
    assert set(report.RELEASES) == set(DEBIAN_RELEASES)


def test_each_release_is_a_column_with_its_own_figures(tmp_path, drawn):
    md = render(tmp_path, d2026_12_01_bookworm=results("bookworm", 400, 300),
                d2026_12_02_trixie=results("trixie", 500, 480))
    assert cells(md, "") == ["Debian 12 (bookworm)", "Debian 13 (trixie)"]
    assert cells(md, "plain HTTP direct to web-01: req/s") == ["400", "500"]
    assert cells(md, "**ratio HTTPS / plain req/s**") == ["**75%**", "**96%**"]
    assert cells(md, "**new HTTPS connections/s** via the floating IP") == ["**900**", "**900**"]
    assert cells(md, "failed of sent") == ["0 of 400", "0 of 400"]
    assert cells(md, "results") == ["`bench/results/d2026-12-01-bookworm.json`",
                                    "`bench/results/d2026-12-02-trixie.json`"]
    assert drawn["dataplane"] == [(["Debian 12 (bookworm)", "Debian 13 (trixie)"],
                                   "dataplane-rps.png")]
    assert drawn["drill"] == [("web_kill9", "drill-web_kill9-bookworm.png"),
                              ("web_kill9", "drill-web_kill9-trixie.png")]


def test_the_targets_are_judged_per_release(tmp_path):
    md = render(tmp_path, a_bookworm=results("bookworm", 400, 300),
                b_trixie=results("trixie", 400, 380))
    ratio = cells(md, "`GET /api/notes`: HTTPS via LB >= 90% of plain HTTP requests/s")
    assert ratio[:4] == ["75%", "**not met**", "95%", "**met**"]
    assert ratio[4].startswith("Debian 12 (bookworm): HAProxy spends 100.0 us")
    assert "on the same 4 cores" in ratio[4] and "Debian 13" not in ratio[4]


def test_a_release_without_results_is_not_yet_measured(tmp_path, drawn):
    md = render(tmp_path, a_bookworm=results("bookworm"))
    assert cells(md, "results")[1] == "not yet measured"
    assert cells(md, "plain HTTP direct to web-01: req/s") == ["400", "-"]
    assert cells(md, "failed of sent") == ["0 of 400", "-"]
    assert cells(md, "web_kill9: 0 failed requests, out of rotation within 3 s")[2:4] == [
        "-", "not yet measured"]
    assert "- Debian 13 (trixie): not yet measured" in md
    assert "*Debian 13 (trixie): not yet measured.*" in md  # the replication section
    assert "*Debian 12 (bookworm): not run in `a-bookworm.json`.*" in md  # no deploy stage
    assert drawn["dataplane"] == [(["Debian 12 (bookworm)"], "dataplane-rps.png")]


def test_no_results_at_all_is_a_document_that_says_so(tmp_path, drawn):
    md = render(tmp_path)
    assert cells(md, "results") == ["not yet measured", "not yet measured"]
    assert drawn == {"dataplane": [], "drill": [], "replication_lag": []}


def test_each_column_states_machine_date_and_packages(tmp_path):
    lab = {"debian": "trixie", "packages": {"lb-01": {"haproxy": "3.0.11-1"},
                                            "db-01": {"mariadb-server": None}}}
    data = results("trixie")
    data["dataplane"]["lab"] = lab
    md = render(tmp_path, a_trixie=data, b_bookworm=results("bookworm"))
    assert cells(md, "machine; date") == [
        "Test CPU, 4 cores, 8.0 GiB RAM, kernel 6.1.0, Docker 26.1; 2026-12-01 10:00 UTC"] * 2
    assert cells(md, "lab hosts") == [
        "packages not recorded", "haproxy 3.0.11-1 (lb-01), mariadb-server unknown (db-01)"]


def test_the_newest_results_of_a_release_count(tmp_path):
    md = render(tmp_path, d2026_12_01_bookworm=results("bookworm", 100, 90),
                d2026_12_03_bookworm=results("bookworm", 300, 90),
                d2026_12_02_bookworm=results("bookworm", 200, 90))
    assert cells(md, "plain HTTP direct to web-01: req/s") == ["300", "-"]


def test_results_from_before_releases_were_recorded_are_bookworm_with_todays_drill_names(
        tmp_path):
    old = {k: v for k, v in drill_run(196).items() if k != "problems"}
    old |= {"writes_acknowledged": 196, "acknowledged_missing_db01": [],
            "acknowledged_missing_db02": [], "unacknowledged_but_stored": 0}
    data = results(None, drills={"db02_kill9": old, "machine": MACHINE})
    md = render(tmp_path, **{"2026-11-26": data})
    assert cells(md, "results") == ["`bench/results/2026-11-26.json`", "not yet measured"]
    assert cells(md, "**replica_kill9**") == ["1 run", "-"]
    assert cells(md, "verdict held") == ["not recorded", "-"]
    assert cells(md, "replica_kill9: 0 acknowledged writes lost")[:2] == [
        "0 lost of 196 acknowledged; 0 writes failed (not acknowledged)", "**met**"]


def test_a_mixed_lab_gets_a_column_of_its_own(tmp_path):
    data = results("mixed")
    data["dataplane"]["lab"] = {"debian": "mixed", "hosts": {"lb-01": "trixie",
                                                             "web-02": "bookworm"}}
    md = render(tmp_path, a_mixed=data)
    assert cells(md, "") == ["Debian 12 (bookworm)", "Debian 13 (trixie)", "mixed releases"]
    assert cells(md, "lab hosts")[2] == "bookworm: web-02; trixie: lb-01; packages not recorded"


def test_a_single_release_section_names_its_release(tmp_path, drawn):
    rp = {"sysbench": {"test": "oltp_write_only", "threads": 4, "seconds": 30, "tables": 4,
                       "table_size": 10000, "transactions_per_s": 1900.0,
                       "queries_per_s": 11000.0, "latency_p95_ms": 4.1},
          "lag_under_load": {"samples": 500, "p50_s": 0.5, "p99_s": 0.9, "max_s": 1.0},
          "lag_idle": {"samples": 50, "p50_s": 0.0, "p99_s": 0.1, "max_s": 0.2},
          "beat_period_s": 0.1, "sample_period_s": 0.05, "machine": MACHINE}
    md = render(tmp_path, a_trixie=results("trixie", replication=rp))
    section = md.split("## 4. Replication lag")[1].split("## Where")[0]
    assert "*Debian 12 (bookworm): not yet measured.*" in section
    assert "*Debian 13 (trixie), `bench/results/a-trixie.json`. Machine: Test CPU" in section
    assert "| lag under the sysbench load | 500 | 0.5 s | 0.9 s | 1.0 s |" in section
    assert drawn["replication_lag"] == [(None, "replication-lag-trixie.png")]


def test_generate_writes_the_document_and_drops_plots_of_an_older_layout(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(report, "ROOT", tmp_path)  # the summary names files relative to it
    path = tmp_path / "2026-12-01-trixie.json"
    path.write_text(json.dumps(results("trixie")))
    report.PLOTS.mkdir()
    (report.PLOTS / "drill-web_kill9.png").write_bytes(b"")  # named before releases were
    summary = report.generate([path])
    assert report.DOC.read_text().startswith("# Benchmarks and failure drills")
    assert not list(report.PLOTS.glob("*.png"))  # plots.* record instead of drawing
    assert "| target (issue #9) | Debian 12 (bookworm) | verdict | Debian 13 (trixie) |" in summary


def test_the_committed_document_is_the_report_of_the_committed_results():
    """docs/benchmarks.md is generated: no figure in it was written by hand."""
    cols = report.latest(report.RESULTS.glob("*.json"))
    expected = "\n".join(report.render(cols))
    assert (report.ROOT / "docs" / "benchmarks.md").read_text() == expected, (
        "regenerate it: .venv/bin/python bench/report.py")


@pytest.mark.parametrize(("hosts", "expected"), [
    pytest.param((), {"debian": "bookworm"}, id="one release"),
    pytest.param((("web-02", "trixie"),), {"debian": "mixed", "hosts": {
        "lb-01": "bookworm", "lb-02": "bookworm", "web-01": "bookworm", "web-02": "trixie",
        "db-01": "bookworm", "db-02": "bookworm", "monitor-01": "bookworm",
        "client": "bookworm"}}, id="mixed: each host's"),
])
def test_the_release_recorded_is_the_labs(hosts, expected):
    assert machine.debian(Topology("10.9.0.0/24", 2, debian="bookworm",
                                   debian_hosts=hosts)) == expected


def test_the_packages_recorded_are_dpkgs_and_a_silent_host_is_none(monkeypatch):
    def run(host, *cmd, timeout):
        assert cmd[:4] == ("dpkg-query", "-W", "-f", "${Version}")
        if host == "web-01":
            raise subprocess.TimeoutExpired(cmd, timeout)
        return subprocess.CompletedProcess(cmd, 0, stdout=f"1.0-{host}", stderr="")

    monkeypatch.setattr(machine, "run", run)
    monkeypatch.setattr(machine, "primary", lambda: "db-02")
    assert machine.packages() == {"lb-01": {"haproxy": "1.0-lb-01"}, "web-01": {"nginx": None},
                                  "db-02": {"mariadb-server": "1.0-db-02"}}
