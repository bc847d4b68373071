"""The lab fleet: three web hosts and one load balancer host as systemd containers, wired inside our own namespace.

Why containers and not VMs: four TCG VMs on two cores would take an hour to converge; four systemd-nspawn containers
boot in seconds and share one cached Debian 12 tree (lab.container's) through overlayfs, so ``up`` copies nothing.

The wiring, and why it is built this way (the machines' network rule: test traffic goes to loopback or to our own
test hosts inside namespaces we created, never to any other address):
- each container has its own network namespace (``--private-network``) with slirp4netns for outbound apt/PyPI and
  loopback-only forwards from the host: SSH on 127.0.0.1:229x, the LB's port 80 on 127.0.0.1:8090 and each web
  host's port 80 on 127.0.0.1:809x (to look at one backend directly), the LB's 443 on 127.0.0.1:8443 and the lab's
  Prometheus on the LB (lab/playbooks/prometheus.yml, port 9090) on 127.0.0.1:9090;
- the balancer reaches the web hosts over a private L2 segment: a bridge in a network namespace this module creates
  (``wsgiops-fleet``, no address, no route out) and one veth pair per container, ``fleet0`` inside it with
  ``SUBNET.N/24``. No packet of the fleet segment touches the host's own interfaces;
- every container also gets an ``unreachable`` route for the whole ``SUBNET.0/16``: if the segment goes away first
  (teardown order, a crash), traffic for a backend fails inside the container instead of leaving through slirp's
  default route towards a real network.

CLI: ``python -m lab.fleet up|down|status``; the inventory is ``inventory/fleet-lab/hosts.yml`` (fixed ports, like
the demo's), the balancer answers on ``http://127.0.0.1:8090/``, the lab's Prometheus on ``http://127.0.0.1:9090/``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import container, locking, progress
from lab.paths import REPO_ROOT, Layout

NETNS = "wsgiops-fleet"
BRIDGE = "br0"
SUBNET = "10.213.0"
# The unreachable route guarding the segment's addresses when the segment is gone.
GUARD = "10.213.0.0/16"
IFACE = "fleet0"
# systemd-networkd in the containers removes routes it did not configure (ManageForeignRoutes=yes by default), the
# guard route among them: this drop-in, written into each member's overlay before boot, tells it to keep them.
NETWORKD_DROPIN = Path("etc/systemd/networkd.conf.d/fleet.conf")
NETWORKD_CONF = "[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n"


def overlay_files(member: Member) -> dict[Path, str]:
    """Files put into a member's overlay before it boots.

    /etc/hostname: the shared tree names every container `lab`; a fleet host carries its inventory name, as a
    real fleet's hosts do (and as an app that behaves per host, like the tests' release broken on web2, sees it).
    """
    return {NETWORKD_DROPIN: NETWORKD_CONF, Path("etc/hostname"): f"{member.name}\n"}


LB_URL = "http://127.0.0.1:8090/"
# The balancer's HTTPS: its certificate (from the lab's Pebble, lab/playbooks/acme.yml) names ACME_NAME, reached on a
# loopback forward; the root that verifies it is copied to the lab directory (ACME_ROOT).
ACME_NAME = "lb1.fleet.test"
LB_HTTPS_PORT = 8443
LB_HTTPS_URL = f"https://{ACME_NAME}:{LB_HTTPS_PORT}/"
ACME_ROOT = "fleet-acme-root.pem"
# The lab's Prometheus (lab/playbooks/prometheus.yml) on the balancer, port 9090 there, reached on a loopback forward.
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://127.0.0.1:{PROMETHEUS_PORT}/"
INVENTORY = REPO_ROOT / "inventory" / "fleet-lab" / "hosts.yml"


@dataclass(frozen=True)
class Member:
    """One fleet host: its inventory name, its group, its loopback ports and its address on the fleet segment."""

    name: str
    group: str
    ssh_port: int
    http_port: int
    octet: int
    # The loopback port forwarded to the host's 443 (the balancer's HTTPS), 0 for none.
    https_port: int = 0
    # The loopback port forwarded to the host's 9090 (the lab's Prometheus), 0 for none.
    prometheus_port: int = 0

    @property
    def container(self) -> str:
        """The container's machine name (prefixed, so the fleet never replaces another lab container)."""
        return f"fleet-{self.name}"

    @property
    def address(self) -> str:
        """The host's address on the fleet segment (what the balancer's backend lines name)."""
        return f"{SUBNET}.{self.octet}"

    @property
    def veth(self) -> str:
        """The host end of its veth pair, in the fleet namespace (at most 15 characters)."""
        return f"v-{self.name}"


