"""Fast test hosts: a Debian 12 root tree booted as a systemd container (systemd-nspawn + slirp4netns).

Why: under TCG a lab VM converges in 15-45 minutes; the same tree as a container converges in about 3, so the full
molecule run (converge, idempotence, verify suite) fits CI. The tree comes from the lab's own mmdebstrap recipe
(keyring-verified, CA certificates, lab SSH key) minus the kernel, so what the roles meet is the lab's Debian 12.

How it boots, and why each piece (measured on this machine):
- ``unshare -m --propagation private`` + a tmpfs on /run/systemd/nspawn + ``--register=no --keep-unit``: nspawn
  then needs neither machined nor a host-side scope and boots in about a second;
- ``--private-network`` + slirp4netns: the container gets its own network namespace with user-mode NAT (outbound
  apt/PyPI work, nothing on the host's interfaces is exposed) and slirp's API socket adds loopback-only forwards of
  127.0.0.1:SSH_PORT -> 22 and 127.0.0.1:HTTP_PORT -> 80, exactly as the VMs' QEMU hostfwd does;
- every boot runs on a throw-away copy of the cached tree; ``reboot`` stops and boots the same copy, which is how the
  verify suite's reboot test proves the services come back (an nspawn container cannot reboot itself in place here).

CLI: ``python -m lab.container up|down|reboot|inventory|build NAME``; ``up`` prints one JSON line
(name, ssh_port, http_port, ssh_key, inventory) for molecule's create step.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import dists, image, inventory, keyring, locking, ports, progress, ssh, sshkey
from lab.paths import Layout

DIST = "debian12"
# Bump when the container recipe below (not the lab's) changes the tree.
CONTAINER_RECIPE_VERSION = 1
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
STOP_TIMEOUT = 60.0
BOOT_TIMEOUT = 180.0
# slirp4netns --configure gives the container 10.0.2.100 on tap0; its DNS forwarder is 10.0.2.3, which the lab's
# customize script already writes to resolv.conf.
TAP = "tap0"
MTU = 65520

# Appended to the lab's customize script: a container has no block device to mount (the VM fstab names /dev/vda)
# and no kernel to boot, so an empty fstab keeps systemd-remount-fs and fsck from failing the boot. slirp4netns
# configures tap0 from outside (and lab.fleet its fleet0), so networkd manages no link in a container (the tree's
# .network matches en*/eth* only): systemd-networkd-wait-online, pulled in by network-online.target, which
# gunicorn@.service and haproxy.service wait for, held each first start after a boot for its full 2-minute timeout
# (a fresh converge took 162 s instead of 40). Masked: the links are up before anything starts a unit.
CONTAINER_CUSTOMIZE = """
: > "$root/etc/fstab"
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
"""


class ContainerError(RuntimeError):
    """The container did not come up or could not be reached; the message carries the console's last lines."""


@dataclass
class State:
    """What ``state.json`` records about one running container (enough to stop it and to reach it)."""

    name: str
    rootfs_key: str
    ssh_port: int
    http_port: int
    nspawn_pid: int = 0
    init_pid: int = 0
    slirp_pid: int = 0
    system_state: str = "starting"
    boot_seconds: float = 0.0


def container_dist() -> dists.Dist:
    """The lab's Debian 12 without its kernel package: nspawn shares the host kernel, so the kernel is dead weight."""
    base = dists.get(DIST)
    return dataclasses.replace(base, extra_packages=tuple(p for p in base.extra_packages if "linux-image" not in p))


def cache_key(dist: dists.Dist, ca_hash: str, public_key: str) -> str:
    """The lab image key of the same inputs, salted with the container recipe: new CAs, key or packages rebuild."""
    lab_key = image.cache_key(dist, ca_hash, public_key)
    material = f"{lab_key}\0container-recipe={CONTAINER_RECIPE_VERSION}\0{CONTAINER_CUSTOMIZE}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def containers_dir(layout: Layout) -> Path:
    """``.cache/lab/containers``: cached trees (``rootfs-KEY``) and running containers (``run/NAME``)."""
    return layout.root / "containers"


def run_dir(layout: Layout, name: str) -> Path:
    """One running container's files: rootfs copy, state.json, console.log, slirp log and socket, inventory.yml."""
    return containers_dir(layout) / "run" / name


