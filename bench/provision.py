"""Provisioning speed on a lab VM: site.yml's fresh converge, idempotent rerun, code-only deploy; the image's boot.

It uses the lab (`python -m lab`: one Debian 12 VM with 2 vCPUs, stopped at the end) and the image that `make image`
leaves under .cache/packer/debian12 (boot to the first 200). Whatever is missing is reported as not run, with the
reason. The app is a copy of example_app, so the code-only deploy changes its greeting without touching the checkout,
and the run checks that the VM then serves the new greeting. Under TCG (no usable KVM here) every figure is several
times what a KVM host or a cloud instance takes: the report names the accelerator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import machine, paths
from bench.runner import log

VM = "bench-provision"
DIST = "debian12"
SITE = paths.REPO / "playbooks" / "site.yml"
PACKER_OUTPUT = paths.REPO / ".cache" / "packer" / DIST
IDEMPOTENT_TARGET_S = 60
_RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def recap(output: str) -> dict[str, int]:
    """Sum ok/changed/unreachable/failed over the PLAY RECAP lines of an ansible-playbook run."""
    totals = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0}
    found = False
    for match in _RECAP.finditer(output):
        found = True
        for name, value in zip(totals, match.groups(), strict=True):
            totals[name] += int(value)
    if not found:
        raise ValueError("no PLAY RECAP in the ansible-playbook output")
    return totals


def missing_parts() -> list[str]:
    """What the provisioning benchmark needs from the other areas and does not find."""
    needed = {"lab/": paths.REPO / "lab" / "__main__.py", "playbooks/site.yml": SITE}
    return [name for name, path in needed.items() if not path.exists()]


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode(errors="replace")


def site_vars(app_dir: Path, wheel: str | None) -> dict[str, Any]:
    """site.yml's extra vars: our copy of the example app, and the controller-built wheel when there is one.

    With the wheel the guest installs Meinheld instead of compiling it and gets no compiler (as `make demo` and the
    molecule VM scenarios do); without it the role builds in the guest, which under TCG adds about 15 minutes.
    """
    extra: dict[str, Any] = {"app_list": [{"name": "example", "source": "local", "path": str(app_dir)}]}
    if wheel:
        extra.update(server_meinheld_source=wheel, interpreter_keep_build_deps=False)
    return extra


def _wheel() -> str | None:
    """The patched Meinheld wheel for the guest's Python, built on this controller by the lab (or None, and why)."""
    done = subprocess.run(
        [sys.executable, "-m", "lab", "wheel", DIST], capture_output=True, text=True, check=True, cwd=paths.REPO
    )
    answer = json.loads(done.stdout)
    if not answer["wheel"]:
        log(f"provision: no controller wheel ({answer['reason']}): the guest compiles Meinheld")
    return answer["wheel"]


