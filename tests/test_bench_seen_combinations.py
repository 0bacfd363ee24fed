"""benchmarks/seen_combinations.py: answers split by whether their combination was trained."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from seen_combinations import by_seen  # noqa: E402


def test_split_by_trained_combination() -> None:
    combo_of = {"a": "counting/up/1/3", "b": "counting/up/1/4", "c": "counting/up/2/4", "d": "facts/x"}
    rows = [
        {"id": "a", "skill": "counting", "exact": False},
        {"id": "b", "skill": "counting", "exact": True},
        {"id": "c", "skill": "counting", "exact": True},
        {"id": "d", "skill": "facts_heldout", "exact": False},  # left out: no model can know it
    ]
    got = by_seen(rows, combo_of, trained={"counting/up/1/4", "counting/up/2/4"})
    assert got == {
        "counting": {
            "trained": {"right": 2, "questions": 2, "accuracy": 1.0},
            "unseen": {"right": 0, "questions": 1, "accuracy": 0.0},
        }
    }