def validate_name(name: str) -> str:
    """Names become machine names, directory names and inventory hosts: keep them plain."""
    if not NAME_RE.match(name):
        raise ValueError(f"invalid container name {name!r} (lowercase letters, digits, '-', at most 31)")
    return name


def nspawn_command(rootfs: Path, name: str, before: str = "") -> list[str]:
    """The boot command: private mount namespace + tmpfs for nspawn's runtime dir, unregistered, booting systemd.

    ``--keep-unit --register=no``: no machined, no new scope (this machine has neither usable); the private mount
    namespace keeps the tmpfs over /run/systemd/nspawn from touching the host. ``before``: a shell command run first in
    that namespace (lab.fleet mounts each member's overlay there).
    """
    inner = "mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec " + shlex.join(
        [
            "systemd-nspawn",
            "-D",
            str(rootfs),
            "--register=no",
            "--keep-unit",
            "-b",
            "--private-network",
            f"--machine={name}",
            "--console=passive",
            # The tree's own /etc/localtime, not a bind mount of the host's: a package that replaces it (tzdata, pulled
            # in by certbot on the fleet's balancer) fails on a bind-mounted file ("Device or resource busy").
            "--timezone=off",
        ]
    )
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{before} && {inner}" if before else inner]


def slirp_command(init_pid: int, api_socket: Path) -> list[str]:
    """slirp4netns on the container's network namespace: tap0 with NAT and DNS, host loopback unreachable."""
    return [
        "slirp4netns",
        "--configure",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        "--api-socket",
        str(api_socket),
        str(init_pid),
        TAP,
    ]


def hostfwd_request(host_port: int, guest_port: int) -> bytes:
    """The slirp4netns API call forwarding 127.0.0.1:host_port (loopback only) to the container's guest_port."""
    arguments = {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": host_port, "guest_port": guest_port}
    return json.dumps({"execute": "add_hostfwd", "arguments": arguments}).encode()


def copy_command(source: Path, target: Path) -> list[str]:
    """Throw-away copy of the cached tree (reflinks where the filesystem has them): every `up` starts pristine."""
    return ["cp", "-a", "--reflink=auto", str(source), str(target)]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0): treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pid: int, marker: str) -> bool:
    """Guards every kill against pid reuse: the process must still be the one we started (its argv names our path)."""
    return _pid_alive(pid) and marker in _cmdline(pid)


