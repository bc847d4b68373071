"""Bootable base images: mmdebstrap a root tree, mkfs.ext4 -d it into a disk, keep kernel and initrd beside it.

No loop mounts and no bootloader: QEMU boots the kernel directly (``-kernel/-initrd``), so building needs no
privileges beyond what mmdebstrap's root mode uses and works inside containers and Firecracker guests alike.
Images are cached under a content key, so a change of package list, recipe, CA certificates or lab key rebuilds,
and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab import keyring, locking, progress, sshkey
from lab.dists import Dist
from lab.paths import Layout

# Bump when the recipe below changes in a way that changes the image.
RECIPE_VERSION = 2
CA_DIR = Path("/usr/local/share/ca-certificates")
DISK_SIZE_BYTES = 8 * 1024**3
GUEST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Image:
    """The files one built image consists of: what `up` and the Packer qemu source boot from."""

    directory: Path

    @property
    def disk(self) -> Path:
        """The root filesystem as an uncompressed qcow2 (ext4 on the whole disk, no partition table)."""
        return self.directory / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        """The guest's kernel, booted directly by QEMU."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """The guest's initramfs, matching ``kernel``."""
        return self.directory / "initrd.img"

    @property
    def manifest(self) -> Path:
        """JSON record of what went in; its presence marks a complete image."""
        return self.directory / "manifest.json"

    def exists(self) -> bool:
        """True when a build finished (the manifest is written last)."""
        return self.manifest.exists() and self.disk.exists() and self.kernel.exists() and self.initrd.exists()


def ca_certificates(ca_dir: Path = CA_DIR) -> list[Path]:
    """The machine's extra CA certificates: the guest needs them to reach PyPI through this network."""
    return sorted(p for p in ca_dir.rglob("*.crt") if p.is_file()) if ca_dir.is_dir() else []


