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
    assert sources_text.count("metadata_options") == 2
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


def test_a_wheel_becomes_the_absolute_meinheld_wheel_variable(local, tmp_path: Path, monkeypatch) -> None:
    wheel = tmp_path / "meinheld-1.0.2+patched.g0-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"PK")
    monkeypatch.chdir(tmp_path)
    assert local.wheel_source(Path(wheel.name)) == {"meinheld_wheel": wheel}


def test_no_wheel_leaves_the_compile_in_the_guest_default(local) -> None:
    assert local.wheel_source(None) == {}


@pytest.mark.parametrize("name", ["missing.whl", "meinheld.tar.gz", "wheels"], ids=["missing", "not-a-wheel", "dir"])
def test_a_bad_wheel_path_is_refused_before_the_build(local, tmp_path: Path, name: str) -> None:
    (tmp_path / "meinheld.tar.gz").write_bytes(b"")
    (tmp_path / "wheels").mkdir()
    with pytest.raises(ValueError, match=r"not a \.whl file"):
        local.wheel_source(tmp_path / name)
