"""Gunicorn config for the slow-client tests: 2 s for a header block, 2 s of stall in a body, through the worker's loop.

The suite's own gunicorn_conf.py hands HEADER_TIMEOUT and BODY_TIMEOUT over the same way, from post_worker_init.
"""


def post_worker_init(worker: object) -> None:
    """Set the request timeouts in the worker's loop, if this Meinheld has them (stock 1.0.2 does not)."""
    from meinheld import server

    if hasattr(server, "set_request_timeouts"):
        server.set_request_timeouts(2, 2)
