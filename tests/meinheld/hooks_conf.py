"""Gunicorn config for the hooks test: pre_request and post_request append one line each to $HOOKS_LOG."""

import os


def pre_request(worker: object, req: object) -> None:
    """Record that Gunicorn's pre_request hook ran, with what it saw of the request."""
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"pre {req.method} {req.path}\n")


def post_request(worker: object, req: object, environ: dict, resp: object) -> None:
    """Record that the post_request hook ran after the response, with its status code."""
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"post {req.method} {req.path} {resp.status_code}\n")
