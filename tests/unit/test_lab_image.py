from pathlib import Path

import pytest

from lab import dists, image

D12 = dists.get("debian12")


@pytest.fixture
def certs(tmp_path: Path) -> list[Path]:
    for name, body in (("b.crt", "B"), ("a.crt", "A")):
        (tmp_path / name).write_text(body)
    (tmp_path / "ignored.pem").write_text("X")
    return image.ca_certificates(tmp_path)


def test_ca_certificates_are_the_crt_files_sorted(certs: list[Path]) -> None:
    assert [p.name for p in certs] == ["a.crt", "b.crt"]


def test_ca_digest_changes_with_content(certs: list[Path]) -> None:
    before = image.ca_digest(certs)
    certs[0].write_text("A2")
    assert image.ca_digest(certs) != before


def test_missing_ca_dir_means_no_certs(tmp_path: Path) -> None:
    assert image.ca_certificates(tmp_path / "none") == []


def test_cache_key_is_stable() -> None:
    assert image.cache_key(D12, "ca", "ssh-ed25519 K lab\n") == image.cache_key(D12, "ca", "ssh-ed25519 K lab")


@pytest.mark.parametrize(
    "other",
    [
        (dists.get("debian13"), "ca", "k"),
        (D12, "other-ca", "k"),
        (D12, "ca", "other-key"),
    ],
)
def test_cache_key_changes_with_dist_certs_and_key(other: tuple[dists.Dist, str, str]) -> None:
    assert image.cache_key(*other) != image.cache_key(D12, "ca", "k")


def test_cache_key_changes_with_recipe_and_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    base = image.cache_key(D12, "ca", "k")
    monkeypatch.setattr(image, "RECIPE_VERSION", image.RECIPE_VERSION + 1)
    assert image.cache_key(D12, "ca", "k") != base
    monkeypatch.undo()
    monkeypatch.setattr(dists, "COMMON_PACKAGES", (*dists.COMMON_PACKAGES, "vim"))
    assert image.cache_key(D12, "ca", "k") != base


def test_mmdebstrap_command_verifies_with_the_keyring() -> None:
    cmd = image.mmdebstrap_command(D12, Path("/k.gpg"), Path("/r"), Path("/h.sh"), Path("/id.pub"), Path("/ca"))
    assert cmd[:5] == ["mmdebstrap", "--mode=root", "--variant=apt", "--format=directory", "--architectures=amd64"]
    assert "--keyring=/k.gpg" in cmd
    assert f"--include={','.join(D12.packages)}" in cmd
    assert '--customize-hook=sh /h.sh "$1" /id.pub /ca' in cmd
    assert cmd[-5:] == [
        "bookworm",
        "/r",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert not any("trusted=yes" in part for part in cmd)


@pytest.mark.parametrize("name", sorted(dists.DISTS))
def test_every_image_has_a_kernel_sshd_and_python(name: str) -> None:
    pkgs = dists.get(name).packages
    assert {"openssh-server", "python3", "systemd-sysv"} <= set(pkgs)
    assert any(p.startswith("linux-image-") for p in pkgs)
    assert list(pkgs) == sorted(pkgs)


@pytest.mark.parametrize(
    ("name", "keyring"),
    [("debian12", "debian-archive-keyring.gpg"), ("ubuntu2404", "ubuntu-archive-keyring.gpg")],
)
def test_guest_sources_are_signed_by_the_archive_keyring(name: str, keyring: str) -> None:
    lines = dists.get(name).source_lines()
    assert len(lines) == 3
    assert all(line.startswith(f"deb [signed-by=/usr/share/keyrings/{keyring}] http://") for line in lines)


def test_customize_script_installs_key_certs_and_network() -> None:
    script = image.customize_script(D12)
    assert 'install -m 0600 "$pubkey" "$root/root/.ssh/authorized_keys"' in script
    assert "update-ca-certificates" in script
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in script
    assert "enable systemd-networkd.service" in script
    assert "/dev/vda / ext4" in script


def test_mkfs_populates_without_a_loop_mount() -> None:
    assert image.mkfs_command(Path("/r"), Path("/d.raw")) == [
        "mkfs.ext4", "-q", "-F", "-L", "lab-root", "-d", "/r", "/d.raw"
    ]  # fmt: skip


def test_newest_kernel_sorts_versions_numerically() -> None:
    files = [Path("vmlinuz-6.1.0-9-cloud-amd64"), Path("vmlinuz-6.1.0-28-cloud-amd64")]
    assert image.newest(files).name == "vmlinuz-6.1.0-28-cloud-amd64"


def test_newest_without_kernel_fails() -> None:
    with pytest.raises(FileNotFoundError):
        image.newest([])


def test_unknown_dist_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="debian12"):
        dists.get("centos7")


def test_stale_keeps_current_and_in_use_images(tmp_path: Path) -> None:
    for name in ("debian12-new", "debian12-old", "debian12-booted", "debian13-cur", ".build-debian12-x"):
        (tmp_path / name).mkdir()
    current = {"debian12": "debian12-new", "debian13": "debian13-cur"}
    assert image.stale(tmp_path, current, {"debian12-booted"}) == [tmp_path / "debian12-old"]


@pytest.mark.parametrize("name", ["ubuntu2404", "ubuntu2204"])
def test_ubuntu_guests_have_universe_as_a_standard_install_does(name: str) -> None:
    """The interpreter role installs python3-venv, which Ubuntu ships in universe, not main."""
    assert all(line.endswith(" main restricted universe multiverse") for line in dists.get(name).source_lines())
