"""lab.roots: the build roots' cache key and the command that runs a program inside one."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import pytest

from lab import dists, image, roots
from lab.paths import REPO_ROOT

D12 = dists.get("debian12")
ROOT = Path("/cache/roots/debian12-k")


def test_cache_key_is_stable() -> None:
    assert roots.cache_key(D12, "ca") == roots.cache_key(D12, "ca")


@pytest.mark.parametrize(
    "change",
    ["dist", "ca", "recipe", "packages"],
)
def test_cache_key_changes_with_each_input(change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = roots.cache_key(D12, "ca")
    dist, ca = D12, "ca"
    if change == "dist":
        dist = dists.get("ubuntu2204")
    elif change == "ca":
        ca = "other-ca"
    elif change == "recipe":
        monkeypatch.setattr(roots, "RECIPE_VERSION", roots.RECIPE_VERSION + 1)
    else:
        monkeypatch.setattr(roots, "ROOT_PACKAGES", (*roots.ROOT_PACKAGES, "vim"))
    assert roots.cache_key(dist, ca) != base


def test_a_root_carries_what_building_meinheld_needs() -> None:
    assert {"python3", "python3-dev", "python3-venv", "gcc", "libc6-dev", "ca-certificates"} <= set(roots.ROOT_PACKAGES)


def test_the_root_comes_from_the_lab_recipe_with_its_own_packages() -> None:
    cmd = image.mmdebstrap_command(
        D12, Path("/k.gpg"), ROOT, Path("/h.sh"), Path("/dev/null"), Path("/ca"), packages=roots.ROOT_PACKAGES
    )
    assert f"--include={','.join(roots.ROOT_PACKAGES)}" in cmd
    assert "--keyring=/k.gpg" in cmd
    assert not any("linux-image" in arg or "openssh-server" in arg for arg in cmd)


def test_the_hook_trusts_the_machine_cas_as_the_images_do() -> None:
    assert image.ca_trust_script() in roots.hook_script()
    assert image.ca_trust_script() in image.customize_script(D12)


def _script(cmd: list[str]) -> str:
    assert cmd[:5] == ["unshare", "-m", "--propagation", "private", "sh"]
    assert cmd[5] == "-c"
    return cmd[6]


def test_run_command_mounts_privately_then_execs_chroot() -> None:
    script = _script(roots.run_command(ROOT, ["python3", "-V"]))
    mounts, _, run = script.rpartition(" && exec chroot ")
    assert f"mount -t proc proc {ROOT}/proc" in mounts
    assert f"mount --rbind /dev {ROOT}/dev" in mounts
    assert f"mount --bind /etc/resolv.conf {ROOT}/etc/resolv.conf" in mounts
    # the checkout and /tmp at their own paths, so paths mean the same inside and out
    for path in (REPO_ROOT, Path(tempfile.gettempdir()).resolve()):
        assert f"mount --rbind {path} {ROOT}{path}" in mounts
    assert run.startswith(f"{ROOT} /bin/sh -c ")
    # the root's PATH, never the caller's (a venv or a pyenv shim first on it)
    assert run.endswith(f"/usr/bin/env -u VIRTUAL_ENV PATH={roots.ROOT_PATH} python3 -V")


def test_run_command_quotes_arguments() -> None:
    script = _script(roots.run_command(ROOT, ["python3", "-c", "print('a b')"]))
    assert script.endswith(shlex.join(["python3", "-c", "print('a b')"]))


def test_run_command_binds_extra_paths() -> None:
    script = _script(roots.run_command(ROOT, ["true"], binds=[Path("/srv/data")]))
    assert f"mkdir -p {ROOT}/srv/data && mount --rbind /srv/data {ROOT}/srv/data" in script


def test_manifest_of_an_unfinished_root_is_empty(tmp_path: Path) -> None:
    assert roots.manifest(tmp_path) == {}
    (tmp_path / roots.MANIFEST).write_text('{"python": "3.11.2"}')
    assert roots.manifest(tmp_path) == {"python": "3.11.2"}