# Below the lab's allocation range (2300-2999) and beside the demo's 8080, so nothing else takes them (Prometheus's
# forward keeps its usual port: the fleet refuses to come up if something on this machine already listens there).
MEMBERS = (
    Member("lb1", "lb", 2290, 8090, 2, https_port=LB_HTTPS_PORT, prometheus_port=PROMETHEUS_PORT),
    Member("web1", "web", 2291, 8091, 11),
    Member("web2", "web", 2292, 8092, 12),
    Member("web3", "web", 2293, 8093, 13),
)


def overlay_nspawn_command(tree: Path, directory: Path, name: str) -> list[str]:
    """lab.container's boot command on an overlay of the shared tree: lower = cached tree, upper = this host's.

    The overlay is mounted inside the private mount namespace nspawn runs in, so it vanishes with the container and
    the shared tree is never written. ``directory/rootfs`` is the mount point: lab.container's stop checks that path
    in the process's argv before it signals it.
    """
    upper, work, merged = directory / "upper", directory / "work", directory / "rootfs"
    mount = shlex.join(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={tree},upperdir={upper},workdir={work}", str(merged)]
    )
    return container.nspawn_command(merged, name, before=mount)


def wiring_commands(member: Member, init_pid: int) -> list[list[str]]:
    """The commands joining one container to the fleet segment (run on the host as root, in this order)."""
    inside = ["nsenter", "-t", str(init_pid), "-n"]
    return [
        ["ip", "-n", NETNS, "link", "add", member.veth, "type", "veth", "peer", "name", IFACE, "netns", str(init_pid)],
        ["ip", "-n", NETNS, "link", "set", member.veth, "master", BRIDGE, "up"],
        [*inside, "ip", "route", "add", "unreachable", GUARD],
        [*inside, "ip", "addr", "add", f"{member.address}/24", "dev", IFACE],
        [*inside, "ip", "link", "set", IFACE, "up"],
    ]


def check_wiring(member: Member, init_pid: int) -> None:
    """Refuse a member whose guard route or segment address did not survive its boot (networkd could drop them)."""
    inside = ["nsenter", "-t", str(init_pid), "-n", "ip"]
    routes = subprocess.run([*inside, "route", "show"], capture_output=True, text=True, check=False).stdout
    addresses = subprocess.run([*inside, "-4", "addr", "show", IFACE], capture_output=True, text=True, check=False)
    if f"unreachable {GUARD}" not in routes or f"{member.address}/24" not in addresses.stdout:
        raise container.ContainerError(f"{member.name}: fleet wiring lost after boot:\n{routes}{addresses.stdout}")


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise container.ContainerError(f"{shlex.join(cmd)}: {result.stderr.strip()}")


