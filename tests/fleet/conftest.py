"""The fleet suite runs against the lab fleet `make fleet` brought up and converged (inventory/fleet-lab).

At the end pytest prints what the suite measured: requests and failed requests through the balancer per case, the
time of each batch, and the scale-on-paper table computed from the mean batch time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import pytest

from tests.fleet import harness


@dataclass
class Report:
    """Figures of the fleet cases, for the summary."""

    # (case, requests, failed requests, seconds per batch, note, whether the playbook succeeded)
    cases: list[tuple[str, int, int, list[float], str, bool]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = ["through the balancer (requests, failed requests; seconds per batch):"]
        for name, sent, failed, batches, note, _ in self.cases:
            out.append(f"  {name}: {sent} requests, {failed} failed; batches {batches} s{'; ' + note if note else ''}")
        # The table is about deploys that go through: a run stopped by a failing host (its last batch waited out the
        # health check's retries) is reported above and left out of the mean.
        times = [t for _, _, _, batches, _, succeeded in self.cases if succeeded for t in batches]
        if times:
            out += harness.scale_table(statistics.mean(times), harness.forks())
        return out


REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Report:
    return REPORT


@pytest.fixture(scope="session", autouse=True)
def fleet_is_up() -> None:
    status, _, body = harness.ask(harness.fleet.LB_HTTPS_URL)
    if status != 200:
        pytest.fail(f"the balancer at {harness.fleet.LB_HTTPS_URL} answered {status} {body!r}: run `make fleet` first")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT.cases:
        terminalreporter.section("fleet report")
        for line in REPORT.lines():
            terminalreporter.write_line(line)
