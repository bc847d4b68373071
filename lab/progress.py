"""Progress lines for long steps, so `make demo` never sits silent for minutes."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def step(message: str) -> None:
    """Print one timestamped progress line on stderr (stdout stays parseable for callers)."""
    print(f"[lab {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
