"""Does an earlier turn of the conversation change the model's answers? Written test questions,
each asked four ways: alone; after a spoken turn (the server keeps a spoken question as "" with
the answer given); after a written turn (another question and its answer); and after a spoken
turn that already answered this very question. Training put an unrelated earlier turn before a
share of its examples (`data.history_prob`), so the first three should score alike; paired
differences against "alone" with 95 % intervals say whether they do.

    python benchmarks/history_context.py --checkpoint models/flowomni-tiny --items 200 --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import Item, read_manifest  # noqa: E402
from flowomni.data.skills import HELD_OUT_FACTS  # noqa: E402
from flowomni.evaluation.intervals import accuracy_interval, paired_accuracy_difference  # noqa: E402
from flowomni.evaluation.text import exact_match  # noqa: E402

from common import emit  # noqa: E402

History = list[tuple[str, str]] | None


def contexts(items: list[Item], i: int, shift: int = 7) -> dict[str, History]:
    """The four ways item i is asked; the earlier turn of the others is item i + shift's."""
    me, other = items[i], items[(i + shift) % len(items)]
    return {
        "alone": None,
        "after a spoken turn": [("", other.answer_text)],
        "after a written turn": [(other.question_text, other.answer_text)],
        "after the same question, spoken": [("", me.answer_text)],
    }


def summarise(right: dict[str, list[bool]]) -> dict[str, dict[str, Any]]:
    """Accuracy per context and, for the others, the paired difference against "alone"."""
    out: dict[str, dict[str, Any]] = {}
    for name, r in right.items():
        out[name] = {"right": sum(r), "questions": len(r), "accuracy": sum(r) / max(len(r), 1)}
        out[name]["accuracy_ci95"] = accuracy_interval(r)
        if name != "alone":
            out[name]["minus_alone"] = paired_accuracy_difference(r, right["alone"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--speak", action="store_true", help="spoken answers (the server's default); text only otherwise")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine

    rows, _ = read_manifest(args.manifest)
    items = [it for it in rows if it.meta.get("skill") != HELD_OUT_FACTS][: args.items]
    engine = Engine.load(args.checkpoint, gen=GenerationConfig(seed=0))

    right: dict[str, list[bool]] = {}
    for i, item in enumerate(items):
        for name, history in contexts(items, i).items():
            text = engine.answer(text=item.question_text, speak=args.speak, history=history).text
            right.setdefault(name, []).append(exact_match(item.answer_text, text))
    emit({"checkpoint": args.checkpoint, "speak": args.speak, "contexts": summarise(right)}, args.json)


if __name__ == "__main__":
    main()
