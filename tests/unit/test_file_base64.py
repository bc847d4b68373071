"""plugins/lookup/file_base64.py: a ready-made wheel's bytes, shipped in the server role's one host_files run."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError

from tests.conftest import REPO, load_module

LOOKUP = load_module(REPO / "plugins" / "lookup" / "file_base64.py")


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)) * 4, b"PK\x03\x04\xff\xfe"])
def test_the_text_decodes_to_the_file_bytes(tmp_path: Path, data: bytes) -> None:
    wheel = tmp_path / "meinheld.whl"
    wheel.write_bytes(data)
    assert [base64.b64decode(text) for text in LOOKUP.LookupModule().run([str(wheel), wheel])] == [data, data]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.whl"
    with pytest.raises(AnsibleLookupError, match=f"cannot read {missing}"):
        LOOKUP.LookupModule().run([str(missing)])


def test_a_file_too_large_to_ship_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LOOKUP, "MAX_BYTES", 8)
    big = tmp_path / "disk.img"
    big.write_bytes(b"x" * 9)
    with pytest.raises(AnsibleLookupError, match="too large to ship"):
        LOOKUP.LookupModule().run([str(big)])
