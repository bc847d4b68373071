"""Lookup plugin: the sha256 of files on the controller.

Why a plugin: the server role pins the ready-made Meinheld wheel by its sha256 in the stack's hash-checked
requirements, and compares it with the copy on the host to skip an unchanged copy. Reading the hash on the controller
costs no module run; Jinja has no filter that hashes a binary file, and a `pipe` lookup of sha256sum would not run
on a macOS controller.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: file_sha256
short_description: The sha256 (hex) of files on the controller
description:
  - Reads each file on the controller and returns its sha256 as lower-case hex, what ansible.builtin.stat reports with
    checksum_algorithm=sha256 and pip's --hash=sha256 expects.
options:
  _terms:
    description: Paths of files on the controller.
    required: true
author: gunicorn-suite
"""

EXAMPLES = r"""
- name: Pin the wheel
  ansible.builtin.debug:
    msg: "meinheld.whl --hash=sha256:{{ lookup('wsgiops.meinheld_gunicorn.file_sha256', '/tmp/meinheld.whl') }}"
"""

RETURN = r"""
_raw:
  description: One sha256 per path, in order.
  type: list
  elements: str
"""


def sha256_of(path: str) -> str:
    """The file's sha256, read in 1 MiB blocks (a wheel is a few hundred KiB, a path may name something larger)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise AnsibleLookupError(f"file_sha256: cannot read {path}: {error.strerror}") from error
    return digest.hexdigest()


class LookupModule(LookupBase):
    """lookup('wsgiops.meinheld_gunicorn.file_sha256', PATH, ...)."""

    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        """One hash per term, in order (a lookup returns a list; lookup() joins one, query() keeps the list)."""
        return [sha256_of(str(term)) for term in terms]
