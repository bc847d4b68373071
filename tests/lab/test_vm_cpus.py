"""Boot real lab VMs (QEMU, TCG here) with 1 and with 2 vCPUs, one at a time, and check what the guest sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.vm


def lab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module", params=[1, 2], ids=["1vcpu", "2vcpu"])
def booted(request: pytest.FixtureRequest):
    name = f"itest-{request.param}cpu-{os.getpid()}"
    up = lab("up", name, "--dist", "debian12", "--cpus", str(request.param), "--memory", "1G")
    try:
        assert up.returncode == 0, up.stderr
        yield request.param, name, json.loads(up.stdout)
    finally:
        down = lab("down", name)
        assert down.returncode == 0, down.stderr


def test_guest_sees_the_vcpus_it_was_given(booted) -> None:
    cpus, name, state = booted
    assert state["system_state"] in ("running", "degraded")
    out = lab("ssh", name, "--", "nproc", timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == cpus


def test_ports_listen_on_loopback_only(booted) -> None:
    _, _, state = booted
    ss = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    listeners = [line.split()[3] for line in ss.splitlines()]
    for port in (state["ssh_port"], state["http_port"]):
        bound = [addr for addr in listeners if addr.rsplit(":", 1)[1] == str(port)]
        assert bound == [f"127.0.0.1:{port}"]


def test_inventory_reaches_the_vm_with_ansible(booted) -> None:
    _, name, state = booted
    res = subprocess.run(
        [str(REPO / ".venv/bin/ansible"), "-i", state["inventory"], name, "-m", "ansible.builtin.ping"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pong" in res.stdout
