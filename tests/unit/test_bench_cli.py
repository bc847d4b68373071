"""bench/cli.py: which provisioning figures a throughput run carries, and the plan a command line asks for."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from bench import cli, runner
from meinheld_build.build import read_series


def test_provision_prefers_the_latest_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = tmp_path / "outcome.json"
    outcome.write_text(json.dumps({"status": "ran", "steps": []}))
    previous = tmp_path / "results.json"
    previous.write_text(json.dumps({"provision": {"status": "ran", "old": True}}))
    monkeypatch.setattr(cli, "PROVISION_OUTCOME", outcome)
    assert cli.latest_provision(previous) == {"status": "ran", "steps": []}
    outcome.unlink()
    assert cli.latest_provision(previous) == {"status": "ran", "old": True}
    previous.unlink()
    assert cli.latest_provision(previous)["status"] == "not run"


def test_plan_from_arguments() -> None:
    args = argparse.Namespace(smoke=True, duration=3, warmup=None, rounds=None, connections=8)
    plan = cli._plan(args)
    assert (plan.duration_s, plan.connections) == (3, 8)
    assert (plan.warmup_s, plan.rounds) == (runner.Plan.smoke().warmup_s, 1)


@pytest.mark.parametrize("value", ["0017", "17", "0017-hold-at-most-16-requests-per-batch.patch"])
def test_baseline_series_names_the_last_patch(value: str) -> None:
    assert cli.baseline_series(value) == {
        "last_patch": "0017-hold-at-most-16-requests-per-batch.patch",
        "patches": 17,
        "of": len(read_series()),
    }


@pytest.mark.parametrize("value", ["0999", "parser"])
def test_baseline_series_exits_naming_a_bad_value(value: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(f"--baseline {value!r} names no patch")):
        cli.baseline_series(value)


def test_baseline_option_and_its_long_name() -> None:
    for flag in ("--baseline", "--baseline-series"):
        assert cli._parser().parse_args(["run", flag, "0017"]).baseline == "0017"
    assert cli._parser().parse_args(["run"]).baseline is None
