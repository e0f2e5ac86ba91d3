"""PNG plots for docs/benchmarks.md (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE = (8, 3.2)
MODES = (("plain_http_direct", "plain HTTP direct to web-01", "tab:blue"),
         ("https_via_lb", "HTTPS via the floating IP", "tab:orange"))
HATCHES = ("", "//", "..")  # one per release, in the report's column order
NAN = float("nan")  # a figure one release lacks: no bar


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
    ax.plot(t, lag, linewidth=0.8, color="tab:blue",
            label=f"lag (beat age - {r['beat_period_s']} s)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("replica lag, s")
    ax.set_title(f"{r.get('replica', 'db-02')} lag behind {r.get('primary', 'db-01')} "
                 f"({1 / r['beat_period_s']:g} Hz beat, sampled at {1 / r['sample_period_s']:g} "
                 "Hz)", fontsize=10)
    ax.legend(loc="upper right", fontsize=7)
    _save(fig, path, caption)


def dataplane(runs: dict[str, dict], path: Path, caption: str) -> None:
    """Requests/s per endpoint, plain HTTP and HTTPS (colour), each release's bar (runs: by its
    label; hatching) next to the other's."""
    first = next(iter(runs.values()))
    names = list(dict.fromkeys(n for r in runs.values() for n in r["endpoints"]))
    bars = [(f"{release}: {mode}", colour, HATCHES[j % len(HATCHES)],
             [r["endpoints"].get(n, {}).get(key, {}).get("rps", NAN) for n in names])
            for key, mode, colour in MODES for j, (release, r) in enumerate(runs.items())]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, (label, colour, hatch, rps) in enumerate(bars):
        ax.bar([x + (i - (len(bars) - 1) / 2) * width for x in range(len(names))], rps,
               width=width, color=colour, hatch=hatch, edgecolor="white", label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("requests / s (log)")
    ax.set_title(f"wrk -t{first['threads']} -c{first['connections']}, {first['seconds']} s each",
                 fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path, caption)
