"""plugins/lookup/file_sha256.py: the wheel's hash on the controller, which the host's copy is compared with."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError

from tests.conftest import REPO, load_module

LOOKUP = load_module(REPO / "plugins" / "lookup" / "file_sha256.py")


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 7])  # empty, one byte, past one read block
def test_the_hash_is_what_stat_and_pip_compute(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wheel = tmp_path / "meinheld.whl"
    wheel.write_bytes(data)
    assert LOOKUP.LookupModule().run([str(wheel), wheel]) == [hashlib.sha256(data).hexdigest()] * 2


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.whl"
    with pytest.raises(AnsibleLookupError, match=f"cannot read {missing}"):
        LOOKUP.LookupModule().run([str(missing)])
