"""The pure parts of lab/container.py: the command lines it runs, the cache key, names, ports and inventory."""

import json
import shlex
from pathlib import Path

import pytest

from lab import container, dists, image
from lab.paths import Layout


def test_nspawn_command_boots_unregistered_in_a_private_mount_namespace() -> None:
    cmd = container.nspawn_command(Path("/x/run/c1/rootfs"), "c1")
    assert cmd[:4] == ["unshare", "-m", "--propagation", "private"]
    inner = cmd[-1]
    assert inner.startswith("mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec ")
    nspawn = shlex.split(inner.split(" && exec ", 1)[1])
    assert nspawn[0] == "systemd-nspawn"
    assert nspawn[nspawn.index("-D") + 1] == "/x/run/c1/rootfs"
    for flag in ("--register=no", "--keep-unit", "-b", "--private-network", "--machine=c1"):
        assert flag in nspawn


def test_nspawn_command_quotes_a_path_with_spaces() -> None:
    inner = container.nspawn_command(Path("/a b/rootfs"), "c1")[-1]
    assert shlex.split(inner.split(" && exec ", 1)[1])[2] == "/a b/rootfs"


def test_slirp_command_targets_the_init_pid_without_host_loopback() -> None:
    cmd = container.slirp_command(4242, Path("/r/slirp.sock"))
    assert cmd[0] == "slirp4netns"
    assert "--configure" in cmd and "--disable-host-loopback" in cmd
    assert cmd[cmd.index("--api-socket") + 1] == "/r/slirp.sock"
    assert cmd[-2:] == ["4242", "tap0"]


@pytest.mark.parametrize(("host_port", "guest_port"), [(2300, 22), (2301, 80)])
def test_hostfwd_request_binds_loopback_only(host_port: int, guest_port: int) -> None:
    request = json.loads(container.hostfwd_request(host_port, guest_port))
    assert request == {
        "execute": "add_hostfwd",
        "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": host_port, "guest_port": guest_port},
    }


def test_copy_command_preserves_ownership_and_modes() -> None:
    assert container.copy_command(Path("/c/tree"), Path("/c/run/x/rootfs")) == [
        "cp",
        "-a",
        "--reflink=auto",
        "/c/tree",
        "/c/run/x/rootfs",
    ]


def test_container_dist_is_the_lab_debian12_without_a_kernel() -> None:
    lab = dists.get("debian12")
    ct = container.container_dist()
    assert ct.suite == lab.suite and ct.source_lines() == lab.source_lines()
    assert not any("linux-image" in p for p in ct.packages)
    assert set(ct.packages) == {p for p in lab.packages if "linux-image" not in p}


def test_cache_key_is_stable() -> None:
    dist = container.container_dist()
    assert container.cache_key(dist, "ca", "ssh-ed25519 AAA") == container.cache_key(dist, "ca", "ssh-ed25519 AAA\n")


@pytest.mark.parametrize(
    ("ca_hash", "public_key", "extra_packages"),
    [("other-ca", "ssh-ed25519 AAA", ()), ("ca", "ssh-ed25519 BBB", ()), ("ca", "ssh-ed25519 AAA", ("vim",))],
)
def test_cache_key_changes_with_each_input(ca_hash: str, public_key: str, extra_packages: tuple[str, ...]) -> None:
    dist = container.container_dist()
    base = container.cache_key(dist, "ca", "ssh-ed25519 AAA")
    changed = dist.__class__(**{**dist.__dict__, "extra_packages": dist.extra_packages + extra_packages})
    assert container.cache_key(changed, ca_hash, public_key) != base


def test_cache_key_differs_from_the_vm_image_key() -> None:
    dist = container.container_dist()
    assert container.cache_key(dist, "ca", "k") != image.cache_key(dist, "ca", "k")


def test_cache_key_changes_with_the_container_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    dist = container.container_dist()
    before = container.cache_key(dist, "ca", "k")
    monkeypatch.setattr(container, "CONTAINER_RECIPE_VERSION", container.CONTAINER_RECIPE_VERSION + 1)
    assert container.cache_key(dist, "ca", "k") != before


@pytest.mark.parametrize("name", ["mol-ct-debian12", "c1", "a"])
def test_validate_name_accepts_plain_names(name: str) -> None:
    assert container.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Upper", "1st", "a/b", "../x", "a b", "x" * 32])
def test_validate_name_rejects_unsafe_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid container name"):
        container.validate_name(name)


def test_recorded_ports_counts_vms_and_containers(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    (layout.vms / "vm1").mkdir(parents=True)
    (layout.vms / "vm1" / "state.json").write_text(json.dumps({"ssh_port": 2300, "http_port": 2301}))
    (container.run_dir(layout, "c1")).mkdir(parents=True)
    container.save(layout, container.State("c1", "rootfs-x", 2302, 2303))
    assert container.recorded_ports(layout) == {2300, 2301, 2302, 2303}


def test_state_round_trips(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    container.run_dir(layout, "c1").mkdir(parents=True)
    state = container.State("c1", "rootfs-x", 2302, 2303, nspawn_pid=10, init_pid=11, slirp_pid=12)
    container.save(layout, state)
    assert container.load(layout, "c1") == state
    assert container.load(layout, "c2") is None


def test_inventory_is_the_lab_format_in_group_lab(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    container.run_dir(layout, "c1").mkdir(parents=True)
    path = container.write_inventory(layout, container.State("c1", "rootfs-x", 2302, 2303))
    text = path.read_text()
    assert "    lab:\n" in text and "        c1:\n" in text
    assert "ansible_port: 2302" in text and 'lab_url: "http://127.0.0.1:2303/"' in text
    assert 'lab_dist: "debian12"' in text


def test_down_of_an_unknown_container_is_a_no_op(tmp_path: Path) -> None:
    assert container.down(Layout(tmp_path), "never-up") is False


def test_is_ours_rejects_a_process_without_our_marker() -> None:
    import os

    assert not container._is_ours(os.getpid(), "/no/such/rootfs/marker")
