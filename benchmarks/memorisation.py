"""Does the model recall training answers instead of applying a skill? Its wrong answers, checked.

Test questions ask combinations training never used (phrases to repeat; at commit e65e990 also
counting ranges, e.g. "count from one to three" where training only counted from one to four).
A model that learned the skill answers them; a model that memorised answers gives a *training*
answer instead. For every wrong answer of an evaluation (the per-item rows of `flowomni eval`'s
results.json), this counts whether its text is, after normalisation, the reference answer of
some training item of the same skill, per skill and per condition.

    python benchmarks/memorisation.py reports/continuous_vs_discrete/results.json \
        --train data/spoken_qa_v1/train.jsonl data/spoken_qa_v1/train_text.jsonl --json
    (that report's models trained on e65e990's corpus; data/spoken_qa_v1 is a copy of its manifests)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.evaluation.text import normalize  # noqa: E402

from common import emit, per_condition  # noqa: E402


def training_answers(manifests: list[str]) -> dict[str, set[str]]:
    """skill -> the normalised reference answers of its training items."""
    out: dict[str, set[str]] = defaultdict(set)
    for path in manifests:
        for item in read_manifest(path)[0]:
            out[str(item.meta.get("skill", "?"))].add(normalize(item.answer_text))
    return out


def recalled(rows: list[dict[str, Any]], seen: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    """Per skill: items, wrong answers, and wrong answers that are a training answer verbatim."""
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"items": 0, "wrong": 0, "wrong_is_training_answer": 0})
    for r in rows:
        for key in (r["skill"], "all"):
            s = stats[key]
            s["items"] += 1
            if not r["exact"]:
                s["wrong"] += 1
                s["wrong_is_training_answer"] += normalize(r["text"]) in seen.get(r["skill"], set())
    for s in stats.values():
        s["share_of_wrong"] = s["wrong_is_training_answer"] / s["wrong"] if s["wrong"] else None
    return dict(sorted(stats.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--train", nargs="+", required=True, help="the training manifests (JSONL)")
    ap.add_argument("--conditions", nargs="*", default=["clean", "written question"], help="condition labels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seen = training_answers(args.train)
    models = per_condition(args.results, args.conditions, lambda rows: recalled(rows, seen))
    emit({"results": args.results, "train": args.train, "models": models}, args.json)


if __name__ == "__main__":
    main()
