"""bench/provision.py: reading ansible-playbook's recap, and what it reports when parts are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import provision

RECAP = """PLAY RECAP *********************************************************************
bench-provision            : ok=57   changed=31   unreachable=0    failed=0    skipped=12   rescued=0    ignored=0
other                      : ok=3    changed=2    unreachable=1    failed=1    skipped=0    rescued=0    ignored=0
"""


def test_recap_sums_every_host() -> None:
    assert provision.recap(RECAP) == {"ok": 60, "changed": 33, "unreachable": 1, "failed": 1}


def test_no_recap_is_an_error() -> None:
    with pytest.raises(ValueError, match="PLAY RECAP"):
        provision.recap("ERROR! the playbook could not be found")


def test_missing_parts_are_reported_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provision, "missing_parts", lambda: ["playbooks/site.yml"])
    outcome = provision.run()
    assert outcome == {"status": "not run", "reason": "playbooks/site.yml not in this checkout yet"}


@pytest.mark.parametrize(
    ("wheel", "expected_extra"),
    [
        ("/cache/m.whl", {"server_meinheld_source": "/cache/m.whl", "interpreter_keep_build_deps": False}),
        (None, {}),
    ],
)
def test_site_vars_hand_the_guest_the_controller_wheel(
    tmp_path: Path, wheel: str | None, expected_extra: dict[str, object]
) -> None:
    app = {"app_list": [{"name": "example", "source": "local", "path": str(tmp_path)}]}
    assert provision.site_vars(tmp_path, wheel) == {**app, **expected_extra}


def _steps(converge: float, rerun: float, deploy: float, rerun_changed: int = 0) -> list[dict[str, object]]:
    return [
        {"name": "fresh converge", "seconds": converge, "changed": 37},
        {"name": "idempotent rerun", "seconds": rerun, "changed": rerun_changed},
        {"name": "code-only deploy", "seconds": deploy, "changed": 13},
    ]


@pytest.mark.parametrize(
    ("suite", "met"),
    [
        (_steps(260, 52, 52), [True, True, True]),  # 1.3x the reference's 200 / 40 / 40 s
        (_steps(260.2, 52.2, 52.2), [False, False, False]),
        (_steps(100, 20, 20, rerun_changed=1), [True, False, True]),
    ],
)
def test_verdicts_judge_the_suite_and_show_the_reference(suite: list[dict[str, object]], met: list[bool]) -> None:
    runs = [
        {"playbook": "suite", "strategy": "mitogen", "steps": suite},
        {"playbook": "reference", "strategy": "mitogen", "steps": _steps(200, 40, 40)},
    ]
    found = provision.verdicts(runs)
    assert [v["met"] for v in found] == met
    assert [v["step"] for v in found] == ["fresh converge", "idempotent rerun", "code-only deploy"]
    assert found[0]["reference_s"] == 200
    assert found[0]["ratio"] == round(float(suite[0]["seconds"]) / 200, 2)


def test_verdicts_skip_a_strategy_the_suite_did_not_run_under() -> None:
    runs = [{"playbook": "reference", "strategy": "linear", "steps": _steps(1, 1, 1)}]
    assert provision.verdicts(runs) == []


def test_reference_vars_name_the_same_app_and_wheel(tmp_path: Path) -> None:
    assert provision.reference_vars(tmp_path, "/cache/m.whl") == {
        "reference_app": str(tmp_path),
        "reference_wheel": "/cache/m.whl",
    }


def test_strategy_env_selects_mitogen_from_the_installed_package() -> None:
    env = provision.strategy_env("mitogen")
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    assert provision.strategy_env("linear") == {}


@pytest.mark.parametrize(("strategies", "playbooks"), [(("free",), ("suite",)), (("linear",), ("site",))])
def test_unknown_strategy_or_playbook_is_refused_before_anything(
    strategies: tuple[str, ...], playbooks: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="unknown strategy or playbook"):
        provision.run(strategies, playbooks)


def test_a_rerun_over_a_minute_is_not_met_whatever_the_reference() -> None:
    runs = [
        {"playbook": "suite", "strategy": "linear", "steps": _steps(100, 61, 20)},
        {"playbook": "reference", "strategy": "linear", "steps": _steps(100, 60, 20)},
    ]
    assert [v["met"] for v in provision.verdicts(runs)] == [True, False, True]


def test_a_step_without_the_reference_beside_it_is_not_met() -> None:
    runs = [{"playbook": "suite", "strategy": "linear", "steps": _steps(1, 1, 1)}]
    assert [(v["ratio"], v["met"]) for v in provision.verdicts(runs)] == [(None, False)] * 3


VERBOSE = """TASK [wsgiops.meinheld_gunicorn.interpreter : Install Python] ******************
Using module file /venv/lib/ansible/modules/apt.py
ok: [vm]
TASK [wsgiops.meinheld_gunicorn.app : List the local releases still to ship] ****
ok: [vm]
TASK [wsgiops.meinheld_gunicorn.app : Ship each release] ***********************
Using module file /venv/lib/ansible/modules/stat.py
Using module file /venv/lib/ansible/modules/unarchive.py
changed: [vm]
"""


def test_work_counts_task_headers_and_modules_sent() -> None:
    assert provision.work(VERBOSE) == {"tasks": 3, "module_runs": 3}
