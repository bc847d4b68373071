"""Run this machine's Packer on the suite's templates: ``build`` (make image) and ``check`` (make packer-check).

Packer >= 1.7 reads ``packer/`` as it is (``packer build -only=amazon-ebs.ami packer/``). Debian 12's Packer
1.6.6 does not: it rejects plugins.pkr.hcl's ``required_plugins`` block, and its bundled amazon-ebs builder predates
``metadata_options``. So for 1.6.6 this script stages a copy of the other files under .cache/packer/hcl, and for the
amazon-ebs validation a second copy without the metadata_options blocks (the one thing 1.6.6's schema lacks); it then
checks separately that every amazon-ebs source of the real files requires IMDSv2 tokens, so nothing goes unchecked.

Run from the checkout's root with the controller venv's python (the Makefile does):
    python packer/local.py check
    python packer/local.py build

``build`` bakes the patched Meinheld wheel the lab builds on this machine for its Debian 12 guests (``python -m lab
wheel debian12``: built in a Debian 12 root from Debian's archive, lab/roots.py) instead of compiling Meinheld in the
TCG guest, which was most of the build's time; where the controller cannot build for that guest, the guest compiles it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import accel, dists, image, sshkey, wheel  # noqa: E402  (the checkout's lab package, importable once REPO is on the path)
from lab.paths import Layout  # noqa: E402
from meinheld_build.build import BuildError  # noqa: E402

TEMPLATES = REPO / "packer"
CACHE = REPO / ".cache" / "packer"
PLUGINS_FILE = "plugins.pkr.hcl"
QEMU_SOURCE = "qemu.debian12"
AMAZON_SOURCE = "amazon-ebs.ami"
# Every distribution the amazon-ebs source is validated with (keys of variables.pkr.hcl's aws_source_amis).
AMAZON_DISTRIBUTIONS = ("debian12", "ubuntu2404")
# And every architecture (variables.pkr.hcl's aws_architecture): x86_64 and Graviton.
AMAZON_ARCHITECTURES = ("x86_64", "arm64")
IMAGE_NAME = "debian12"
METADATA_BLOCK = re.compile(r"^(?P<indent>[ \t]*)metadata_options\s*\{.*?^(?P=indent)\}[ \t]*\n", re.M | re.S)
SOURCE_BLOCK = re.compile(r'^source\s+"(?P<type>[^"]+)"\s+"(?P<name>[^"]+)"\s*\{(?P<body>.*?)^\}', re.M | re.S)


def packer_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) from `packer version` output such as 'Packer v1.6.6' (the first line)."""
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"cannot read a Packer version from {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def understands_plugins(version: tuple[int, int, int]) -> bool:
    """Packer 1.7 introduced required_plugins and the plugin builders that know metadata_options."""
    return version >= (1, 7, 0)


def template_files(directory: Path) -> list[Path]:
    """The HCL2 files Packer would read from ``directory``."""
    return sorted(directory.glob("*.pkr.hcl"))


