"""packer/local.py: how Debian's Packer 1.6.6 is given a view of packer/ it can read, without losing a check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, load_module

TEMPLATES = REPO / "packer"


@pytest.fixture(scope="module")
def local():
    return load_module(TEMPLATES / "local.py")


@pytest.fixture(scope="module")
def sources_text() -> str:
    return (TEMPLATES / "sources.pkr.hcl").read_text()


@pytest.mark.parametrize(
    ("output", "expected"),
    [("Packer v1.6.6", (1, 6, 6)), ("Packer v1.11.2\n\nYour version is out of date", (1, 11, 2)), ("1.7.0", (1, 7, 0))],
)
def test_packer_version_is_read(local, output: str, expected: tuple[int, int, int]) -> None:
    assert local.packer_version(output) == expected


def test_packer_version_rejects_garbage(local) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        local.packer_version("command not found")


@pytest.mark.parametrize(
    ("version", "plugins"), [((1, 6, 6), False), ((1, 6, 99), False), ((1, 7, 0), True), ((1, 11, 2), True)]
)
def test_only_packer_1_7_and_later_read_the_templates_as_they_are(local, version, plugins: bool) -> None:
    assert local.understands_plugins(version) is plugins


def test_plugins_file_holds_only_the_packer_block() -> None:
    # Staging for 1.6.6 drops this file whole: anything else put there would silently vanish from its builds.
    code = "\n".join(
        line for line in (TEMPLATES / "plugins.pkr.hcl").read_text().splitlines() if not line.lstrip().startswith("#")
    )
    top_level = re.findall(r"^(\w[\w-]*)\b", code, re.M)
    assert top_level == ["packer"]
    assert "required_plugins" in code


def test_stage_copies_every_template_but_the_plugins_file(local, tmp_path: Path) -> None:
    staged = local.stage(local.template_files(TEMPLATES), tmp_path / "hcl")
    expected = {p.name for p in TEMPLATES.glob("*.pkr.hcl")} - {"plugins.pkr.hcl"}
    assert {p.name for p in staged.iterdir()} == expected
    assert (staged / "build.pkr.hcl").read_text() == (TEMPLATES / "build.pkr.hcl").read_text()


def test_stage_replaces_an_old_staging_dir(local, tmp_path: Path) -> None:
    (tmp_path / "hcl").mkdir()
    (tmp_path / "hcl" / "stale.pkr.hcl").write_text("stale")
    staged = local.stage(local.template_files(TEMPLATES), tmp_path / "hcl")
    assert not (staged / "stale.pkr.hcl").exists()


def test_strip_removes_the_metadata_blocks_and_nothing_else(local, sources_text: str) -> None:
    stripped = local.strip_metadata_options(sources_text)
    assert sources_text.count("metadata_options") == 1
    assert "metadata_options" not in stripped
    assert "http_tokens" not in stripped
    for kept in ("launch_block_device_mappings", "source_ami_filter", 'source "qemu" "debian12"', "encrypted"):
        assert stripped.count(kept) == sources_text.count(kept), kept
    removed = set(sources_text.splitlines()) - set(stripped.splitlines())
    assert removed == {
        "  metadata_options {",
        '    http_endpoint               = "enabled"',
        '    http_tokens                 = "required"',
        "    http_put_response_hop_limit = 1",
    }


def test_every_amazon_source_requires_imdsv2(local, sources_text: str) -> None:
    assert local.sources_without_imdsv2(sources_text) == []


@pytest.mark.parametrize(
    "body",
    [
        '  region = "x"\n',
        '  metadata_options {\n    http_tokens = "optional"\n  }\n',
        '  metadata_options {\n    http_endpoint = "enabled"\n  }\n',
    ],
    ids=["no-block", "optional", "tokens-unset"],
)
def test_a_source_without_imdsv2_is_named(local, body: str) -> None:
    text = f'source "amazon-ebs" "weak" {{\n{body}}}\n\nsource "qemu" "local" {{\n  format = "qcow2"\n}}\n'
    assert local.sources_without_imdsv2(text) == ["amazon-ebs.weak"]


def test_var_args_are_sorted_pairs(local) -> None:
    assert local.var_args({"b": 2, "a": Path("/x")}) == ["-var", "a=/x", "-var", "b=2"]


@pytest.mark.parametrize(("n", "text"), [(512 * 1024**2, "512.0 MiB"), (3 * 1024**3 // 2, "1.50 GiB")])
def test_sizes_are_human(local, n: int, text: str) -> None:
    assert local.human_bytes(n) == text


@pytest.mark.parametrize("built", [True, False], ids=["wheel", "no-wheel"])
def test_the_lab_wheel_becomes_the_meinheld_wheel_variable(local, tmp_path: Path, monkeypatch, built: bool) -> None:
    # A wheel replaces the server role's compile in the build VM; without one (a controller that cannot build for the
    # guest) the variable stays unset and the template's empty default keeps the role's own build.
    whl = tmp_path / "meinheld-1.0.2+patched.g0-cp311-cp311-linux_x86_64.whl"
    monkeypatch.chdir(tmp_path)
    choice = local.wheel.WheelChoice("debian12", Path(whl.name) if built else None, built, "", "reason")
    assert local.meinheld_vars(choice) == ({"meinheld_wheel": whl} if built else {})


# --- supply chain and trust (security review: findings 9d, 9f, 10a) -------------------------------------------------


def test_every_plugin_is_pinned_to_its_major_version() -> None:
    text = (TEMPLATES / "plugins.pkr.hcl").read_text()
    versions = re.findall(r'^\s*version\s*=\s*"([^"]*)"', text, re.M)
    assert len(versions) == 3
    assert all(re.fullmatch(r"~> [1-9][0-9]*\.[0-9]+(\.[0-9]+)?", v) for v in versions), versions


def test_the_ansible_provisioner_keeps_host_key_checking_on() -> None:
    build = (TEMPLATES / "build.pkr.hcl").read_text()
    assert '"ANSIBLE_HOST_KEY_CHECKING=True"' in build
    assert "StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${local.known_hosts}" in build
    assert "HOST_KEY_CHECKING=False" not in build and "StrictHostKeyChecking=no" not in build


def test_the_local_build_gives_ansible_a_known_hosts_file_of_its_own() -> None:
    assert '"ansible_known_hosts_file": work / "known_hosts"' in (TEMPLATES / "local.py").read_text()


def test_the_qemu_build_forgets_the_lab_trust_last() -> None:
    build = (TEMPLATES / "build.pkr.hcl").read_text()
    ansible, shell = build.index('provisioner "ansible"'), build.index('provisioner "shell"')
    assert ansible < shell
    block = build[shell : build.index("\n  }", shell)]
    assert 'only   = ["qemu.debian12"]' in block
    assert "packer/scripts/forget-lab-trust.sh" in block


FORGET = TEMPLATES / "scripts" / "forget-lab-trust.sh"
needs_ca_tools = pytest.mark.skipif(
    not (shutil.which("update-ca-certificates") and shutil.which("openssl")), reason="ca-certificates/openssl missing"
)


def _ca(path: Path, name: str, key: Path) -> str:
    """A throw-away self-signed CA certificate at ``path``; one line of its body, to look for in a bundle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return [line for line in path.read_text().splitlines() if not line.startswith("-----")][1]


