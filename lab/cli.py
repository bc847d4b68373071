"""Command line of the lab.

python -m lab image build DIST        build (or reuse) a base image; prints its files as JSON
python -m lab image path DIST         where that image's disk, kernel and initrd are (builds nothing)
python -m lab up NAME --dist D --cpus N --memory M [--ssh-port P --http-port P]
python -m lab down NAME               stop the VM and delete its overlay and state
python -m lab status                  every VM the lab knows, as JSON
python -m lab inventory NAME          path of the VM's Ansible inventory
python -m lab ssh NAME -- CMD...      run a command in the VM as root
python -m lab report NAME             the VM's URL, what it answers, and its Gunicorn workers per cores
python -m lab wheel DIST [--path]     build (or reuse) the Meinheld wheel for DIST's Python on this controller
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys

from lab import dists, image, progress, report, ssh, vm, wheel
from lab.paths import Layout
from meinheld_build.build import BuildError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    img = sub.add_parser("image", help="base images")
    img_sub = img.add_subparsers(dest="image_command", required=True)
    build = img_sub.add_parser("build", help="build (or reuse) the base image of DIST")
    build.add_argument("dist", choices=sorted(dists.DISTS))
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    img_sub.add_parser("prune", help="delete images superseded by a newer key and used by no VM")
    path = img_sub.add_parser("path", help="print the image's files as JSON (builds nothing)")
    path.add_argument("dist", choices=sorted(dists.DISTS))

    upp = sub.add_parser("up", help="boot a VM and wait until systemd is up")
    upp.add_argument("name")
    upp.add_argument("--dist", default="debian12", choices=sorted(dists.DISTS))
    upp.add_argument("--cpus", type=int, default=2)
    upp.add_argument("--memory", default="2G", help="MiB, or with suffix M/G (default 2G)")
    upp.add_argument("--ssh-port", type=int, help="fixed host port for SSH (default: allocated)")
    upp.add_argument("--http-port", type=int, help="fixed host port for guest port 80 (default: allocated)")
    upp.add_argument("--reuse", action="store_true", help="keep the VM if it is already up with this dist")
    upp.add_argument("--timeout", type=float, default=600, help="seconds to wait for systemd (default 600)")

    dn = sub.add_parser("down", help="stop a VM and delete its files")
    dn.add_argument("name")
    sub.add_parser("status", help="list the VMs as JSON")
    inv = sub.add_parser("inventory", help="print the path of a VM's inventory")
    inv.add_argument("name")
    rep = sub.add_parser("report", help="URL, HTTP answer and Gunicorn workers/cores of a VM")
    rep.add_argument("name")
    sh = sub.add_parser("ssh", help="run a command in a VM")
    sh.add_argument("name")
    sh.add_argument("remote", nargs=argparse.REMAINDER)
    whl = sub.add_parser("wheel", help="the Meinheld wheel for DIST's guests, built on this controller (JSON)")
    whl.add_argument("dist", choices=sorted(dists.DISTS))
    whl.add_argument("--path", action="store_true", help="print only the wheel's path (nothing when there is none)")
    return p


def _image_json(dist: dists.Dist, img: image.Image) -> str:
    return json.dumps(
        {
            "dist": dist.name,
            "built": img.exists(),
            "disk": str(img.disk),
            "kernel": str(img.kernel),
            "initrd": str(img.initrd),
        }
    )


def _run(args: argparse.Namespace, layout: Layout) -> int:
    if args.command == "image" and args.image_command == "prune":
        current = {name: image.locate(d, layout).directory.name for name, d in dists.DISTS.items()}
        for old in image.stale(layout.images, current, {s.image for s in vm.all_states(layout)}):
            progress.step(f"removing superseded image {old.name}")
            shutil.rmtree(old)
    elif args.command == "image":
        dist = dists.get(args.dist)
        built = args.image_command == "build"
        img = image.build(dist, layout, force=args.force) if built else image.locate(dist, layout)
        print(_image_json(dist, img))
    elif args.command == "up":
        state = vm.load(layout, args.name) if args.reuse else None
        if state and state.dist == args.dist and vm.is_our_qemu(state.pid, layout.vm_dir(args.name)):
            progress.step(f"{args.name} is already up (ssh 127.0.0.1:{state.ssh_port}); reusing it")
        else:
            state = vm.up(
                layout, args.name, args.dist, args.cpus, args.memory, args.ssh_port, args.http_port, args.timeout
            )
        inv = layout.vm_dir(args.name) / "inventory.yml"
        print(json.dumps({**dataclasses.asdict(state), "inventory": str(inv), "ssh_key": str(layout.ssh_key)}))
    elif args.command == "down":
        if not vm.down(layout, args.name):
            progress.step(f"no VM named {args.name}")
    elif args.command == "status":
        print(json.dumps(vm.status(layout), indent=2))
    elif args.command == "inventory":
        path = layout.vm_dir(args.name) / "inventory.yml"
        if not path.exists():
            raise RuntimeError(f"no inventory for {args.name}: is it up?")
        print(path)
    elif args.command == "report":
        return report.show(layout, args.name)
    elif args.command == "wheel":
        choice = wheel.for_dist(dists.get(args.dist))
        if choice.wheel is None:
            progress.step(f"no controller-built wheel for {choice.dist}: {choice.reason}")
        if args.path:
            print(choice.wheel or "")
        else:
            print(json.dumps({**dataclasses.asdict(choice), "wheel": str(choice.wheel) if choice.wheel else None}))
    elif args.command == "ssh":
        state = vm.load(layout, args.name)
        if state is None:
            raise RuntimeError(f"no VM named {args.name}")
        remote = args.remote[1:] if args.remote[:1] == ["--"] else args.remote
        if len(remote) == 1:  # one word is a shell command line, as with plain ssh
            remote = ["sh", "-c", remote[0]]
        return subprocess.call(ssh.command(layout.ssh_key, state.ssh_port, remote))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one lab command; errors print one line (plus the serial tail of a failed boot) instead of a traceback."""
    args = _parser().parse_args(argv)
    try:
        return _run(args, Layout.default())
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError, BuildError) as exc:
        progress.step(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
