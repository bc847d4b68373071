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
