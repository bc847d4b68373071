"""Lookup plugin: the bytes of files on the controller, base64-encoded.

Why a plugin: the server role ships the ready-made Meinheld wheel in the same host_files run as the stack's other
files (one module run instead of a stat and copy's two on a first converge, none but that run on a rerun), and
host_files takes bytes as base64. The builtin `file` lookup returns text and refuses a binary file; Jinja has no
filter that reads one.
"""

from __future__ import annotations

import base64
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: file_base64
short_description: The content of files on the controller, base64-encoded
description:
  - Reads each file on the controller as bytes and returns it base64-encoded (standard alphabet, padded), what
    wsgiops.meinheld_gunicorn.host_files takes as C(content_base64).
options:
  _terms:
    description: Paths of files on the controller.
    required: true
author: gunicorn-suite
"""

EXAMPLES = r"""
- name: Ship a wheel with the other files
  wsgiops.meinheld_gunicorn.host_files:
    files:
      - dest: /opt/wheels/meinheld.whl
        content_base64: "{{ lookup('wsgiops.meinheld_gunicorn.file_base64', '/tmp/meinheld.whl') }}"
        owner: root
        group: root
        mode: "0644"
"""

RETURN = r"""
_raw:
  description: One base64 text per path, in order.
  type: list
  elements: str
"""

# A wheel is a few hundred KiB; a module argument far larger than that is a mistake (a path naming an image).
MAX_BYTES = 64 << 20


def base64_of(path: str) -> str:
    """The file's bytes as base64 text; refused above MAX_BYTES, since the text travels as a module argument."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise AnsibleLookupError(f"file_base64: cannot read {path}: {error.strerror}") from error
    if len(data) > MAX_BYTES:
        raise AnsibleLookupError(f"file_base64: {path} is larger than {MAX_BYTES} bytes, too large to ship this way")
    return base64.b64encode(data).decode("ascii")


class LookupModule(LookupBase):
    """lookup('wsgiops.meinheld_gunicorn.file_base64', PATH, ...)."""

    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        """One base64 text per term, in order (lookup() joins one, query() keeps the list)."""
        return [base64_of(str(term)) for term in terms]