def _netns_exists() -> bool:
    return Path("/run/netns", NETNS).exists()


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port.

    With SO_REUSEADDR, as slirp4netns binds: the TIME_WAIT connections a fleet just torn down leaves on its fixed
    ports must not block the next one (lab.ports' stricter probe would).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ensure_segment() -> None:
    """The fleet namespace and its bridge: an L2 switch with no address and no route, so nothing leaves it."""
    if _netns_exists():
        return
    _run(["ip", "netns", "add", NETNS])
    _run(["ip", "-n", NETNS, "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "-n", NETNS, "link", "set", BRIDGE, "up"])


def _boot(layout: Layout, tree: Path, member: Member) -> container.State:
    """Start one member on its overlay, forward its loopback ports, wire it to the segment, wait for systemd."""
    directory = container.run_dir(layout, member.container)
    for sub in ("upper", "work", "rootfs"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    for relative, text in overlay_files(member).items():
        target = directory / "upper" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.write_text(text)
    state = container.State(member.container, tree.name, member.ssh_port, member.http_port)
    container.save(layout, state)
    started = time.monotonic()
    with (directory / "console.log").open("ab") as console:
        nspawn = subprocess.Popen(
            overlay_nspawn_command(tree, directory, member.container),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.nspawn_pid = nspawn.pid
    state.init_pid = container._find_init(nspawn.pid)
    container.save(layout, state)
    if not state.init_pid:
        raise container.ContainerError(
            f"{member.container}: no init. Console:\n{container.tail(directory / 'console.log')}"
        )
    for cmd in wiring_commands(member, state.init_pid):
        _run(cmd)
    api = directory / "slirp.sock"
    api.unlink(missing_ok=True)
    with (directory / "slirp.log").open("ab") as log:
        slirp = subprocess.Popen(
            container.slirp_command(state.init_pid, api),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state.slirp_pid = slirp.pid
    container.save(layout, state)
    for _ in range(100):
        if api.exists() or slirp.poll() is not None:
            break
        time.sleep(0.1)
    if not api.exists():
        raise container.ContainerError(f"{member.container}: slirp4netns gave no API socket")
    container._forward(api, state.ssh_port, 22)
    container._forward(api, state.http_port, 80)
    if member.https_port:
        container._forward(api, member.https_port, 443)
    if member.prometheus_port:
        container._forward(api, member.prometheus_port, PROMETHEUS_PORT)
    state.system_state = container._wait_for_systemd(layout, state, started)
    check_wiring(member, state.init_pid)
    state.boot_seconds = round(time.monotonic() - started, 1)
    container.save(layout, state)
    progress.step(f"{member.name} ({member.address}) up in {state.boot_seconds:.1f}s, ssh 127.0.0.1:{member.ssh_port}")
    return state


def _stop(layout: Layout, member: Member) -> None:
    state = container.load(layout, member.container)
    if state is not None:
        container._stop(layout, state)
    container.down(layout, member.container)


def down(layout: Layout) -> None:
    """Stop the balancer first (it is the only one sending to the segment), then the web hosts, then the segment."""
    for member in MEMBERS:
        _stop(layout, member)
    if _netns_exists():
        _run(["ip", "netns", "delete", NETNS])


def up(layout: Layout) -> list[container.State]:
    """A fresh fleet: every member on a clean overlay of the cached tree, booted in parallel, then wired."""
    down(layout)
    tree = container.build_rootfs(layout)
    with locking.exclusive(layout.lock):
        ports = (p for m in MEMBERS for p in (m.ssh_port, m.http_port, m.https_port, m.prometheus_port) if p)
        taken = [p for p in ports if not port_free(p)]
        if taken:
            raise container.ContainerError(f"loopback ports already in use: {taken} (another fleet or lab host?)")
        ensure_segment()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(MEMBERS)) as pool:
            states = list(pool.map(lambda m: _boot(layout, tree, m), MEMBERS))
    except Exception:
        down(layout)
        raise
    progress.step(f"fleet of {len(MEMBERS)} up in {time.monotonic() - started:.1f}s; balancer at {LB_URL}")
    return states


def status(layout: Layout) -> dict[str, object]:
    """What runs: each member's state and ports, and whether the segment exists."""
    members = {}
    for member in MEMBERS:
        state = container.load(layout, member.container)
        members[member.name] = {
            "container": member.container,
            "address": member.address,
            "ssh_port": member.ssh_port,
            "http_port": member.http_port,
            "state": state.system_state if state else "down",
        }
    return {
        "segment": _netns_exists(),
        "inventory": str(INVENTORY),
        "url": LB_URL,
        "prometheus": PROMETHEUS_URL,
        "members": members,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.fleet``: what ``make fleet``, ``make fleet-down`` and the fleet tests call."""
    parser = argparse.ArgumentParser(prog="python -m lab.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        if args.command == "up":
            up(layout)
            print(json.dumps(status(layout)))
        elif args.command == "down":
            down(layout)
        else:
            print(json.dumps(status(layout), indent=2))
    except (container.ContainerError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"lab.fleet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
