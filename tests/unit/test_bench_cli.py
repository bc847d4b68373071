"""bench/cli.py: which provisioning figures a throughput run carries, and the plan a command line asks for."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import cli, runner


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
