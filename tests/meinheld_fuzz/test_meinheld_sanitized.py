"""The patched parser under AddressSanitizer + UBSan: the case matrix, then ``FUZZ_SECONDS`` of fuzzing, then a GET.

One server for the whole tier, and its first worker must answer everything: a sanitizer report aborts the worker
(and leaves a report), a crash restarts it, a hang leaves a connection open past HANG_SECONDS; each fails the test
that caused it. The fuzzer's inputs are tests/meinheld_fuzz/inputs.py's; a failure names their seed and indexes
(``FUZZ_SEED`` replays a run).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import time

import pytest

from tests.meinheld.parser_cases import CASES, SEQUENCES, Case, check_answer, exchange
from tests.meinheld_fuzz import inputs
from tests.meinheld_fuzz.sanitized import SanitizedServer, get_ok, send

pytestmark = pytest.mark.meinheld

# A few seconds past the server's 2 s header/body/keep-alive timeouts: an input that leaves it waiting is closed by
# then (a 408 or a plain close), so no close by this bound is a hang.
HANG_SECONDS = 8.0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix_under_sanitizers(sanitized: SanitizedServer, case: Case) -> None:
    """Every case answers as in the matrix tier, and the worker is the same one with no report afterwards."""
    check_answer(case, exchange(sanitized.port, case.raw, cuts=case.cuts))
    assert not (problems := sanitized.problems()), f"after {case.id} ({case.raw[:200]!r}):\n{problems}"


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_sequences_under_sanitizers(sanitized: SanitizedServer, name: str) -> None:
    """The matrix's sequences: each case answered in order, as in the matrix tier, by the same worker."""
    for case in SEQUENCES[name]:
        check_answer(case, exchange(sanitized.port, case.raw, cuts=case.cuts))
        assert not (problems := sanitized.problems()), f"after {case.id} of {name}:\n{problems}"


def test_fuzz_parser(sanitized: SanitizedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Inputs for FUZZ_SECONDS (default 30): each answered with a status line or closed in time, worker unharmed.

    Inputs go in rounds, most of one input, some of 2-4 on connections of their own at once (the worker's loop
    interleaves them: request queues, deferred writes, timers of several clients); the worker is checked after each.
    """
    budget = float(os.environ.get("FUZZ_SECONDS", "30"))
    # a fresh seed per run explores new inputs; FUZZ_SEED replays one (each input depends on its seed and index only)
    seed = int(os.environ.get("FUZZ_SEED") or time.time_ns() % 1_000_000_007)
    statuses: collections.Counter[int] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    start = time.monotonic()
    index = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(inputs.ROUND_WIDTHS)) as pool:
        while time.monotonic() - start < budget:
            items = [inputs.make(seed, index + k) for k in range(inputs.round_width(seed, index))]
            outcomes = list(pool.map(lambda item: send(sanitized.port, item, HANG_SECONDS), items))
            problems = sanitized.problems()
            pairs = zip(items, outcomes, strict=True)
            errors = [f"{item.reproducer()}\n{outcome.error}" for item, outcome in pairs if outcome.error]
            if errors or problems:
                sent = "\n".join(item.reproducer() for item in items)
                pytest.fail(f"round of {len(items)} at once:\n{sent}\n" + "\n".join([*errors, problems]))
            statuses.update(outcome.status for outcome in outcomes)
            kinds.update(item.kind.split()[0] for item in items)
            kinds["concurrent rounds"] += len(items) > 1
            index += len(items)
    took = time.monotonic() - start
    with capsys.disabled():
        seen = ", ".join(f"{s or 'closed'}: {n}" for s, n in sorted(statuses.items()))
        print(f"\nfuzz: seed {seed}, {index} inputs in {took:.0f} s ({dict(sorted(kinds.items()))}); statuses {seen}")
    assert index > 0


def test_plain_get_after_fuzzing(sanitized: SanitizedServer) -> None:
    """The same worker still serves a plain GET, and no sanitizer wrote a report in the whole run."""
    assert get_ok(sanitized) == (200, b"Hello World from Meinheld\n"), sanitized.gunicorn.log()[-4000:]
    assert not (problems := sanitized.problems()), problems
