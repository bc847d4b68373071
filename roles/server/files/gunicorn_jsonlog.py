"""One JSON object per request, one per line (ACCESS_LOG_FORMAT=json): what a log shipper reads without a regex.

Why not Gunicorn's access_log_format with a JSON-looking template: its atoms escape only the double quote, so a path
with a backslash or a percent-encoded newline (PATH_INFO is decoded) would break the line or forge a second one. Here
every string goes through json's own escaping, and each line is written whole with one write(), so lines of workers
sharing the journal's stream or a file opened for appending do not interleave.

gunicorn_conf.py loads this file (from its own directory) and wraps each worker's app with log_requests.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def open_log(target: str) -> int:
    """The descriptor lines go to: "-" is the service's stdout (the journal), anything else a file opened to append."""
    if target == "-":
        return 1
    return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def log_requests(app: Callable[..., Any], fd: int, name: str) -> Callable[..., Any]:
    """Wrap APP so each request writes a line to FD once the app returned (or raised: status 500).

    status is 0 for an app that returns before it starts its answer (a streaming body starts it later).

    The fields: time (UTC, ISO 8601, milliseconds), app (NAME), method, path, query, status, duration (seconds in the
    app, as the metrics' histogram counts it) and client (REMOTE_ADDR after FORWARDED_ALLOW_IPS: the address the
    balancer saw). A line that cannot be written is dropped: the request it describes was served.
    """
    clock, now, write = time.perf_counter_ns, time.time, os.write
    quote = json.encoder.encode_basestring_ascii  # json.dumps of one str, in C: escapes ", \\, controls, non-ASCII
    prefix = '{"time": "'
    app_field = '", "app": ' + quote(name) + ', "method": '
    second = [-1, ""]  # the last whole second and its text: strftime once a second, not per request

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status = 0

        def respond(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            nonlocal status
            code = line[:3]
            status = int(code) if code.isdigit() else 0
            return start_response(line, headers, exc_info)

        begin = clock()
        try:
            return app(environ, respond)
        except BaseException:
            status = status or 500  # what the server answers for it
            raise
        finally:
            elapsed, stamp = clock() - begin, now()
            whole = int(stamp)
            if whole != second[0]:
                second[:] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            get = environ.get
            line = (
                f"{prefix}{second[1]}.{int(stamp * 1000) % 1000:03d}Z{app_field}{quote(get('REQUEST_METHOD', ''))}"
                f', "path": {quote(get("PATH_INFO", ""))}, "query": {quote(get("QUERY_STRING", ""))}'
                f', "status": {status}, "duration": {elapsed / 1e9:.6f}, "client": {quote(get("REMOTE_ADDR", ""))}}}\n'
            )
            try:  # noqa: SIM105 (per request: a plain try costs less than contextlib.suppress)
                write(fd, line.encode())
            except OSError:
                pass

    return logged
