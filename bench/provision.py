"""Provisioning speed on a lab VM (placeholder until the lab, roles and Packer land)."""

from __future__ import annotations

from typing import Any


def run() -> dict[str, Any]:
    """Not implemented yet."""
    return {"status": "not run", "reason": "not implemented yet"}
