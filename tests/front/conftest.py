"""The front tier shares the verify suite's host fixture (tests/verify/conftest.py): one host, re-converged."""

from tests.verify.conftest import site  # noqa: F401 - a fixture, found by name