def _lab_tree(tmp_path: Path) -> tuple[Path, dict[str, str], str, str]:
    """A root tree as the lab's recipe leaves it (lab/image.py ca_trust_script): a CA of the build machine in
    /usr/local/share/ca-certificates/lab, the bundle rebuilt with it, /etc/pip.conf; and one CA of the distribution.
    (root, the script's environment, a line of the lab CA, a line of the distribution's CA)."""
    root = tmp_path / "root"
    lab_line = _ca(root / "usr/local/share/ca-certificates/lab/build-ca.crt", "build machine CA", tmp_path / "k1")
    system_line = _ca(tmp_path / "share/system/system-ca.crt", "distribution CA", tmp_path / "k2")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ca-certificates/update.d").mkdir(parents=True)
    (root / "etc/ca-certificates.conf").write_text("system/system-ca.crt\n")
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    update = (
        f"update-ca-certificates --fresh --certsconf {root}/etc/ca-certificates.conf --certsdir {tmp_path}/share "
        f"--localcertsdir {root}/usr/local/share/ca-certificates --etccertsdir {root}/etc/ssl/certs "
        f"--hooksdir {root}/etc/ca-certificates/update.d"
    )
    subprocess.run(update.split(), check=True, capture_output=True)
    bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert lab_line in bundle and system_line in bundle
    return root, {**os.environ, "ROOT": str(root), "UPDATE_CA": update}, lab_line, system_line


@needs_ca_tools
def test_the_build_removes_the_lab_ca_and_pip_config(tmp_path: Path) -> None:
    root, env, lab_line, system_line = _lab_tree(tmp_path)
    done = subprocess.run(["sh", str(FORGET)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not (root / "usr/local/share/ca-certificates/lab").exists()
    assert not (root / "etc/pip.conf").exists()
    bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert lab_line not in bundle
    assert system_line in bundle, "the distribution's own CAs must stay trusted"
    assert not [p for p in (root / "etc/ssl/certs").iterdir() if "/lab/" in os.path.realpath(p)]


@needs_ca_tools
def test_a_lab_ca_left_in_the_certs_fails_the_build(tmp_path: Path) -> None:
    env = _lab_tree(tmp_path)[1]
    done = subprocess.run(["sh", str(FORGET)], env={**env, "UPDATE_CA": "true"}, capture_output=True, text=True)
    assert done.returncode == 1
    assert "the lab's CA trust is still in the image: /etc/ssl/certs/" in done.stderr


def test_the_build_forgets_what_the_lab_recipe_trusts() -> None:
    from lab import image

    recipe, script = image.ca_trust_script(), FORGET.read_text()
    for path in ("/usr/local/share/ca-certificates/lab", "/etc/pip.conf"):
        assert path in recipe and path in script
