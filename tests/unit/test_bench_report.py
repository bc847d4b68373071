"""bench/report.py and bench/runner.py's summary: ratios to the baseline, targets, the Markdown and JSON writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report, runner


def cell(
    section: str,
    stack: str,
    mode: str,
    rps: list[float],
    cpu: float = 0.95,
    wpc: float | None = None,
    preload: bool = False,
    pss: float = 40.0,
):
    c = runner.Cell(section, stack, f"label of {stack}", "peer", mode, wpc, preload=preload)
    for value in rps:
        c.rounds.append(
            {
                "requests_per_s": value,
                "requests_per_cpu_s": value / cpu,
                "latency_p50_s": 0.001,
                "latency_p99_s": 0.004,
                "server_cpu_share": cpu,
                "other_cpu_share": 1 - cpu,
                "worker_rss_mib": 30.0,
                "stack_pss_mib": pss,
                "requests": int(value * 8),
                "socket_errors": 0,
                "non_2xx_3xx": 0,
                "workers": int(2 * (wpc or 1)) if section == "scaling" else 1,
            }
        )
    return c


def results(suite_rps: float = 1500.0, rows_extra: list | None = None) -> dict:
    cells = [
        cell("per_core", "suite", "keep-alive", [suite_rps - 10, suite_rps, suite_rps + 10]),
        cell("per_core", "stock-meinheld", "keep-alive", [1400.0, 1410.0, 1390.0]),
        cell("per_core", "uwsgi-nginx", "keep-alive", [1000.0, 990.0, 1010.0]),
        cell("scaling", "suite", "keep-alive", [2800.0], wpc=1),
        *(rows_extra or []),
    ]
    return {
        "schema": 1,
        "machine": {
            "date": "2026-11-25 15:00 UTC",
            "cpu": "Test CPU",
            "cpus": 2,
            "memory_gib": 24.0,
            "os": "Debian",
            "kernel": "6.1",
            "wrk": "wrk 4.1.0",
            "nginx": "nginx/1.22.1",
            "loadavg_start": [0.5, 0.4, 0.3],
            "loadavg_end": [1.0, 0.6, 0.4],
        },
        "plan": vars(runner.Plan()) | {"modes": ["keep-alive"]},
        "rows": runner.summarize(cells),
        "elapsed_s": 600.0,
    }


def row(doc: dict, section: str, stack: str) -> dict:
    found = report.find(doc["rows"], section, stack, "keep-alive")
    assert found is not None
    return found


def test_ratios_are_to_uwsgi_nginx_per_core_and_to_the_suite_for_scaling() -> None:
    doc = results()
    assert row(doc, "per_core", "suite")["ratio"] == pytest.approx(1.5)
    assert row(doc, "per_core", "uwsgi-nginx")["ratio"] == pytest.approx(1.0)
    assert row(doc, "per_core", "stock-meinheld")["ratio"] == pytest.approx(1.4)
    assert row(doc, "scaling", "suite")["ratio"] == pytest.approx(2800 / 1500)


def test_a_failed_baseline_gives_no_ratio() -> None:
    failed = runner.Cell("per_core", "uwsgi-nginx", "uWSGI", "baseline", "keep-alive", error="did not start")
    cells = [cell("per_core", "suite", "keep-alive", [1500.0]), failed]
    rows = runner.summarize(cells)
    assert rows[0]["ratio"] is None
    assert rows[1]["summary"] is None


@pytest.mark.parametrize(("suite_rps", "met"), [(1500.0, True), (1200.0, False)])
def test_target_suite_over_uwsgi(suite_rps: float, met: bool) -> None:
    checks = report.targets(results(suite_rps)["rows"], ["keep-alive"])
    over_uwsgi = next(c for c in checks if "uWSGI" in c["target"])
    assert over_uwsgi["met"] is met
    assert over_uwsgi["ratio"] == pytest.approx(suite_rps / 1000)


def test_target_patched_over_stock() -> None:
    checks = report.targets(results(1300.0)["rows"], ["keep-alive"])
    over_stock = next(c for c in checks if "stock" in c["target"])
    assert over_stock["met"] is False
    assert over_stock["ratio"] == pytest.approx(1300 / 1400)


def test_target_suite_over_bjoern_is_a_keep_alive_target() -> None:
    rows = results(1500.0, rows_extra=[cell("per_core", "bjoern", "keep-alive", [1400.0])])["rows"]
    (over_bjoern,) = [c for c in report.targets(rows, ["keep-alive", "close"]) if "bjoern" in c["target"]]
    assert over_bjoern["mode"] == "keep-alive"
    assert over_bjoern["met"] is True
    assert over_bjoern["ratio"] == pytest.approx(1500 / 1400)


def test_markdown_has_conditions_targets_tables_and_scaling() -> None:
    text = report.markdown(results())
    assert "Test CPU, 2 CPUs" in text
    assert "0.50 / 0.40 / 0.30" in text and "1.00 / 0.60 / 0.40" in text
    assert "suite >= 1.3x uWSGI+nginx per core (keep-alive): 1.50x" in text
    assert "| **label of suite** | 1,500 | 1.50x |" in text
    assert "| label of uwsgi-nginx | 1,000 | 1.00x |" in text
    assert "## Scaling" in text and "| 1 | off | 2 | keep-alive | 2,800 | 1.87x |" in text
    assert "![requests per second per stack](throughput.png)" in text
    assert "Other work took" not in text


def test_markdown_flags_a_busy_core_and_a_failed_stack() -> None:
    busy = cell("per_core", "bjoern", "keep-alive", [500.0], cpu=0.5)
    failed = runner.Cell("per_core", "granian", "granian", "peer", "keep-alive", error="did not start: boom")
    text = report.markdown(results(rows_extra=[busy, failed]), chart=None)
    assert "Other work took more than 10% of the server's CPU during: bjoern (keep-alive, 0.50)" in text
    assert "| granian | failed: did not start: boom |" in text
    assert "throughput.png" not in text


def test_json_round_trips(tmp_path: Path) -> None:
    doc = results()
    report.write_json(doc, tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(doc))


def test_provision_not_run_says_why() -> None:
    assert report.provision_lines({"status": "not run", "reason": "no lab"}) == ["Not run: no lab"]


def _run(playbook: str, strategy: str, rerun_s: float, changed: int = 0) -> dict[str, object]:
    return {
        "playbook": playbook,
        "strategy": strategy,
        "boot_s": 20.0,
        "steps": [{"name": "idempotent rerun", "seconds": rerun_s, "changed": changed, "tasks": 90, "module_runs": 21}],
    }


def test_provision_puts_suite_and_reference_side_by_side_per_strategy() -> None:
    lines = report.provision_lines(
        {
            "status": "ran",
            "runs": [
                _run("suite", "mitogen", 36.0),
                _run("reference", "mitogen", 72.0),
                _run("suite", "linear", 300.0),
                {"playbook": "reference", "strategy": "linear", "status": "not run: no wheel"},
            ],
        }
    )
    linear, mitogen = (
        lines.index("### Ansible's linear strategy"),
        lines.index("### Mitogen's strategy (mitogen_linear)"),
    )
    assert linear < mitogen
    assert lines[linear + 5] == "| idempotent rerun | 300.0 | 0 | 90 | 21 | not run: no wheel |  |  |  |  |"
    assert lines[mitogen + 4] == "| lab VM boot to SSH (the lab, not the suite) | 20.0 |  |  |  | 20.0 |  |  |  |  |"
    assert lines[mitogen + 5] == "| idempotent rerun | 36.0 | 0 | 90 | 21 | 72.0 | 0 | 90 | 21 | 0.50x |"


def test_provision_targets_say_met_or_not() -> None:
    lines = report.provision_lines(
        {
            "status": "ran",
            "runs": [],
            "targets": [
                {
                    "strategy": "mitogen",
                    "step": "idempotent rerun",
                    "target_ratio": 1.3,
                    "target_s": 60,
                    "seconds": 36.0,
                    "ratio": 1.2,
                    "met": True,
                },
                {
                    "strategy": "linear",
                    "step": "fresh converge",
                    "target_ratio": 1.3,
                    "target_s": None,
                    "seconds": 440.2,
                    "ratio": 2.57,
                    "met": False,
                },
            ],
        }
    )
    assert lines[-2:] == [
        "- idempotent rerun <= 1.3x and <= 60 s with changed=0, Mitogen's strategy (mitogen_linear): 36.0 s, "
        "1.20x: met",
        "- fresh converge <= 1.3x, Ansible's linear strategy: 440.2 s, 2.57x: **not met**",
    ]


def test_rotate_starts_each_round_at_the_next_stack() -> None:
    assert [runner.rotate([1, 2, 3], r) for r in range(4)] == [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 2, 3]]
    assert runner.rotate([], 2) == []


def test_smoke_plan_keeps_the_rules_and_shrinks_the_times() -> None:
    smoke, full = runner.Plan.smoke(), runner.Plan()
    assert (smoke.server_cpus, smoke.load_cpus, smoke.modes) == (full.server_cpus, full.load_cpus, full.modes)
    assert smoke.duration_s < full.duration_s and smoke.rounds == 1


def baseline_results(suite: float, before: float, bjoern: float = 1000.0, close: bool = True) -> dict:
    modes = ["keep-alive", "close"] if close else ["keep-alive"]
    extra = [
        cell("per_core", stack, mode, [rps * (0.6 if mode == "close" else 1.0)])
        for mode in modes
        for stack, rps in (("suite-baseline", before), ("bjoern", bjoern))
    ]
    if close:
        extra.append(cell("per_core", "suite", "close", [suite * 0.6]))
    doc = results(suite, rows_extra=extra)
    doc["plan"]["modes"] = modes
    doc["baseline_series"] = {"last_patch": "0017-hold-at-most-16-requests-per-batch.patch", "patches": 17, "of": 25}
    return doc


@pytest.mark.parametrize(
    ("suite", "before", "change", "met"),
    [
        (1000.0, 1000.0, 0.0, True),
        (1050.0, 1000.0, 0.05, True),  # faster than before: within the target
        (970.0, 1000.0, -0.03, True),  # exactly 3% below: still within
        (969.0, 1000.0, -0.031, False),
        (900.0, 1000.0, -0.10, False),
    ],
)
def test_against_baseline_keep_alive_verdict(suite: float, before: float, change: float, met: bool) -> None:
    doc = baseline_results(suite, before, bjoern=1200.0)
    keep_alive, close = report.against_baseline(doc["rows"], doc["plan"]["modes"])
    assert keep_alive["mode"] == "keep-alive" and keep_alive["met"] is met
    assert keep_alive["suite_over_bjoern"] == pytest.approx(suite / 1200)
    assert keep_alive["baseline_over_bjoern"] == pytest.approx(before / 1200)
    assert keep_alive["change"] == pytest.approx(change)
    assert close["mode"] == "close" and close["met"] is None and not close["targeted"]  # reported, no target
    assert close["change"] == pytest.approx(change)


@pytest.mark.parametrize("missing", ["suite-baseline", "bjoern"])
def test_against_baseline_without_a_figure_is_not_measured(missing: str) -> None:
    doc = baseline_results(1000.0, 1000.0, close=False)
    for row in doc["rows"]:
        if row["stack"] == missing:
            row["summary"] = None
    (check,) = report.against_baseline(doc["rows"], ["keep-alive"])
    assert check["change"] is None and check["met"] is None


def test_no_baseline_stack_no_baseline_lines() -> None:
    doc = results()
    assert report.against_baseline(doc["rows"], ["keep-alive"]) == []
    assert "Against the build before" not in report.markdown(doc) and "within 3%" not in report.markdown(doc)


def test_markdown_shows_the_baseline_rows_and_verdict() -> None:
    text = report.markdown(baseline_results(1000.0, 1020.0, bjoern=1000.0), chart=None)
    assert (
        "- suite / bjoern within 3% of Meinheld patches up to 0017 (keep-alive): "
        "1.00x now, 1.02x before: -2.0% (per CPU-second -2.0%): met"
    ) in text
    assert "(close, reported, no target): 1.00x now, 1.02x before: -2.0%" in text
    assert (
        "## Against the build before: Meinheld patches up to 0017-hold-at-most-16-requests-per-batch.patch (17 of"
        in text
    )
    assert "| keep-alive | 1,000 | 1,020 | 1,000 | 1.00x | 1.02x | -2.0% | -2.0% |" in text
    assert "| close | 600 | 612 | 600 | 1.00x | 1.02x | -2.0% | -2.0% |" in text


@pytest.mark.parametrize(
    ("on_8", "verdict"),
    [(83.0, "met"), (120.0, "**not met**")],
)
def test_pss_per_added_worker_with_preload_off_and_on(on_8: float, verdict: str) -> None:
    """The slope from the fewest to the most workers, per PRELOAD setting, against the 8 MiB target."""
    extra = [
        cell("scaling", "suite", "keep-alive", [2800.0], wpc=wpc, preload=preload, pss=pss)
        for preload, figures in ((False, (54.4, 93.3, 170.7)), (True, (38.6, 53.5, on_8)))
        for wpc, pss in zip((1, 2, 4), figures, strict=True)
    ]
    doc = results(rows_extra=extra)
    off = report.mib_per_added_worker(doc["rows"], "keep-alive", preload=False)
    assert off == pytest.approx((170.7 - 40.0) / (8 - 2))  # the default scaling cell (2 workers, 40 MiB) is off too
    on = report.mib_per_added_worker(doc["rows"], "keep-alive", preload=True)
    assert on == pytest.approx((on_8 - 38.6) / (8 - 2))
    text = report.markdown(doc, chart=None)
    assert f"on {on:.1f} MiB (target <= 8 MiB with it on: {verdict})" in text
    assert "| 4 | on | 8 | keep-alive |" in text
