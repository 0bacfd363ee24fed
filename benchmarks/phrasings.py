"""Does the model fail the test's phrasings, or the skill itself? Written questions, asked twice.

For every skill, the same trained combinations (operands, days, phrases) are asked in a
training phrasing (templates, fillers and wrappers of the train split) and in a held-out one
(those of the test split), written, text answers only. A skill answered well in training
phrasings and badly in held-out ones is a phrasing failure: more varied phrasings would fix it.
A skill answered badly in both was never learned: the backbone, not the corpus's phrasings, is
the limit.

    python benchmarks/phrasings.py --checkpoint models/flowomni-tiny --per-skill 100 --json
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.skills import HELD_OUT_FACTS, QA, SKILLS, assign_splits, render  # noqa: E402
from flowomni.evaluation.intervals import accuracy_interval  # noqa: E402
from flowomni.evaluation.text import exact_match  # noqa: E402

from common import emit, tally, written_answers  # noqa: E402

PHRASINGS = {"training phrasing": "train", "held-out phrasing": "test"}


def probes(per_skill: int, seed: int) -> list[tuple[str, QA]]:
    """(phrasing, question) pairs: each drawn combination asked once in each phrasing."""
    pools = assign_splits()
    rng = random.Random(seed)
    out = []
    for skill, groups in sorted(pools.combos["train"].items()):
        if skill == HELD_OUT_FACTS:
            continue
        combos = [c for cs in groups.values() for c in cs]
        for k in range(per_skill):
            combo = rng.choice(combos)
            for name, split in PHRASINGS.items():
                out.append((name, render(pools, split, skill, combo, random.Random(f"{seed}/{skill}/{k}/{split}"))))
    return out


def answer_mode(qa: QA) -> str:
    """What the question asks for ("bigger", "is_smaller", "after", ...): its template's mode."""
    return next(t.mode for ts in SKILLS[qa.skill].templates.values() for t in ts if t.text == qa.template) or "-"


def by_phrasing(rows: list[dict[str, Any]], key: str = "skill") -> dict[str, dict[str, Any]]:
    """row[key] (and "all") -> phrasing -> right, questions, accuracy and its 95 % interval."""
    out: dict[str, dict[str, Any]] = {}
    for skill in sorted({r[key] for r in rows} | {"all"}):
        mine = [r for r in rows if skill in (r[key], "all")]
        for phrasing, counts in tally(mine, lambda r: r["phrasing"]).items():
            right = [r["exact"] for r in mine if r["phrasing"] == phrasing]
            out.setdefault(skill, {})[phrasing] = {**counts, "accuracy_ci95": accuracy_interval(right)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--per-skill", type=int, default=100, help="combinations asked per skill (each in both phrasings)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flowomni.inference.engine import Engine

    asked = probes(args.per_skill, args.seed)
    engine = Engine.load(args.checkpoint)
    texts = written_answers(engine, [qa.question for _, qa in asked], args.batch_size)
    rows = [
        {
            "phrasing": p,
            "skill": qa.skill,
            "mode": f"{qa.skill}/{answer_mode(qa)}",
            "question": qa.question,
            "reference": qa.answer,
            "text": t,
            "exact": exact_match(qa.answer, t),
        }
        for (p, qa), t in zip(asked, texts)
    ]
    wrong = [r for r in rows if not r["exact"]]
    result = {"checkpoint": args.checkpoint, "skills": by_phrasing(rows), "modes": by_phrasing(rows, "mode")}
    emit({**result, "wrong_examples": wrong[:12]}, args.json)


if __name__ == "__main__":
    main()