def stage(files: list[Path], target: Path, transform: object = None) -> Path:
    """Copy ``files`` except plugins.pkr.hcl into a fresh ``target``, optionally rewriting their text."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in files:
        if f.name == PLUGINS_FILE:
            continue
        text = f.read_text()
        (target / f.name).write_text(transform(text) if callable(transform) else text)
    return target


def strip_metadata_options(text: str) -> str:
    """The template without its metadata_options blocks (unknown to Packer 1.6.6's amazon-ebs)."""
    return METADATA_BLOCK.sub("", text)


def sources_without_imdsv2(text: str) -> list[str]:
    """amazon-ebs sources whose metadata_options does not set http_tokens = "required" (IMDSv2 only)."""
    missing = []
    for m in SOURCE_BLOCK.finditer(text):
        if m.group("type") != "amazon-ebs":
            continue
        block = re.search(r"metadata_options\s*\{(?P<inner>[^}]*)\}", m.group("body"))
        if not block or not re.search(r'^\s*http_tokens\s*=\s*"required"\s*$', block.group("inner"), re.M):
            missing.append(f"amazon-ebs.{m.group('name')}")
    return missing


def var_args(values: dict[str, object]) -> list[str]:
    """-var NAME=VALUE arguments, in a stable order."""
    return [arg for k in sorted(values) for arg in ("-var", f"{k}={values[k]}")]


def human_bytes(n: int) -> str:
    """Sizes in the report: MiB with one decimal below a GiB, else GiB with two."""
    return f"{n / 1024**2:.1f} MiB" if n < 1024**3 else f"{n / 1024**3:.2f} GiB"


def run(cmd: list[str], **kwargs: object) -> None:
    """Echo and run a command from the checkout's root, failing loudly."""
    print(">> " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, **kwargs)  # type: ignore[call-overload]


def _version() -> tuple[int, int, int]:
    out = subprocess.run(["packer", "version"], capture_output=True, text=True, check=True).stdout
    return packer_version(out.splitlines()[0] if out else "")


def _check_qemu_vars(work: Path) -> dict[str, object]:
    """The qemu inputs for `validate`: it opens the SSH key (the lab's, created if missing) but not the image files.

    meinheld_wheel is set so the branch `make image` takes (the wheel as an extra var) is evaluated too; validate
    does not open it. qemu_output_dir must not exist (validate refuses one that does, such as a built image's).
    """
    shutil.rmtree(work / "output", ignore_errors=True)
    return {
        "repo_root": REPO,
        "lab_image_dir": work / "lab-image",
        "lab_ssh_key": _lab_key(),
        "qemu_output_dir": work / "output",
        "meinheld_wheel": work / "meinheld-0-cp311-cp311-linux_x86_64.whl",
    }


def _lab_key() -> Path:
    layout = Layout.default()
    sshkey.ensure(layout)
    return layout.ssh_key


def _amazon_variants() -> list[tuple[str, str]]:
    """Every (distribution, architecture) the amazon-ebs source is validated with."""
    return [(dist, arch) for dist in AMAZON_DISTRIBUTIONS for arch in AMAZON_ARCHITECTURES]


def check() -> int:
    """Run fmt -check on every file, then validate every source (qemu and amazon-ebs) with no cloud credentials."""
    files = template_files(TEMPLATES)
    run(["packer", "fmt", "-check", "-diff", str(TEMPLATES)])
    missing = sources_without_imdsv2("\n".join(f.read_text() for f in files))
    if missing:
        print(f'error: {", ".join(missing)} do not require IMDSv2 (metadata_options http_tokens = "required")')
        return 1
    version = _version()
    work = CACHE / "check"
    qemu_vars = var_args(_check_qemu_vars(work))
    if understands_plugins(version):
        for dist, arch in _amazon_variants():
            variant = var_args({"aws_distribution": dist, "aws_architecture": arch})
            run(["packer", "validate", *qemu_vars, *variant, str(TEMPLATES)])
        return 0
    staged = stage(files, work / "hcl")
    run(["packer", "validate", f"-only={QEMU_SOURCE}", *qemu_vars, str(staged)])
    amazon = stage(files, work / "hcl-amazon", strip_metadata_options)
    for dist, arch in _amazon_variants():
        variant = var_args({"aws_distribution": dist, "aws_architecture": arch})
        run(["packer", "validate", f"-only={AMAZON_SOURCE}", *qemu_vars, *variant, str(amazon)])
    print(f">> Packer {'.'.join(map(str, version))}: every source validates (amazon-ebs without metadata_options)")
    return 0


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links are instant and survive the lab replacing its image; copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def meinheld_vars(choice: wheel.WheelChoice) -> dict[str, object]:
    """The meinheld_wheel variable for the lab's wheel choice: the wheel, or nothing (the guest compiles Meinheld)."""
    return {"meinheld_wheel": choice.wheel.resolve()} if choice.wheel else {}


def build() -> int:
    """Build the qemu image from the lab's current Debian 12 base into .cache/packer/debian12/."""
    dist = dists.get(IMAGE_NAME)
    # Before the base image and the VM: a wheel that cannot be built fails in a minute, not after the boot.
    choice = wheel.for_dist(dist)
    print(f">> Meinheld for the image: {choice.wheel or 'compiled in the build VM'} ({choice.reason})", flush=True)
    layout = Layout.default()
    base = image.build(dist, layout)
    work = CACHE / "work"
    shutil.rmtree(work, ignore_errors=True)
    base_copy = work / "base"
    base_copy.mkdir(parents=True)
    for f in (base.disk, base.kernel, base.initrd):
        _link_or_copy(f, base_copy / f.name)
    accelerator = accel.detect(layout.root / "accel.json", base_copy / "vmlinuz")
    output = work / "output"
    hcl = stage(template_files(TEMPLATES), work / "hcl")
    values: dict[str, object] = {
        "repo_root": REPO,
        "lab_image_dir": base_copy,
        "lab_ssh_key": _lab_key(),
        "qemu_output_dir": output,
        "qemu_accelerator": accelerator,
        "qemu_cpu_model": "host" if accelerator == "kvm" else "max",
        "qemu_serial_log": work / "serial.log",
        "manifest_path": work / "manifest.json",
        "ansible_known_hosts_file": work / "known_hosts",
        **meinheld_vars(choice),
    }
    started = time.monotonic()
    env = {**os.environ, "PACKER_CACHE_DIR": str(work / "packer_cache"), "PACKER_NO_COLOR": "1"}
    # PACKER_ON_ERROR=abort keeps a failed build's VM running for a look inside (Packer's -on-error).
    on_error = [f"-on-error={os.environ['PACKER_ON_ERROR']}"] if os.environ.get("PACKER_ON_ERROR") else []
    run(["packer", "build", f"-only={QEMU_SOURCE}", *on_error, *var_args(values), str(hcl)], env=env)
    seconds = time.monotonic() - started
    disks = sorted(output.glob("*.qcow2"))
    if len(disks) != 1:
        raise RuntimeError(f"{output}: expected one qcow2 after the build, found {disks}")
    for f in (base_copy / "vmlinuz", base_copy / "initrd.img", work / "manifest.json"):
        shutil.copyfile(f, output / f.name)
    info_cmd = ["qemu-img", "info", "--output=json", str(disks[0])]
    info = json.loads(subprocess.run(info_cmd, capture_output=True, text=True, check=True).stdout)
    record = {
        "image": disks[0].name,
        "base": base.directory.name,
        "accelerator": accelerator,
        "meinheld": choice.wheel.name if choice.wheel else "compiled in the guest",
        "build_seconds": round(seconds, 1),
        "image_bytes": disks[0].stat().st_size,
        "virtual_bytes": info["virtual-size"],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (output / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    final = CACHE / IMAGE_NAME
    shutil.rmtree(final, ignore_errors=True)
    output.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    print(
        f">> image {final / disks[0].name}: built in {int(seconds // 60)} min {int(seconds % 60)} s ({accelerator}), "
        f"{human_bytes(record['image_bytes'])} on disk (compressed qcow2), {human_bytes(info['virtual-size'])} virtual"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``check`` or ``build``; a failed command prints its own error and the exit status says it."""
    p = argparse.ArgumentParser(prog="python packer/local.py", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["check", "build"])
    args = p.parse_args(argv)
    try:
        return check() if args.command == "check" else build()
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(map(str, exc.cmd))} exited {exc.returncode}", file=sys.stderr)
        return 1
    except BuildError as exc:
        print(f"error: the Meinheld wheel for the image: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
