"""Counting: does the model fail the test's phrasings, or the test's ranges?

The corpus as built at commit e65e990 held out both phrasings and counting ranges ("count from
one to three" never trained; "from one to four" did); today's trains every range, so the probe
means something on that commit's manifests (here a copy in data/spoken_qa_v1) and a model
trained on them (models/flowomni-tiny at e65e990, here runs/flowomni_tiny_previous). This asks
the test split's written counting questions twice: as they are (held-out phrasing, held-out
range), and with their numbers swapped for ranges that training does use, in the same direction
(held-out phrasing, training range). Text answers only. If the second set is answered far
better, the backbone learned which ranges exist, not where to stop counting.

    python benchmarks/counting_ranges.py --checkpoint runs/flowomni_tiny_previous \
        --test data/spoken_qa_v1/test.jsonl \
        --train data/spoken_qa_v1/train.jsonl data/spoken_qa_v1/train_text.jsonl --json
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.facts import number_words  # noqa: E402
from flowomni.data.manifest import Item, read_manifest  # noqa: E402
from flowomni.data.skills import count_answer  # noqa: E402
from flowomni.evaluation.text import exact_match, normalize  # noqa: E402

from common import emit, written_answers  # noqa: E402


def counting_items(path: str) -> list[Item]:
    return [it for it in read_manifest(path)[0] if it.meta.get("skill") == "counting"]


def parse(combo: str) -> tuple[str, int, int]:
    """ "counting/up/1/4" -> ("up", 1, 4)."""
    _, direction, a, b = combo.split("/")
    return direction, int(a), int(b)


def swap_numbers(question: str, old: tuple[int, int], new: tuple[int, int]) -> str:
    """The question with its two number words replaced (whole words, both at once)."""
    table = {number_words(o): number_words(n) for o, n in zip(old, new)}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(table, key=len, reverse=True))) + r")\b", re.I)
    return pattern.sub(lambda m: table[m.group(0).lower()], question)


def probes(test: list[Item], train_ranges: set[tuple[str, int, int]], per_item: int, seed: int) -> list:
    """(condition, question, reference) for every test question and `per_item` training ranges."""
    rng = random.Random(seed)
    out = []
    for d in test:
        direction, a, b = parse(d.meta["combo"])
        out.append(("held-out range", d.question_text, count_answer(a, b)))
        same_dir = sorted(r for r in train_ranges if r[0] == direction)
        for _, a2, b2 in rng.sample(same_dir, min(per_item, len(same_dir))):
            out.append(("training range", swap_numbers(d.question_text, (a, b), (a2, b2)), count_answer(a2, b2)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--test", required=True, help="test manifest (its counting items are used)")
    ap.add_argument("--train", nargs="+", required=True, help="training manifests (their counting ranges)")
    ap.add_argument("--per-item", type=int, default=3, help="training ranges asked per test question")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flowomni.inference.engine import Engine

    test = counting_items(args.test)
    train_ranges = {parse(d.meta["combo"]) for path in args.train for d in counting_items(path)}
    train_answers = {normalize(count_answer(a, b)) for _, a, b in train_ranges}
    asked = probes(test, train_ranges, args.per_item, args.seed)
    engine = Engine.load(args.checkpoint)
    texts = written_answers(engine, [q for _, q, _ in asked], args.batch_size)
    rows = [{"condition": c, "question": q, "reference": ref, "text": t} for (c, q, ref), t in zip(asked, texts)]
    result: dict[str, Any] = {"checkpoint": args.checkpoint, "training_ranges": len(train_ranges), "conditions": {}}
    for cond in ("held-out range", "training range"):
        rs = [r for r in rows if r["condition"] == cond]
        right = [exact_match(r["reference"], r["text"]) for r in rs]
        recalled = [normalize(r["text"]) in train_answers for r, ok in zip(rs, right) if not ok]
        result["conditions"][cond] = {
            "questions": len(rs),
            "accuracy": sum(right) / len(rs) if rs else None,
            "wrong_that_count_a_training_range": sum(recalled),
            "wrong": len(recalled),
            "examples": rs[:4],
        }
    emit(result, args.json)


if __name__ == "__main__":
    main()
