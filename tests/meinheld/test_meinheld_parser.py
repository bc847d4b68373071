"""The request-parsing matrix (parser_cases.CASES) against the patched worker and against Gunicorn's sync worker.

Each case is one fresh connection to one server per module (the cases are independent and a server start costs more
than the whole matrix). A refusal must carry the case's status and ``Connection: close`` and be followed by the end of
the connection; an acceptance must echo the body the case framed. The sync worker is the reference: it must answer
every case as the patched worker does, except where ``GUNICORN_DIFFERENCES`` says otherwise, so that table stays the
exact list of where we are stricter or laxer than Gunicorn.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meinheld.harness import Gunicorn
from tests.meinheld.parser_cases import (
    CASES,
    GUNICORN_DIFFERENCES,
    SEQUENCES,
    Case,
    check_answer,
    exchange,
    limit_cases,
)

pytestmark = pytest.mark.meinheld

# The parser is C shared by every interpreter: the oldest and the newest supported CPython are enough.
PATCHED = [pytest.param(("patched", m), id=f"patched-{m}") for m in ("3.10", "3.13")]
REFERENCE = [pytest.param(("patched", "3.11"), id="gunicorn-sync-3.11")]
IDS = [c.id for c in CASES]
# Limits other than Gunicorn's defaults, set on its command line: they must reach the worker's parser.
LIMITS = {"--limit-request-line": 300, "--limit-request-fields": 12, "--limit-request-field_size": 500}
LIMIT_CASES = limit_cases(*LIMITS.values())


def _server(stack: object, tmp_path_factory: pytest.TempPathFactory, *options: str) -> Iterator[Gunicorn]:
    """One server for a module's cases, stopped (with its workers) at the end."""
    server = Gunicorn(stack, tmp_path_factory.mktemp("parser") / "gunicorn.log", *options)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def meinheld(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The patched worker with Gunicorn's default request limits."""
    yield from _server(stack, tmp_path_factory)


@pytest.fixture(scope="module")
def limited(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The patched worker with LIMITS on Gunicorn's command line."""
    yield from _server(stack, tmp_path_factory, *(str(part) for item in LIMITS.items() for part in item))


@pytest.fixture(scope="module")
def sync(stack: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """Gunicorn's own sync worker on the same venv (a later -k wins over the harness's)."""
    yield from _server(stack, tmp_path_factory, "-k", "sync")


def test_case_ids_are_unique() -> None:
    """Duplicate ids would hide a case behind another one in reports and in the difference table."""
    assert len(IDS) == len(set(IDS))
    assert set(GUNICORN_DIFFERENCES) <= set(IDS)


@pytest.mark.parametrize("stack", PATCHED, indirect=True, scope="module")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_meinheld_answers_as_the_rfc_says(stack: object, meinheld: Gunicorn, case: Case) -> None:
    """The case's status; a refusal closes the connection after one answer, an acceptance echoes the body."""
    check_answer(case, exchange(meinheld.port, case.raw, cuts=case.cuts))
    assert meinheld.alive() and "SIGSEGV" not in meinheld.log(), meinheld.log()


@pytest.mark.parametrize("stack", PATCHED[-1:], indirect=True, scope="module")
@pytest.mark.parametrize("case", LIMIT_CASES, ids=[c.id for c in LIMIT_CASES])
def test_configured_request_limits_reach_the_worker(stack: object, limited: Gunicorn, case: Case) -> None:
    """Gunicorn's limit_request_* settings, not fixed numbers, bound what the worker reads."""
    answer = exchange(limited.port, case.raw)
    assert answer.status == case.status, f"{case.id}: got {answer.status}, head {answer.head[:200]!r}"


@pytest.mark.parametrize("stack", PATCHED, indirect=True, scope="module")
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_meinheld_answers_the_request_after_a_refusal(stack: object, meinheld: Gunicorn, name: str) -> None:
    """The cases of a sequence in order, each on a fresh connection: a refusal leaves nothing behind for the next."""
    for case in SEQUENCES[name]:
        check_answer(case, exchange(meinheld.port, case.raw, cuts=case.cuts))


@pytest.mark.parametrize("stack", REFERENCE, indirect=True, scope="module")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gunicorn_sync_differs_only_where_listed(stack: object, sync: Gunicorn, case: Case) -> None:
    """Gunicorn's sync worker answers the case's status, or the one the difference table names for it."""
    expected = GUNICORN_DIFFERENCES.get(case.id, (case.status, "same"))[0]
    answer = exchange(sync.port, case.raw, timeout=2.0, cuts=case.cuts)
    assert answer.status == expected, f"{case.id}: Gunicorn answered {answer.status}, the table says {expected}"


def test_matrix_is_importable_without_a_server() -> None:
    """The matrix module needs nothing but the standard library (the fuzz target and the unit gate import it)."""
    assert all(isinstance(c.raw, bytes) and c.status in {200, 400, 413, 414, 431, 501, 505} for c in CASES)
