"""A user's own ten-line playbook, with the collection installed from its tarball outside the repository, converges a
fresh systemd host and serves "Hello World from Flask". `make test-reliability` runs this as its converge.

    pytest tests/collection --connection=ansible --ansible-inventory=INVENTORY --hosts=HOST
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

from tests.collection import BIN, FQCN, USER_PLAYBOOK, build, install, run
from tests.verify.conftest import HELLO, App, Site


def test_a_users_playbook_from_the_installed_tarball_serves(site: Site, app: App, tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    collections = install(build(tmp_path), user / "collections")
    (user / "site.yml").write_text(USER_PLAYBOOK)
    # What this network needs (the machine's extra CAs for pip) and what the test tier hands every host (the wheel).
    variables: dict[str, Any] = {
        "interpreter_ca_certificates": sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
    }
    (user / "vars.json").write_text(json.dumps(variables))
    argv = [str(BIN / "ansible-playbook"), "-i", str(Path(site.inventory).resolve()), "-l", site.host_name, "site.yml"]
    extra = os.environ.get("VERIFY_EXTRA_VARS")
    argv += (["-e", f"@{extra}"] if extra else []) + ["-e", "@vars.json"]
    result = run(argv, user, timeout=1800, ANSIBLE_COLLECTIONS_PATH=str(collections))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{FQCN}.app : Check the role's input" in result.stdout
    assert not (user / "roles").exists() and not (user / "ansible.cfg").exists()
    assert app.wait_serving() == (200, HELLO)
