"""Provisioning speed on a lab VM: the suite's site.yml beside a naive reference playbook, and the image's boot.

Measured: fresh converge, idempotent rerun and code-only deploy of site.yml and of bench/reference.yml, under Ansible's
own linear strategy and under Mitogen's.

Each (strategy, playbook) pair gets its own fresh lab VM (`python -m lab`: Debian 12, 2 vCPUs, stopped at the end), one
after the other in one invocation, so the suite/reference ratio is measured on the same kind of VM under the same
load. The Packer image is the one `make image` leaves under .cache/packer/debian12 (boot to the first 200). Whatever is
missing is reported as not run, with the reason. The app is a copy of example_app, so the code-only deploy changes its
greeting without touching the checkout, and the run checks that the VM then serves the new greeting. Under TCG (no
usable KVM here) every figure is several times what a KVM host or a cloud instance takes: the report names the
accelerator.
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
REFERENCE = paths.REPO / "bench" / "reference.yml"
PLAYBOOKS = {"suite": SITE, "reference": REFERENCE}
PACKER_OUTPUT = paths.REPO / ".cache" / "packer" / DIST
# Ansible's own strategy, and Mitogen's (requirements/tooling.txt): the keys of --strategies.
STRATEGIES = ("linear", "mitogen")
STEPS = ("fresh converge", "idempotent rerun", "code-only deploy")
# The suite's targets: each step at most this many times the naive reference's, measured in the same run, and a no-op
# rerun within this many seconds on the TCG lab VM, with changed=0.
TARGET_RATIO = 1.3
RERUN_TARGET_S = 60
GREETING = "Hello World from Flask"
_RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
# What -vvv prints once per task header, and once per module it sends to a host (each a Python start there: what a run
# costs on the host, whatever the task count says).
_TASK = re.compile(r"^TASK \[", re.MULTILINE)
_MODULE_RUN = re.compile(r"^Using module file ", re.MULTILINE)


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


def work(output: str) -> dict[str, int]:
    """The tasks and the module runs of an ansible-playbook -vvv run (one host: a task header is one task run)."""
    return {"tasks": len(_TASK.findall(output)), "module_runs": len(_MODULE_RUN.findall(output))}


def missing_parts() -> list[str]:
    """What the provisioning benchmark needs from the other areas and does not find."""
    needed = {"lab/": paths.REPO / "lab" / "__main__.py", "playbooks/site.yml": SITE, "bench/reference.yml": REFERENCE}
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


def _await_greeting(url: str, expected: str, within_s: float = 60) -> str | None:
    """None once ``url`` answers 200 ``expected``; else the last answer (the reference restarts without a gate)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            status, body = _get(url)
            last = f"{status} {body!r}"
            if status == 200 and body == expected:
                return None
        except OSError as error:
            last = repr(error)
        if time.monotonic() > deadline:
            return last
        time.sleep(1)


def reference_vars(app_dir: Path, wheel: str) -> dict[str, Any]:
    """bench/reference.yml's extra vars: the same app copy and the same Meinheld wheel as the suite's run."""
    return {"reference_app": str(app_dir), "reference_wheel": wheel}


def strategy_env(strategy: str) -> dict[str, str]:
    """The environment that selects ``strategy`` for ansible-playbook (nothing for Ansible's own linear one)."""
    if strategy == "linear":
        return {}
    if strategy != "mitogen":
        raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    import ansible_mitogen.plugins.strategy as mitogen_strategies  # installed by requirements/tooling.txt

    return {"ANSIBLE_STRATEGY_PLUGINS": mitogen_strategies.__path__[0], "ANSIBLE_STRATEGY": "mitogen_linear"}


