"""Statistics over rounds: medians (robust to one disturbed round on a shared machine), sums of errors, ratios."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Measurements summarised by their median over rounds; errors are summed (one failed request in any round counts).
MEDIAN_FIELDS = (
    "requests_per_s",
    "latency_p50_s",
    "latency_p99_s",
    "server_cpu_share",
    "requests_per_cpu_s",
    "other_cpu_share",
    "worker_rss_mib",
    "stack_pss_mib",
)
SUM_FIELDS = ("requests", "socket_errors", "non_2xx_3xx")


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that were measured; None when none were."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values: Iterable[float | None]) -> float | None:
    """(max - min) / median: how much the rounds disagree, so a reader sees which figures are noisy."""
    present = [v for v in values if v is not None]
    middle = median(present)
    if not present or not middle:
        return None
    return (max(present) - min(present)) / middle


def summarize(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One cell of the table from its rounds: medians, error sums, and the round-to-round spread of throughput."""
    if not rounds:
        raise ValueError("no rounds to summarize")
    summary: dict[str, Any] = {field: median(r.get(field) for r in rounds) for field in MEDIAN_FIELDS}
    summary.update({field: sum(int(r.get(field) or 0) for r in rounds) for field in SUM_FIELDS})
    summary["rounds"] = len(rounds)
    summary["requests_per_s_spread"] = spread(r.get("requests_per_s") for r in rounds)
    return summary


def ratio(value: float | None, baseline: float | None) -> float | None:
    """Return value / baseline, or None when either is missing or the baseline is zero (no division by a failed run)."""
    if value is None or not baseline:
        return None
    return value / baseline
