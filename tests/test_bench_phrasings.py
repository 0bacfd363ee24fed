"""benchmarks/phrasings.py: the same combinations asked in training and in held-out phrasings."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from phrasings import answer_mode, by_phrasing, probes  # noqa: E402

from flowomni.data.skills import HELD_OUT_FACTS, assign_splits  # noqa: E402


def test_probes_pair_one_combination_with_both_phrasings() -> None:
    asked = probes(per_skill=4, seed=1)
    pools = assign_splits()
    train_t = {s: {t.text for ts in g.values() for t in ts} for s, g in pools.templates["train"].items()}
    test_t = {s: {t.text for ts in g.values() for t in ts} for s, g in pools.templates["test"].items()}
    assert len(asked) == 2 * 4 * len([s for s in pools.combos["train"] if s != HELD_OUT_FACTS])
    for (p1, a), (p2, b) in zip(asked[::2], asked[1::2]):
        assert (p1, p2) == ("training phrasing", "held-out phrasing")
        assert a.combo == b.combo and a.skill == b.skill != HELD_OUT_FACTS
        assert a.template in train_t[a.skill] and b.template in test_t[b.skill]
        assert b.template not in train_t[b.skill]


def test_accuracy_per_skill_and_phrasing() -> None:
    rows = [
        {"phrasing": "training phrasing", "skill": "comparison", "exact": True},
        {"phrasing": "held-out phrasing", "skill": "comparison", "exact": False},
        {"phrasing": "training phrasing", "skill": "counting", "exact": True},
        {"phrasing": "held-out phrasing", "skill": "counting", "exact": True},
    ]
    got = by_phrasing(rows)
    assert got["comparison"]["training phrasing"]["accuracy"] == 1.0
    assert got["comparison"]["held-out phrasing"]["accuracy"] == 0.0
    assert got["all"]["held-out phrasing"]["questions"] == 2
    assert got["all"]["held-out phrasing"]["accuracy"] == 0.5


def test_answer_mode_names_what_is_asked() -> None:
    modes = {answer_mode(qa) for _, qa in probes(per_skill=30, seed=0) if qa.skill == "comparison"}
    assert modes <= {"bigger", "smaller", "is_bigger", "is_smaller"} and len(modes) >= 3
