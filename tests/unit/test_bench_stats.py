"""bench/stats.py: medians over rounds, error sums, spread and ratios."""

from __future__ import annotations

import pytest

from bench import stats


@pytest.mark.parametrize(
    ("values", "expected"),
    [([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5), ([None, 5.0], 5.0), ([None], None), ([], None)],
)
def test_median(values: list, expected: float | None) -> None:
    assert stats.median(values) == expected


def test_spread_is_range_over_median() -> None:
    assert stats.spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert stats.spread([None]) is None


def test_summarize_takes_medians_and_sums_errors() -> None:
    rounds = [
        {"requests_per_s": 100.0, "latency_p99_s": 0.010, "requests": 800, "socket_errors": 1, "non_2xx_3xx": 0},
        {"requests_per_s": 300.0, "latency_p99_s": 0.030, "requests": 2400, "socket_errors": 0, "non_2xx_3xx": 2},
        {"requests_per_s": 200.0, "latency_p99_s": 0.020, "requests": 1600, "socket_errors": 3, "non_2xx_3xx": 0},
    ]
    summary = stats.summarize(rounds)
    assert summary["requests_per_s"] == 200.0
    assert summary["latency_p99_s"] == 0.020
    assert (summary["requests"], summary["socket_errors"], summary["non_2xx_3xx"]) == (4800, 4, 2)
    assert summary["rounds"] == 3
    assert summary["requests_per_s_spread"] == pytest.approx(1.0)
    assert summary["worker_rss_mib"] is None  # not measured in these rounds: None, never 0


def test_summarize_needs_rounds() -> None:
    with pytest.raises(ValueError, match="no rounds"):
        stats.summarize([])


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [(130.0, 100.0, 1.3), (50.0, 100.0, 0.5), (None, 100.0, None), (100.0, None, None), (100.0, 0.0, None)],
)
def test_ratio(value: float | None, baseline: float | None, expected: float | None) -> None:
    assert stats.ratio(value, baseline) == (pytest.approx(expected) if expected else None)
