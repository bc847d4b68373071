"""An interrupted run (Ctrl-C, a dropped SSH connection) leaves the host half-changed: the next run must finish the job.

The window tested here is the longest of a first deploy: `python3 -m venv` installing pip into a new app's venv
(ensurepip, a minute under TCG). Stopped there, the venv has bin/python and no bin/pip.
"""

from __future__ import annotations

from typing import Any

from tests.reliability.conftest import EXAMPLE, Report
from tests.verify.conftest import EXAMPLE_DIR, HELLO, App, Site

HALFWAY, HALFWAY_PORT = "halfway", 8084


def test_a_venv_left_without_pip_is_completed_by_the_next_run(site: Site, host: Any, report: Report) -> None:
    venv = f"/srv/{HALFWAY}/venv"
    # The state an interrupted ensurepip leaves: the interpreter link is there, pip is not.
    host.run_expect([0], f"python3 -m venv --without-pip {venv}")
    assert not host.file(f"{venv}/bin/pip").exists
    apps = [EXAMPLE, {"name": HALFWAY, "path": str(EXAMPLE_DIR), "port": HALFWAY_PORT}]
    result = site.converge({"app_list": apps})
    halfway = App(host, HALFWAY)
    served = halfway.wait_serving(HALFWAY_PORT) if result.rc == 0 else (0, "")
    detail = f"next run rc={result.rc}, the app answered {served[0]}"
    report.faults.append(("a run stopped while the venv got pip", served == (200, HELLO), detail))
    assert result.rc == 0, result.output[-3000:]
    assert host.file(f"{venv}/bin/pip").exists
    assert served == (200, HELLO)
    removed = site.converge({"app_list": [EXAMPLE, {"name": HALFWAY, "state": "absent"}]})
    assert removed.rc == 0, removed.output[-3000:]
    assert not host.file(f"/srv/{HALFWAY}").exists
