"""Unit tests of the fuzzer's input generator (tests/meinheld_fuzz/inputs.py): deterministic, well-formed plans."""

from __future__ import annotations

import collections

from tests.meinheld_fuzz import inputs


def test_an_input_depends_on_its_seed_and_index_only() -> None:
    """A failure report's seed and index regenerate the very bytes and writes, whatever ran before."""
    later_first = [inputs.make(7, i) for i in (41, 40, 3)]
    assert [inputs.make(7, i) for i in (41, 40, 3)] == later_first
    assert inputs.make(7, 40) != inputs.make(8, 40)


def test_writes_cover_the_bytes_in_order_with_a_pause_each() -> None:
    for i in range(400):
        item = inputs.make(1, i)
        assert list(item.cuts) == sorted(set(item.cuts)) and all(0 < c < len(item.data) for c in item.cuts)
        writes = item.writes()
        assert b"".join(chunk for chunk, _ in writes) == item.data
        assert len(writes) == len(item.cuts) + 1 and all(0 <= p < 0.1 for _, p in writes)
        assert len(item.data) <= inputs.MAX_INPUT


def test_every_generator_is_drawn() -> None:
    """Grammar, mutated matrix cases, mutated grammar and pipelines all occur in a few hundred inputs."""
    kinds = collections.Counter(inputs.make(2, i).kind.split()[0] for i in range(400))
    assert set(kinds) == {"grammar", "grammar+mutated", "mutated", "pipelined"}, kinds
    assert any(inputs.make(2, i).half_close is False for i in range(400))


def test_reproducer_names_seed_index_and_bytes() -> None:
    item = inputs.make(3, 5)
    text = item.reproducer()
    assert text.startswith("FUZZ_SEED=3 input 5 ") and repr(item.data[:20])[2:-1] in text


def test_rounds_are_mostly_one_input_and_replayable() -> None:
    widths = [inputs.round_width(4, i) for i in range(300)]
    assert widths == [inputs.round_width(4, i) for i in range(300)]
    assert set(widths) == set(inputs.ROUND_WIDTHS) and widths.count(1) > len(widths) / 2
