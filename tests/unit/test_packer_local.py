"""packer/local.py: how Debian's Packer 1.6.6 is given a view of packer/ it can read, without losing a check."""

from __future__ import annotations

import re
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
