"""What every AWS test shares: moto's server on loopback, recording each call, and ansible-playbook pointed at it."""

from __future__ import annotations

import base64
import collections
import json
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO

BIN = REPO / ".venv" / "bin"
REGION = "us-east-1"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """moto's server on a free loopback port, recording every request to a file (one server per test module)."""
    recording = tmp_path_factory.mktemp("moto") / "recording.jsonl"
    port = _free_port()
    # A certificate requested from moto's ACM stays PENDING_VALIDATION for MOTO_ACM_VALIDATION_WAIT seconds (60 by
    # default), then is ISSUED: an hour keeps a pending one pending for a whole run.
    env = {
        **os.environ,
        "MOTO_ENABLE_RECORDING": "1",
        "MOTO_RECORDER_FILEPATH": str(recording),
        "MOTO_ACM_VALIDATION_WAIT": "3600",
    }
    log = (recording.parent / "moto.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url, recording
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def aws_env(url: str) -> dict[str, str]:
    """The environment that points boto3 (and so the amazon.aws and community.aws modules) at moto."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def client(url: str, service: str) -> object:
    """A boto3 client of SERVICE talking to moto."""
    return boto3.client(service, endpoint_url=url, region_name=REGION, **KEYS)


def calls(recording: Path) -> collections.Counter[str]:
    """The AWS API calls moto received, by action name (query protocol's Action=, or the JSON protocols' target)."""
    seen: collections.Counter[str] = collections.Counter()
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        action = urllib.parse.parse_qs(body).get("Action", [""])[0]
        target = {k.lower(): v for k, v in entry.get("headers", {}).items()}.get("x-amz-target", "")
        seen[action or target.rsplit(".", 1)[-1] or entry.get("method", "?")] += 1
    return seen


def playbook(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook ARGS with this checkout's ansible.cfg and its AWS calls going to moto at URL."""
    env = {**os.environ, **aws_env(url), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
