"""PNG plots for docs/benchmarks.md (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE = (8, 3.2)


def _save(fig, path: Path, caption: str) -> None:
    fig.text(0.01, 0.01, caption, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def drill(name: str, r: dict, path: Path, caption: str) -> None:
    """Answered and failed requests per second across one drill, with its events marked."""
    ok, failed = r["series_per_s"]["ok"], r["series_per_s"]["failed"]
    x = range(len(ok))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.bar(x, ok, width=1.0, align="edge", color="tab:green", label="answered 2xx /s")
    ax.bar(x, failed, width=1.0, align="edge", bottom=ok, color="tab:red", label="failed /s")
    for t, label in r["events"]:
        ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
        ax.text(t, ax.get_ylim()[1] * 0.97, f" {label}", fontsize=7, va="top", rotation=0)
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("requests / s")
    ax.set_title(f"{name}: {r['method']} {r['path']} at {r['rate']:g}/s, "
                 f"{r['failed']} of {r['sent']} failed", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    _save(fig, path, caption)


def replication_lag(r: dict, path: Path, caption: str) -> None:
    t = [s[0] for s in r["series"]]
    lag = [s[1] for s in r["series"]]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    start, end = r["load_window_s"]
    ax.axvspan(start, end, color="tab:orange", alpha=0.15, label="sysbench running")
    ax.plot(t, lag, linewidth=0.8, color="tab:blue", label="lag (beat age - 0.1 s)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replica lag, s")
    ax.set_title(f"{r.get('replica', 'db-02')} lag behind {r.get('primary', 'db-01')} "
                 "(10 Hz beat, sampled at 20 Hz)", fontsize=10)
    ax.legend(loc="upper right", fontsize=7)
    _save(fig, path, caption)


def dataplane(r: dict, path: Path, caption: str) -> None:
    names = list(r["endpoints"])
    plain = [r["endpoints"][n]["plain_http_direct"]["rps"] for n in names]
    https = [r["endpoints"][n]["https_via_lb"]["rps"] for n in names]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], plain, width=0.4, label="plain HTTP direct to web-01")
    ax.bar([i + 0.2 for i in x], https, width=0.4, label="HTTPS via the floating IP")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("requests / s (log)")
    ax.set_title(f"wrk -t{r['threads']} -c{r['connections']}, {r['seconds']} s each", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path, caption)
