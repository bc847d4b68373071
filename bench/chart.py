"""Draw throughput.png from results.json: req/s and req per CPU-s per stack, both connection modes, ratios to uWSGI.

Run with the bench venv's interpreter (matplotlib lives there): `python -m bench.chart results.json throughput.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from bench.stacks import SUITE

COLORS = {"keep-alive": "#1f77b4", "close": "#ff7f0e"}
SUITE_COLORS = {"keep-alive": "#2ca02c", "close": "#98df8a"}


PANELS = (
    ("requests_per_s", "ratio", "requests per second (median)"),
    ("requests_per_cpu_s", "ratio_per_cpu", "requests per CPU-second of the stack (median)"),
)


def draw(results: dict[str, Any], out: Path) -> None:
    """Two panels (req/s, req per CPU-s), one bar pair per stack (keep-alive, close), slowest at the bottom."""
    rows = [r for r in results["rows"] if r["section"] == "per_core"]
    modes = list(results["plan"]["modes"])
    labels = list(dict.fromkeys(r["label"] for r in rows))
    by = {(r["label"], r["mode"]): r for r in rows}

    def value(label: str, mode: str, field: str = "requests_per_s") -> float:
        return ((by.get((label, mode)) or {}).get("summary") or {}).get(field) or 0.0

    labels.sort(key=lambda label: value(label, modes[0]))
    height = 0.8 / len(modes)
    fig, axes = plt.subplots(1, len(PANELS), sharey=True, figsize=(15, 0.4 * len(labels) * len(modes) + 1.8))
    for ax, (field, ratio_key, xlabel) in zip(axes, PANELS, strict=True):
        for m_index, mode in enumerate(modes):
            for l_index, label in enumerate(labels):
                row = by.get((label, mode)) or {}
                ceiling = row.get("kind") == "ceiling"
                y = l_index + ((len(modes) - 1) / 2 - m_index) * height  # first mode on top
                width = value(label, mode, field)
                ax.barh(
                    y,
                    width,
                    height=height,
                    color=(SUITE_COLORS if row.get("stack") == SUITE else COLORS)[mode],
                    alpha=0.45 if ceiling else 1.0,
                    hatch="//" if ceiling else None,
                )
                text = "failed" if row.get("summary") is None else f"{width:,.0f}"
                if row.get(ratio_key) is not None:
                    text += f"  ({row[ratio_key]:.2f}x)"
                ax.text(width, y, " " + text, va="center", fontsize=7)
        ax.set_xlabel(f"{xlabel}\n(ratio to uWSGI+nginx)", fontsize=9)
        ax.set_xlim(0, max((value(lb, md, field) for lb in labels for md in modes), default=1) * 1.35 or 1)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=9)
    handles = [Patch(color=COLORS[m], label=m) for m in modes] + [
        Patch(color=SUITE_COLORS[modes[0]], label="the suite")
    ]
    axes[0].legend(handles=handles, title="connections", loc="lower right", fontsize=8)
    machine = results["machine"]
    fig.suptitle(
        f"Example Flask app, one worker pinned to one CPU: {machine['cpu']}, {machine['date']}, "
        f"load average at start {machine['loadavg_start'][0]:.2f}. Hatched: ceilings (no Flask, or a static file).",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    """`python -m bench.chart RESULTS_JSON OUT_PNG`."""
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.chart RESULTS_JSON OUT_PNG")
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
