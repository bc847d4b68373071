"""A load generator for the reliability tests: client threads on the controller, one new connection per request.

wrk reports throughput; these tests need every single outcome (which request failed, which release answered), so
each thread records its own. A new connection per request means a restart or a reload cannot hide behind a kept-alive
connection: every request goes through the listening socket the service must keep accepting on.
"""

from __future__ import annotations

import collections
import http.client
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Outcome:
    """What the load saw: counts per status, the errors, and which bodies answered."""

    sent: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    bodies: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Requests without an answer (connection refused, reset, timeout) plus answers that are not 2xx."""
        return len(self.errors) + sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def summary(self) -> str:
        """One line for the report and for failure messages."""
        return (
            f"{self.sent} requests in {self.seconds:.0f}s, {self.failed} failed, statuses {dict(self.statuses)}, "
            f"errors {collections.Counter(self.errors).most_common(3)}"
        )


class Load:
    """Send GET requests to a URL from `clients` threads until stopped; use as a context manager."""

    def __init__(self, url: str, clients: int = 4, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.clients, self.timeout = clients, timeout
        self.outcome = Outcome()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        """A new connection to the URL's host (a subclass may speak TLS)."""
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _one(self) -> tuple[int | None, str]:
        connection = self._connection()
        try:
            connection.request("GET", self.path, headers={"Connection": "close"})
            response = connection.getresponse()
            return response.status, self._answer(response, response.read().decode(errors="replace"))
        except (OSError, http.client.HTTPException) as error:
            return None, f"{type(error).__name__}: {error}"
        finally:
            connection.close()

    def _answer(self, response: http.client.HTTPResponse, body: str) -> str:
        """What the outcome records of an answer (its body here; a subclass may add a header)."""
        return body

    def _client(self) -> None:
        # A new connection per request leaves one TIME_WAIT socket per request on the controller for a minute: past
        # ~28,000 in a minute (the ephemeral port range) connect() slows down, so a case that follows a busy one sends
        # fewer requests. That throttle also keeps the lab's user-mode network (slirp4netns) below the connection
        # rate at which it was seen to spin: the counts show the controller's limit, the failures the service's.
        while not self._stop.is_set():
            status, body = self._one()
            with self._lock:
                self.outcome.sent += 1
                if status is None:
                    self.outcome.errors.append(body)
                else:
                    self.outcome.statuses[status] += 1
                    self.outcome.bodies[body.strip()[:80]] += 1

    def __enter__(self) -> Load:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.outcome.seconds = time.monotonic() - self._started