def build_rootfs(layout: Layout, force: bool = False) -> Path:
    """Build the container tree with the lab's mmdebstrap recipe unless one with the same key is cached."""
    dist = container_dist()
    pubkey = sshkey.ensure(layout)
    key = cache_key(dist, image.ca_digest(image.ca_certificates()), pubkey.read_text())
    target = containers_dir(layout) / f"rootfs-{DIST}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with locking.exclusive(layout.lock.with_name("build-container.lock")):
        if (target / "etc" / "os-release").exists() and not force:
            progress.step(f"container tree {target.name} cached")
            return target
        started = time.monotonic()
        work = target.with_name(f".build-{target.name}-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            cadir = image.stage_ca_certificates(work)
            hook = work / "customize.sh"
            hook.write_text(image.customize_script(dist) + CONTAINER_CUSTOMIZE)
            cmd = image.mmdebstrap_command(
                dist, keyring.host_keyring(dist, layout), work / "rootfs", hook, pubkey, cadir
            )
            progress.step(f"mmdebstrap {dist.suite} for containers ({len(dist.packages)} packages + deps)")
            subprocess.run(cmd, check=True)
            shutil.rmtree(target, ignore_errors=True)
            (work / "rootfs").rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        progress.step(f"container tree {target.name} built in {time.monotonic() - started:.0f}s")
        return target


def load(layout: Layout, name: str) -> State | None:
    """The recorded state of ``name``, or None when it was never brought up (or is down)."""
    path = run_dir(layout, name) / "state.json"
    if not path.exists():
        return None
    return State(**json.loads(path.read_text()))


def save(layout: Layout, state: State) -> None:
    """Record ``state`` (written whole, then renamed, so a reader never sees half a file)."""
    path = run_dir(layout, state.name) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")
    tmp.replace(path)


def recorded_ports(layout: Layout) -> set[int]:
    """Ports held by lab VMs and containers alike: both forward on the same loopback range."""
    taken: set[int] = set()
    for state_file in [*layout.vms.glob("*/state.json"), *(containers_dir(layout) / "run").glob("*/state.json")]:
        try:
            data = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        taken.update(int(data.get(k, 0)) for k in ("ssh_port", "http_port") if data.get(k))
    return taken


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ns(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _find_init(nspawn_pid: int, timeout: float = 30.0) -> int:
    """The container's PID 1 as the host sees it: the child of systemd-nspawn living in new pid and net namespaces.

    nspawn first forks a short-lived "outer child" that shares its namespaces; taking that one (the first child seen)
    hands slirp4netns a pid that is gone a moment later, so the namespaces are compared, not just the parentage.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(nspawn_pid):
            return 0
        if "systemd-nspawn" in _cmdline(nspawn_pid):
            try:
                children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
            except OSError:
                children = []
            for child in map(int, children):
                pid_ns, net_ns = _ns(child, "pid"), _ns(child, "net")
                if pid_ns and net_ns and pid_ns != _ns(nspawn_pid, "pid") and net_ns != _ns(nspawn_pid, "net"):
                    return child
        time.sleep(0.1)
    return 0


def _forward(api_socket: Path, host_port: int, guest_port: int) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(api_socket))
        client.sendall(hostfwd_request(host_port, guest_port))
        answer = json.loads(client.recv(4096).decode() or "{}")
    if "error" in answer:
        raise ContainerError(f"slirp4netns refused 127.0.0.1:{host_port} -> {guest_port}: {answer['error']}")


def _boot(layout: Layout, state: State) -> State:
    """Start nspawn and slirp4netns on the container's tree, add the forwards, wait for systemd."""
    directory = run_dir(layout, state.name)
    rootfs = directory / "rootfs"
    started = time.monotonic()
    with (directory / "console.log").open("ab") as console:
        nspawn = subprocess.Popen(
            nspawn_command(rootfs, state.name),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.nspawn_pid = nspawn.pid
    state.init_pid = _find_init(nspawn.pid)
    save(layout, state)
    if not state.init_pid:
        raise ContainerError(
            f"{state.name}: systemd-nspawn did not start an init. Console:\n{tail(directory / 'console.log')}"
        )
    api = directory / "slirp.sock"
    api.unlink(missing_ok=True)
    with (directory / "slirp.log").open("ab") as log:
        slirp = subprocess.Popen(
            slirp_command(state.init_pid, api),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.slirp_pid = slirp.pid
    save(layout, state)
    for _ in range(100):
        if api.exists() or slirp.poll() is not None:
            break
        time.sleep(0.1)
    if not api.exists():
        raise ContainerError(f"{state.name}: slirp4netns gave no API socket. Log:\n{tail(directory / 'slirp.log')}")
    _forward(api, state.ssh_port, 22)
    _forward(api, state.http_port, 80)
    state.system_state = _wait_for_systemd(layout, state, started)
    state.boot_seconds = round(time.monotonic() - started, 1)
    save(layout, state)
    progress.step(f"{state.name} is up: systemd {state.system_state} after {state.boot_seconds:.1f}s")
    return state


def _wait_for_systemd(layout: Layout, state: State, started: float, timeout: float = BOOT_TIMEOUT) -> str:
    """Poll SSH (through the forward, as Ansible will) until ``systemctl is-system-running --wait`` answers."""
    directory = run_dir(layout, state.name)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(state.nspawn_pid):
            raise ContainerError(
                f"{state.name}: nspawn exited during boot. Console:\n{tail(directory / 'console.log')}"
            )
        try:
            answer, _ = ssh.system_state(layout.ssh_key, state.ssh_port, state.name, 60)
        except subprocess.TimeoutExpired:
            continue
        if answer in ssh.SETTLED:
            return answer
        time.sleep(0.5)
    raise ContainerError(f"{state.name}: not up after {timeout:.0f}s. Console:\n{tail(directory / 'console.log')}")


def _stop(layout: Layout, state: State) -> None:
    """Orderly shutdown: SIGTERM makes nspawn ask the container's systemd to power off; SIGKILL after the timeout."""
    rootfs = str(run_dir(layout, state.name) / "rootfs")
    if _is_ours(state.nspawn_pid, rootfs):
        progress.step(f"stopping {state.name} (nspawn pid {state.nspawn_pid})")
        os.kill(state.nspawn_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(state.nspawn_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_ours(state.nspawn_pid, rootfs):
            os.kill(state.nspawn_pid, signal.SIGKILL)
    api = str(run_dir(layout, state.name) / "slirp.sock")
    if _is_ours(state.slirp_pid, api):
        os.kill(state.slirp_pid, signal.SIGTERM)
        for _ in range(50):
            if not _pid_alive(state.slirp_pid):
                break
            time.sleep(0.1)
    state.nspawn_pid = state.init_pid = state.slirp_pid = 0
    state.system_state = "stopped"


def write_inventory(layout: Layout, state: State) -> Path:
    """The container's inventory in the lab's format (group ``lab``, lab_* facts), next to its state."""
    host = inventory.Host(state.name, state.ssh_port, state.http_port, DIST, os.cpu_count() or 1)
    path = run_dir(layout, state.name) / "inventory.yml"
    path.write_text(inventory.render([host], layout.ssh_key))
    return path


def up(layout: Layout, name: str) -> State:
    """Boot a fresh container ``name`` from the cached tree (a running one of that name is replaced)."""
    validate_name(name)
    down(layout, name)
    tree = build_rootfs(layout)
    directory = run_dir(layout, name)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run(copy_command(tree, directory / "rootfs"), check=True)
    progress.step(f"{name}: copied {tree.name} in {time.monotonic() - started:.1f}s")
    with locking.exclusive(layout.lock):
        ssh_port, http_port = ports.allocate(2, recorded_ports(layout))
        state = State(name, tree.name, ssh_port, http_port)
        save(layout, state)
    progress.step(f"booting {name}: ssh 127.0.0.1:{ssh_port}, http 127.0.0.1:{http_port}")
    try:
        _boot(layout, state)
    except Exception:
        _stop(layout, state)
        state.system_state = "failed"
        save(layout, state)
        raise
    write_inventory(layout, state)
    return state


def reboot(layout: Layout, name: str) -> State:
    """Stop and boot the same tree on the same ports: what a reboot is for the verify suite's reboot test."""
    state = load(layout, name)
    if state is None:
        raise ContainerError(f"{name} is not up")
    started = time.monotonic()
    _stop(layout, state)
    save(layout, state)
    state = _boot(layout, state)
    progress.step(f"{name}: rebooted in {time.monotonic() - started:.1f}s")
    return state


def down(layout: Layout, name: str) -> bool:
    """Stop ``name`` and delete its copy; False when there was nothing to stop."""
    validate_name(name)
    directory = run_dir(layout, name)
    if not directory.exists():
        return False
    state = load(layout, name)
    if state:
        _stop(layout, state)
    shutil.rmtree(directory, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.container``: the commands molecule's create/destroy and the verify suite's reboot hook call."""
    parser = argparse.ArgumentParser(prog="python -m lab.container", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or reuse) the cached Debian 12 container tree")
    for command in ("up", "down", "reboot", "inventory"):
        sub.add_parser(command).add_argument("name")
    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        if args.command == "build":
            print(build_rootfs(layout))
        elif args.command == "up":
            state = up(layout, args.name)
            info = {
                "name": state.name,
                "ssh_port": state.ssh_port,
                "http_port": state.http_port,
                "ssh_key": str(layout.ssh_key),
                "inventory": str(run_dir(layout, state.name) / "inventory.yml"),
                "boot_seconds": state.boot_seconds,
                "system_state": state.system_state,
            }
            print(json.dumps(info))
        elif args.command == "down":
            down(layout, args.name)
        elif args.command == "reboot":
            reboot(layout, args.name)
        elif args.command == "inventory":
            path = run_dir(layout, args.name) / "inventory.yml"
            if not path.exists():
                raise ContainerError(f"{args.name} is not up")
            print(path)
    except (ContainerError, ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"lab.container: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
