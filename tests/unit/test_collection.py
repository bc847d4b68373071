"""The repository as an Ansible collection: what the tarball holds, and its roles and playbooks used by FQCN from an
installed copy outside the repository, with no ansible.cfg of ours in sight.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import pytest

from tests.collection import BIN, FQCN, GALAXY, REPO, USER_PLAYBOOK, build, install, run


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection installed the way users install it, into a directory outside the repository."""
    return install(tarball, tmp_path_factory.mktemp("user") / "collections")


def test_the_tarball_is_named_by_the_version(tarball: Path) -> None:
    assert tarball.name == f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def test_the_tarball_carries_what_users_need_and_nothing_of_the_lab(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
        links = {m.name: m.linkname for m in archive.getmembers() if m.issym()}
    needed = {
        "galaxy.yml" if "galaxy.yml" in names else "MANIFEST.json",
        "LICENSE",
        "CHANGELOG.rst",
        "meta/runtime.yml",
        "roles/server/files/gunicorn_conf.py",
        "roles/server/files/start.py",
        "roles/app/files/example_app/main.py",
        "roles/balancer/files/certificate-metrics",
        "files/prometheus/alerts.yml",  # the alert rules an operator loads (README "Metrics and alerts")
        "plugins/filter/app_inputs.py",
        "plugins/module_utils/app_layout.py",
        "plugins/modules/gunicorn_listeners.py",
        "meinheld_build/build.py",
        "playbooks/site.yml",
        "packer/build.pkr.hcl",
        "inventory/production-example/hosts.yml",
    }
    assert needed <= names
    for top in ("lab", "bench", "tests", "molecule", ".ci", ".cache", ".venv", "mk", "inventory/lab", ".git"):
        assert not any(name == top or name.startswith(top + "/") for name in names), top
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    for name, target in links.items():  # a link must land inside the collection
        assert os.path.normpath(os.path.join(os.path.dirname(name), target)) in names | {
            os.path.dirname(n) for n in names
        }, (name, target)


def test_no_role_default_reaches_out_of_its_role() -> None:
    for path in (REPO / "roles").glob("*/*/main.yml"):
        assert "role_path }}/.." not in path.read_text(), path
    for path in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        assert "role_path }}/.." not in path.read_text(), path


def test_a_users_playbook_runs_the_roles_by_fqcn_and_not_its_own_roles(installed: Path, tmp_path: Path) -> None:
    """A user with their own `app` role in roles_path still gets the collection's by FQCN."""
    own = tmp_path / "roles" / "app" / "tasks"
    own.mkdir(parents=True)
    (own / "main.yml").write_text("- name: The user's own app role\n  ansible.builtin.debug:\n    msg: mine\n")
    (tmp_path / "play.yml").write_text(USER_PLAYBOOK)
    (tmp_path / "hosts").write_text("web1 ansible_connection=local\n")
    argv = [str(BIN / "ansible-playbook"), "-i", "hosts", "play.yml", "--list-tasks"]
    result = run(argv, tmp_path, ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    assert result.returncode == 0, result.stderr
    assert f"{FQCN}.app : Check the role's input" in result.stdout
    assert "The user's own app role" not in result.stdout


@pytest.mark.parametrize("playbook", ["site", "deploy", "image"])
def test_the_playbooks_run_from_the_installed_collection(installed: Path, tmp_path: Path, playbook: str) -> None:
    (tmp_path / "hosts").write_text("web1 ansible_connection=local\n")
    argv = [str(BIN / "ansible-playbook"), "-i", "hosts", f"{FQCN}.{playbook}", "--list-tasks"]
    result = run(argv, tmp_path, ANSIBLE_COLLECTIONS_PATH=str(installed))
    assert result.returncode == 0, result.stderr
    assert f"{FQCN}.app : " in result.stdout or f"{FQCN}.server : " in result.stdout


def test_the_readme_installs_the_tarball_make_collection_builds() -> None:
    """The quick start is copied by hand: a version bump in galaxy.yml that leaves it behind sends users to a file
    `make collection` no longer builds."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(rf"{GALAXY['namespace']}-{GALAXY['name']}-([^\s/]+?)\.tar\.gz", readme))
    assert named == {GALAXY["version"]}, named
