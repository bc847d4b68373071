"""Gunicorn config for the watchdog test: post_worker_init wraps the worker's watchdog, as a memory-limit hook would.

Each call of the wrapper appends a monotonic timestamp to $WATCHDOG_LOG, then runs the worker's own watchdog (the
heartbeat the arbiter's --timeout watches), so the test can tell how often Meinheld's loop calls it.
"""

import os
import time


def post_worker_init(worker: object) -> None:
    """Replace worker.watchdog before run() hands it to the C loop, keeping the original's heartbeat."""
    original = worker.watchdog

    def watchdog() -> None:
        with open(os.environ["WATCHDOG_LOG"], "a") as f:
            f.write(f"{time.monotonic():.3f}\n")
        original()

    worker.watchdog = watchdog