def _playbook(
    step: str, playbook: Path, inventory: str, extra_vars: dict[str, Any], env: dict[str, str], log_file: Path
) -> dict[str, Any]:
    """Time one ansible-playbook run against the VM, and count its tasks and module runs (-vvv, for both playbooks)."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-vvv", "-i", inventory, str(playbook)]
    argv += ["-e", json.dumps(extra_vars)]
    run_env = {**os.environ, "ANSIBLE_CONFIG": str(paths.REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}
    started = time.monotonic()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=run_env,
        timeout=3600,
        check=False,
        cwd=paths.REPO,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    log_file.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{step}: ansible-playbook {playbook.name} exited {done.returncode}; see {log_file}")
    counts = {**recap(done.stdout), **work(done.stdout)}
    log(
        f"provision: {log_file.stem}: {seconds:.1f} s, changed={counts['changed']}, {counts['tasks']} tasks, "
        f"{counts['module_runs']} module runs"
    )
    return {"name": step, "seconds": round(seconds, 1), **counts}


def _sequence(which: str, strategy: str, wheel: str | None, logs: Path) -> dict[str, Any]:
    """A fresh VM, then the three steps of one playbook under one strategy; the VM is stopped at the end."""
    label = f"{which}-{strategy}"
    app_dir = logs / f"app-{label}"
    shutil.rmtree(app_dir, ignore_errors=True)
    shutil.copytree(paths.EXAMPLE_APP, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    if which == "suite":
        extra_vars = site_vars(app_dir, wheel)
    elif wheel:
        extra_vars = reference_vars(app_dir, wheel)
    else:
        return {"playbook": which, "strategy": strategy, "status": "not run: no controller-built Meinheld wheel"}
    lab = [sys.executable, "-m", "lab"]
    started = time.monotonic()
    up = subprocess.run(
        [*lab, "up", VM, "--dist", DIST, "--cpus", "2", "--memory", "2G"],
        capture_output=True,
        text=True,
        check=True,
        cwd=paths.REPO,
    )
    state = json.loads(up.stdout)
    outcome: dict[str, Any] = {
        "playbook": which,
        "strategy": strategy,
        "boot_s": round(time.monotonic() - started, 1),
        "steps": [],
    }
    env = strategy_env(strategy)
    playbook = PLAYBOOKS[which]
    log(f"provision: {label}: {playbook.relative_to(paths.REPO)} on a fresh VM")
    try:
        for step in STEPS:
            if step == "code-only deploy":
                main_py = app_dir / "main.py"
                main_py.write_text(main_py.read_text().replace(f'"{GREETING}"', f'"{GREETING}, deployed again"'))
            log_file = logs / f"{label}-{step.replace(' ', '-')}.log"
            outcome["steps"].append(_playbook(step, playbook, state["inventory"], extra_vars, env, log_file))
        answer = _await_greeting(f"http://127.0.0.1:{state['http_port']}/", f"{GREETING}, deployed again")
        if answer is not None:
            raise RuntimeError(f"{label}: after the code-only deploy the VM answered {answer}")
        outcome["steps"][-1]["verified"] = "serves the new code"
    finally:
        subprocess.run([*lab, "down", VM], check=False, capture_output=True, cwd=paths.REPO)
    return outcome


def verdicts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step's target against the suite's figure under each strategy that ran, with the reference's beside it.

    A step is met when it took at most TARGET_RATIO times the reference's in the same run (a step the reference did not
    run cannot be met), and a rerun also within RERUN_TARGET_S with changed=0.
    """
    by_key = {(r["playbook"], r["strategy"]): {s["name"]: s for s in r.get("steps", [])} for r in runs}
    found = []
    for strategy in STRATEGIES:
        suite = by_key.get(("suite", strategy))
        if suite is None:
            continue
        reference = by_key.get(("reference", strategy), {})
        for step in STEPS:
            if step not in suite:
                continue
            mine = suite[step]
            theirs = reference.get(step)
            ratio = round(mine["seconds"] / theirs["seconds"], 2) if theirs else None
            met = theirs is not None and mine["seconds"] <= TARGET_RATIO * theirs["seconds"]
            if step == "idempotent rerun":
                met = met and mine["seconds"] <= RERUN_TARGET_S and mine["changed"] == 0
            found.append(
                {
                    "strategy": strategy,
                    "step": step,
                    "target_ratio": TARGET_RATIO,
                    "target_s": RERUN_TARGET_S if step == "idempotent rerun" else None,
                    "seconds": mine["seconds"],
                    "reference_s": theirs["seconds"] if theirs else None,
                    "ratio": ratio,
                    "met": met,
                }
            )
    return found


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


def run(
    strategies: tuple[str, ...] = STRATEGIES, playbooks: tuple[str, ...] = ("suite", "reference")
) -> dict[str, Any]:
    """Run what can run; the result says what was measured, what was not, and why."""
    unknown = [s for s in strategies if s not in STRATEGIES] + [p for p in playbooks if p not in PLAYBOOKS]
    if unknown:
        raise ValueError(
            f"unknown strategy or playbook: {', '.join(unknown)} (strategies: {', '.join(STRATEGIES)}; "
            f"playbooks: {', '.join(PLAYBOOKS)})"
        )
    missing = missing_parts()
    if missing:
        return {"status": "not run", "reason": f"{', '.join(missing)} not in this checkout yet"}
    logs = paths.CACHE / "provision"
    logs.mkdir(parents=True, exist_ok=True)
    load_start = machine.loadavg()
    subprocess.run(
        [sys.executable, "-m", "lab", "image", "build", DIST], check=True, stdout=subprocess.DEVNULL, cwd=paths.REPO
    )
    wheel = _wheel()
    runs = [_sequence(which, strategy, wheel, logs) for strategy in strategies for which in playbooks]
    return {
        "status": "ran",
        "date": machine.describe()["date"],
        "dist": DIST,
        "vm": "2 vCPUs, 2 GiB",
        "meinheld": "controller-built wheel" if wheel else "compiled in the guest",
        "accelerator": accelerator(),
        "loadavg_start": load_start,
        "loadavg_end": machine.loadavg(),
        "runs": runs,
        "image_boot": _image_boot(),
        "targets": verdicts(runs),
    }