def _playbook(name: str, inventory: str, extra_vars: dict[str, Any], logs: Path) -> dict[str, Any]:
    """Time one run of site.yml against the VM."""
    extra = json.dumps(extra_vars)
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(SITE), "-e", extra]
    env = {**os.environ, "ANSIBLE_CONFIG": str(paths.REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    log(f"provision: {name}: ansible-playbook site.yml")
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600, check=False, cwd=paths.REPO)
    seconds = time.monotonic() - started
    (logs / f"{name.replace(' ', '-')}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: ansible-playbook exited {done.returncode}; see {logs}")
    counts = recap(done.stdout)
    log(f"provision: {name}: {seconds:.1f} s, changed={counts['changed']}")
    return {"name": name, "seconds": round(seconds, 1), **counts}


def _converge_steps(logs: Path) -> tuple[list[dict[str, Any]], str]:
    """Boot the VM, time the three site.yml runs, stop the VM; also say where Meinheld came from."""
    lab = [sys.executable, "-m", "lab"]
    subprocess.run([*lab, "image", "build", DIST], check=True, stdout=subprocess.DEVNULL, cwd=paths.REPO)
    app_dir = logs / "app"
    shutil.rmtree(app_dir, ignore_errors=True)
    shutil.copytree(paths.EXAMPLE_APP, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    extra_vars = site_vars(app_dir, _wheel())
    started = time.monotonic()
    up = subprocess.run(
        [*lab, "up", VM, "--dist", DIST, "--cpus", "2", "--memory", "2G"],
        capture_output=True,
        text=True,
        check=True,
        cwd=paths.REPO,
    )
    state = json.loads(up.stdout)
    booted = round(time.monotonic() - started, 1)
    steps: list[dict[str, Any]] = [{"name": "lab VM boot to SSH (the lab, not the suite)", "seconds": booted}]
    meinheld = "controller-built wheel" if "server_meinheld_source" in extra_vars else "compiled in the guest"
    try:
        steps.append(_playbook("fresh converge", state["inventory"], extra_vars, logs))
        steps.append(_playbook("idempotent rerun", state["inventory"], extra_vars, logs))
        main_py = app_dir / "main.py"
        greeting = "Hello World from Flask, deployed again"
        main_py.write_text(main_py.read_text().replace('"Hello World from Flask"', f'"{greeting}"'))
        steps.append(_playbook("code-only deploy", state["inventory"], extra_vars, logs))
        status, body = _get(f"http://127.0.0.1:{state['http_port']}/")
        if status != 200 or body != greeting:
            raise RuntimeError(f"after the code-only deploy the VM answered {status} {body!r}, not {greeting!r}")
        steps[-1]["verified"] = "serves the new code"
    finally:
        subprocess.run([*lab, "down", VM], check=False, capture_output=True, cwd=paths.REPO)
    return steps, meinheld


def _image_boot() -> dict[str, Any]:
    """Boot the Packer image from a throw-away overlay and time it until the app answers 200."""
    try:
        from tests.image.boot import BuiltImage, boot  # the image area's own booting helper
    except ImportError as error:
        return {"name": "Packer image: boot to first 200", "status": f"not run: {error}"}
    try:
        image = BuiltImage.in_dir(PACKER_OUTPUT)
    except FileNotFoundError as error:
        return {"name": "Packer image: boot to first 200", "status": f"not run: no built image ({error})"}
    log(f"provision: booting the Packer image {image.disk.name}")
    started = time.monotonic()
    with boot(image, cpus=2) as instance:
        deadline = time.monotonic() + 300
        while True:
            try:
                if _get(f"http://127.0.0.1:{instance.http_port}/", timeout=3)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        seconds = time.monotonic() - started
        return {
            "name": "Packer image: boot to first 200 (2 vCPUs)",
            "seconds": round(seconds, 1),
            "systemd_running_s": instance.boot_seconds,
        }


def accelerator() -> str:
    """What the lab's QEMU runs on (its cached probe), or "unknown"."""
    probe = paths.REPO / ".cache" / "lab" / "accel.json"
    try:
        return str(json.loads(probe.read_text())["accel"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def run() -> dict[str, Any]:
    """Run what can run; the result says what was measured, what was not, and why."""
    missing = missing_parts()
    if missing:
        return {"status": "not run", "reason": f"{', '.join(missing)} not in this checkout yet"}
    logs = paths.CACHE / "provision"
    logs.mkdir(parents=True, exist_ok=True)
    load_start = machine.loadavg()
    steps, meinheld = _converge_steps(logs)
    steps.append(_image_boot())
    rerun = next(s for s in steps if s["name"] == "idempotent rerun")
    return {
        "status": "ran",
        "date": machine.describe()["date"],
        "dist": DIST,
        "vm": "2 vCPUs, 2 GiB",
        "meinheld": meinheld,
        "accelerator": accelerator(),
        "loadavg_start": load_start,
        "loadavg_end": machine.loadavg(),
        "steps": steps,
        "idempotent_rerun_target_s": IDEMPOTENT_TARGET_S,
        "idempotent_rerun_met": rerun["seconds"] < IDEMPOTENT_TARGET_S and rerun["changed"] == 0,
    }
