"""Draw throughput and resolve latency against ledger size from a bench report (PNG).

``plot.py REPORT.json OUT.png`` reads the per-size points of a report:
``scaling.points`` of bench/run_all.py's report, or ``points`` of
bench/resolve.py's / bench/scale.py's last-line JSON. Each point has
``dids`` and any of ``apply_per_s``, ``resolve_per_s``, ``resolve_p50_ms``,
``resolve_p99_ms``. Left panel: durable creates/s and resolves/s (with the
run's gRPC echo unary rate as a dashed reference line when present); right
panel: resolve latency p50 and p99.

Runs in bench/.venv-keri, where matplotlib is installed (never a didnode
dependency).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402


def _points(report: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(points sorted by size, the dict they came from)."""
    scaling = report.get("scaling")
    src: dict[str, Any] = scaling if isinstance(scaling, dict) else report
    pts = [p for p in src.get("points", []) if isinstance(p, dict) and p.get("dids")]
    return sorted(pts, key=lambda p: p["dids"]), src


def _series(points: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(sizes, values) of the points that have ``key``."""
    xs = [p["dids"] for p in points if isinstance(p.get(key), (int, float))]
    ys = [p[key] for p in points if isinstance(p.get(key), (int, float))]
    return xs, ys


def _sizes(x: float, _pos: int) -> str:
    """A ledger size as a tick label: 1k, 20k, 1M."""
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.3g}"


def draw(report: dict[str, Any], out: Path) -> None:
    """Write the two-panel PNG for ``report`` to ``out``."""
    points, src = _points(report)
    if not points:
        raise SystemExit("plot: the report has no per-size points (did bench/resolve.py run?)")
    title = "didnode"
    if report.get("profile"):
        title += f" bench ({report['profile']} profile, {report.get('started', '')})"
    elif report.get("bench"):
        title += f" {report['bench']} ({report.get('started', '')})"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    series = (
        ("apply_per_s", "durable creates/s (in-process, fsync per batch)", "o-"),
        ("fill_per_s", "creates/s while growing (in-process, no fsync)", "^-"),
        ("resolve_per_s", "resolves/s over gRPC", "s-"),
        ("resolve_1_caller_per_s", "resolves/s over gRPC, 1 caller", "v-"),
    )
    for key, label, style in series:
        xs, ys = _series(points, key)
        if xs:
            left.plot(xs, ys, style, label=label)
    echo = src.get("echo_unary_per_s")
    if isinstance(echo, (int, float)):
        left.axhline(echo, linestyle="--", color="grey", label=f"gRPC echo unary/s, same run ({echo:,.0f})")
    left.set_title("throughput")
    left.set_ylabel("operations per second")
    left.set_ylim(bottom=0)
    series = (
        ("resolve_p50_ms", "resolve p50", "o-"),
        ("resolve_p99_ms", "resolve p99", "s-"),
        ("resolve_1_caller_p50_ms", "resolve p50, 1 caller", "^--"),
        ("resolve_1_caller_p99_ms", "resolve p99, 1 caller", "v--"),
    )
    for key, label, style in series:
        xs, ys = _series(points, key)
        if xs:
            right.plot(xs, ys, style, label=label)
    right.set_title("resolve latency")
    right.set_ylabel("milliseconds")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("ledger size (DIDs)")
        ax.xaxis.set_major_locator(FixedLocator([p["dids"] for p in points]))
        ax.xaxis.set_major_formatter(FuncFormatter(_sizes))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:,.0f}" if y >= 10 else f"{y:g}"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    """plot.py REPORT.json OUT.png"""
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot.py REPORT.json OUT.png")
    report = json.loads(Path(sys.argv[1]).read_text())
    draw(report, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
