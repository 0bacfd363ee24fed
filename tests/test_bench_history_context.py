"""benchmarks/history_context.py: the same question alone and after earlier turns."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from history_context import contexts, summarise  # noqa: E402

from flowomni.data.manifest import Item  # noqa: E402


def test_contexts_ask_each_question_four_ways() -> None:
    items = [Item(f"t{i}", f"q{i}", f"a{i}") for i in range(10)]
    got = contexts(items, 5)
    assert got["alone"] is None
    assert got["after a spoken turn"] == [("", "a2")] and got["after a written turn"] == [("q2", "a2")]
    assert got["after the same question, spoken"] == [("", "a5")]


def test_summary_pairs_every_context_with_the_question_alone() -> None:
    right = {"alone": [True, True, False, False], "after a spoken turn": [True, False, False, False]}
    got = summarise(right)
    assert got["alone"]["accuracy"] == 0.5 and "minus_alone" not in got["alone"]
    assert got["after a spoken turn"]["right"] == 1
    assert got["after a spoken turn"]["minus_alone"]["difference"] == -0.25