def ca_digest(certs: list[Path]) -> str:
    """Hash of the certificates' names and contents: new certificates on a machine mean a new image."""
    h = hashlib.sha256()
    for cert in certs:
        h.update(cert.name.encode() + b"\0" + cert.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(dist: Dist, ca_hash: str, public_key: str) -> str:
    """Content key of an image: everything that changes the bytes we care about, and nothing that does not."""
    material = {
        "dist": dist.name,
        "suite": dist.suite,
        "sources": dist.source_lines(),
        "packages": list(dist.packages),
        "recipe": RECIPE_VERSION,
        "ca": ca_hash,
        "ssh": public_key.strip(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def stage_ca_certificates(work: Path) -> Path:
    """Copy the machine's extra CA certificates into WORK/ca for a build hook (its $cadir); the directory's path.

    Images, container trees and build roots all trust what this machine trusts (ca_trust_script installs them).
    """
    cadir = work / "ca"
    cadir.mkdir()
    for cert in ca_certificates():
        shutil.copyfile(cert, cadir / cert.name)
    return cadir


def ca_trust_script() -> str:
    """Shell lines (``$root`` and ``$cadir`` set) that make a root tree trust the machine's extra CAs, pip included.

    Shared by the images and the lab's build roots (lab/roots.py): both reach PyPI through this network.
    """
    return f"""mkdir -p "$root/usr/local/share/ca-certificates/lab"
for crt in "$cadir"/*.crt; do [ -e "$crt" ] && install -m 0644 "$crt" "$root/usr/local/share/ca-certificates/lab/"; done
chroot "$root" update-ca-certificates
printf '[global]\\ncert = {GUEST_CA_BUNDLE}\\n' > "$root/etc/pip.conf"
"""


def customize_script(dist: Dist) -> str:
    """Shell run by mmdebstrap's customize hook as ``sh SCRIPT ROOT PUBKEY CADIR``: make the tree a lab host."""
    sources = "\n".join(dist.source_lines())
    return f"""set -eu
root="$1"; pubkey="$2"; cadir="$3"
printf 'lab\\n' > "$root/etc/hostname"
printf '127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\\n' > "$root/etc/fstab"
cat > "$root/etc/apt/sources.list" <<'SOURCES'
{sources}
SOURCES
mkdir -p "$root/etc/systemd/network"
printf '[Match]\\nName=en* eth*\\n\\n[Network]\\nDHCP=ipv4\\n' > "$root/etc/systemd/network/20-lab.network"
systemctl --root="$root" enable systemd-networkd.service
rm -f "$root/etc/resolv.conf"
printf 'nameserver 10.0.2.3\\n' > "$root/etc/resolv.conf"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$pubkey" "$root/root/.ssh/authorized_keys"
{ca_trust_script()}rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
systemd-machine-id-setup --root="$root"
"""


def mmdebstrap_command(
    dist: Dist,
    host_keyring: Path,
    rootfs: Path,
    hook: Path,
    pubkey: Path,
    cadir: Path,
    packages: tuple[str, ...] | None = None,
) -> list[str]:
    """The mmdebstrap invocation: apt verifies every Release file with ``host_keyring``; nothing is trusted blindly.

    ``packages`` replaces the image's list for trees that are not lab hosts (the build roots of lab/roots.py), so
    every tree the lab makes comes from this one recipe.
    """
    comps = " ".join(dist.components)
    mirrors = [f"deb {m} {s} {comps}" for m, s in dist.sources()]
    hook_cmd = " ".join(["sh", shlex.quote(str(hook)), '"$1"', shlex.quote(str(pubkey)), shlex.quote(str(cadir))])
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        "--architectures=amd64",
        f"--keyring={host_keyring}",
        f"--include={','.join(dist.packages if packages is None else packages)}",
        f"--customize-hook={hook_cmd}",
        # Keep the package lists, as an installed system has them: a role's apt cache_valid_time then means what it
        # says, instead of "fresh" for an empty list directory the image build just touched.
        "--skip=cleanup/apt/lists",
        dist.suite,
        str(rootfs),
        *mirrors,
    ]


def mkfs_command(rootfs: Path, raw: Path) -> list[str]:
    """ext4 populated from the tree in one step (``-d``): no loop device, no mount."""
    return ["mkfs.ext4", "-q", "-F", "-L", "lab-root", "-d", str(rootfs), str(raw)]


def convert_command(raw: Path, qcow2: Path) -> list[str]:
    """Uncompressed qcow2: converting is sub-second and overlays on it are cheap."""
    return ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]


def newest(paths: list[Path]) -> Path:
    """The boot file of the newest kernel when an image carries several (sorted by version-aware name)."""
    if not paths:
        raise FileNotFoundError("the image has no kernel in /boot")
    return sorted(paths, key=lambda p: [int(t) if t.isdigit() else t for t in _tokens(p.name)])[-1]


def _tokens(name: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for ch in name:
        if cur and ch.isdigit() != cur[-1].isdigit():
            out.append(cur)
            cur = ""
        cur += ch
    return [*out, cur]


def locate(dist: Dist, layout: Layout) -> Image:
    """Where the image of ``dist`` with the current key lives (built or not)."""
    key = cache_key(dist, ca_digest(ca_certificates()), sshkey.ensure(layout).read_text())
    return Image(layout.images / f"{dist.name}-{key}")


def stale(images_dir: Path, current: dict[str, str], in_use: set[str]) -> list[Path]:
    """Image directories no longer worth their disk: not the current key of their dist, and booted by no VM.

    ``current`` maps dist name to the directory name its current key gives; ``in_use`` holds the image names of
    recorded VMs (an overlay needs its backing image until the VM is down).
    """
    if not images_dir.is_dir():
        return []
    out = []
    for d in sorted(images_dir.iterdir()):
        dist = d.name.split("-", 1)[0]
        if d.is_dir() and not d.name.startswith(".") and d.name != current.get(dist) and d.name not in in_use:
            out.append(d)
    return out


def build(dist: Dist, layout: Layout, force: bool = False) -> Image:
    """Build the image of ``dist`` unless an identical one is cached; return it either way."""
    image = locate(dist, layout)
    with locking.exclusive(layout.lock.with_name(f"build-{dist.name}.lock")):
        if image.exists() and not force:
            progress.step(f"image {image.directory.name} cached")
            return image
        started = time.monotonic()
        work = image.directory.with_name(f".build-{image.directory.name}-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            _build_into(dist, layout, work)
            manifest = {
                "dist": dist.name,
                "suite": dist.suite,
                "packages": list(dist.packages),
                "recipe": RECIPE_VERSION,
                "build_seconds": round(time.monotonic() - started, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(image.directory, ignore_errors=True)
            work.rename(image.directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        progress.step(f"image {image.directory.name} built in {time.monotonic() - started:.0f}s")
        return image


def _build_into(dist: Dist, layout: Layout, work: Path) -> None:
    rootfs = work / "rootfs"
    cadir = stage_ca_certificates(work)
    hook = work / "customize.sh"
    hook.write_text(customize_script(dist))
    pubkey = sshkey.ensure(layout)
    cmd = mmdebstrap_command(dist, keyring.host_keyring(dist, layout), rootfs, hook, pubkey, cadir)
    progress.step(f"mmdebstrap {dist.suite} ({len(dist.packages)} packages + deps; about a minute)")
    subprocess.run(cmd, check=True)
    boot = rootfs / "boot"
    shutil.copyfile(newest(list(boot.glob("vmlinuz-*"))), work / "vmlinuz")
    shutil.copyfile(newest(list(boot.glob("initrd.img-*"))), work / "initrd.img")
    raw = work / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(DISK_SIZE_BYTES)
    progress.step("mkfs.ext4 -d (root tree into an 8 GiB sparse disk)")
    subprocess.run(mkfs_command(rootfs, raw), check=True)
    subprocess.run(convert_command(raw, work / "disk.qcow2"), check=True)
    raw.unlink()
    shutil.rmtree(rootfs)
    shutil.rmtree(cadir)
