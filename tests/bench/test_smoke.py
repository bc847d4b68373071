"""A short run of the whole benchmark harness (a few seconds per stack), so `make bench` cannot rot unnoticed.

It builds the stacks' venvs on first use (cached under .cache/bench/), starts every stack pinned to CPU 0, loads each
with wrk from CPU 1 in both connection modes, and checks the three outputs. It ranks nothing: the times are too short.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import stacks
from tests.conftest import REPO

PER_CORE_KEYS = [stack.key for stack in stacks.PER_CORE]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    argv = [sys.executable, "-m", "bench", "run", "--smoke", "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def results(smoke: Path) -> dict:
    return json.loads((smoke / "results.json").read_text())


def rows(results: dict, section: str) -> dict[tuple[str, str], dict]:
    return {(r["stack"], r["mode"]): r for r in results["rows"] if r["section"] == section}


@pytest.mark.parametrize("mode", ["keep-alive", "close"])
@pytest.mark.parametrize("key", PER_CORE_KEYS)
def test_every_stack_served_in_both_modes(results: dict, key: str, mode: str) -> None:
    row = rows(results, "per_core")[key, mode]
    assert row["error"] is None
    summary = row["summary"]
    assert summary["requests"] > 0
    assert summary["non_2xx_3xx"] == 0
    assert summary["socket_errors"] <= summary["requests"] / 100
    assert summary["stack_pss_mib"] > 0
    assert summary["server_cpu_share"] > 0  # the CPU time of the stack was found and read


@pytest.mark.parametrize("key", [s.key for s in stacks.PER_CORE if s.key != "nginx-static"])
def test_one_app_worker_with_its_memory(results: dict, key: str) -> None:
    row = rows(results, "per_core")[key, "keep-alive"]
    assert {r["workers"] for r in row["rounds"]} == {1}
    assert 5 < row["summary"]["worker_rss_mib"] < 500


def test_ratios_are_to_uwsgi_nginx(results: dict) -> None:
    per_core = rows(results, "per_core")
    assert per_core[stacks.BASELINE, "keep-alive"]["ratio"] == pytest.approx(1.0)
    assert per_core[stacks.SUITE, "keep-alive"]["ratio"] > 0


def test_scaling_sizes_workers_from_the_affinity(results: dict) -> None:
    row = rows(results, "scaling")[stacks.SUITE, "keep-alive"]
    assert row["workers_per_core"] == 1
    assert {r["workers"] for r in row["rounds"]} == {2}  # WORKERS_PER_CORE=1 on CPUs 0 and 1
    assert row["summary"]["requests"] > 0


def test_markdown_names_every_stack_and_the_targets(smoke: Path, results: dict) -> None:
    text = (smoke / "results.md").read_text()
    labels = {row["label"] for row in results["rows"] if row["section"] == "per_core"}
    assert len(labels) == len(PER_CORE_KEYS)
    for label in labels:
        assert label in text
    assert "## Targets" in text and "## Scaling" in text
    assert "Load average" in text


def test_chart_is_a_png(smoke: Path) -> None:
    data = (smoke / "throughput.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_every_process_is_stopped(results: dict) -> None:
    pids = {pid for row in results["rows"] for r in row["rounds"] for pid in r["pids"]}
    assert len(pids) > len(PER_CORE_KEYS)  # masters and workers were seen ...
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []  # ... and none outlived the run
