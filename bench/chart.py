"""Draw throughput.png from results.json: requests per second per stack, both connection modes, ratios to uWSGI+nginx.

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

from bench.stacks import SUITE

COLORS = {"keep-alive": "#1f77b4", "close": "#ff7f0e"}
SUITE_COLORS = {"keep-alive": "#2ca02c", "close": "#98df8a"}


def draw(results: dict[str, Any], out: Path) -> None:
    """One horizontal bar pair per stack (keep-alive, close), slowest at the bottom, ceilings greyed."""
    rows = [r for r in results["rows"] if r["section"] == "per_core"]
    modes = list(results["plan"]["modes"])
    labels = list(dict.fromkeys(r["label"] for r in rows))
    by = {(r["label"], r["mode"]): r for r in rows}

    def value(label: str, mode: str) -> float:
        return ((by.get((label, mode)) or {}).get("summary") or {}).get("requests_per_s") or 0.0

    labels.sort(key=lambda label: value(label, modes[0]))
    height = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(labels) * len(modes) + 1.6))
    for m_index, mode in enumerate(modes):
        for l_index, label in enumerate(labels):
            row = by.get((label, mode)) or {}
            is_suite = row.get("stack") == SUITE
            ceiling = row.get("kind") == "ceiling"
            y = l_index + ((len(modes) - 1) / 2 - m_index) * height  # first mode on top
            color = (SUITE_COLORS if is_suite else COLORS)[mode]
            ax.barh(
                y,
                value(label, mode),
                height=height,
                color=color,
                alpha=0.45 if ceiling else 1.0,
                hatch="//" if ceiling else None,
                label=mode if l_index == 0 else None,
            )
            text = "failed" if row.get("summary") is None else f"{value(label, mode):,.0f}"
            if row.get("ratio") is not None:
                text += f"  ({row['ratio']:.2f}x)"
            ax.text(value(label, mode), y, " " + text, va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_xlabel("requests per second (median), one worker on one CPU; (ratio to uWSGI+nginx)")
    ax.set_xlim(0, max((value(label, mode) for label in labels for mode in modes), default=1) * 1.3 or 1)
    machine = results["machine"]
    ax.set_title(
        f"Example Flask app, per core: {machine['cpu']}, {machine['date']}\n"
        f"load average at start {machine['loadavg_start'][0]:.2f}; hatched = ceilings (not Flask)",
        fontsize=10,
    )
    ax.legend(title="connections", loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    """`python -m bench.chart RESULTS_JSON OUT_PNG`."""
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.chart RESULTS_JSON OUT_PNG")
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
