"""Gunicorn config for the boot-stop test: every worker after the first spends 3 s in post_fork.

post_fork runs in the new worker before its init_signals(), so a stop sent during those 3 s reaches it while it still
has the arbiter's handlers: the window a real worker has while it boots, made wide enough to hit every time.
"""

import time


def post_fork(server: object, worker: object) -> None:
    """Hold workers after the first in the window between fork and the worker's own signal handlers."""
    if worker.age > 1:
        time.sleep(3)
