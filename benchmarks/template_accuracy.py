"""Which held-out phrasings fail, and do they use words training never put together?

Every test question carries its template ("what is {a} take away {b}"), held out from training
by design. This scores an evaluation's answers per (skill, template) and per condition, and
lists each template's *untaught word pairs*: adjacent words (numbers as N) that occur in at
least half of its test questions and in no training question. A from-scratch backbone has no
way to learn an operator it never read ("take away" when training only says "take b away from
a"); a pretrained LLM knows it. A template that fails written as well as spoken is not a
hearing problem; one that fails written and has untaught pairs is one of vocabulary.

    python benchmarks/template_accuracy.py reports/flowomni_tiny_v5_all/results.json \
        --manifest data/spoken_qa/test.jsonl \
        --train data/spoken_qa/train.jsonl data/spoken_qa/train_text.jsonl --json
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.facts import ONES, TENS  # noqa: E402
from flowomni.data.manifest import Item, read_manifest  # noqa: E402

from common import emit, per_condition, tally  # noqa: E402

_NUMBER_WORDS = set(ONES) | set(TENS[2:])


def word_pairs(question: str) -> set[tuple[str, str]]:
    """Adjacent lowercase words of a question, every number word as "N"."""
    words = ["N" if w in _NUMBER_WORDS else w for w in re.findall(r"[a-z']+", question.lower())]
    return set(zip(words, words[1:]))


def untaught_pairs(test: list[Item], trained: set[tuple[str, str]]) -> dict[str, list[str]]:
    """template key -> word pairs in >= half of its questions and in no training question."""
    by_template: dict[str, list[Item]] = {}
    for it in test:
        by_template.setdefault(template_key(it), []).append(it)
    out = {}
    for key, items in by_template.items():
        counts = Counter(p for it in items for p in word_pairs(it.question_text) - trained)
        out[key] = sorted(" ".join(p) for p, n in counts.items() if 2 * n >= len(items))
    return out


def template_key(item: Item) -> str:
    return f"{item.meta.get('skill', '?')}: {item.meta.get('template', '?')}"


def scores(rows: list[dict[str, Any]], key_of: dict[str, str], untaught: dict[str, list[str]]) -> dict[str, Any]:
    """Per template, worst first: counts and untaught pairs (held-out world facts left out)."""
    missing = [r["id"] for r in rows if r["id"] not in key_of]
    if missing:
        raise SystemExit(
            f"template_accuracy: {len(missing)} answers have no question in --manifest (first: {missing[0]!r}); "
            "pass the manifest the evaluation asked"
        )
    per = tally(rows, lambda r: key_of[r["id"]])
    worst_first = sorted(per.items(), key=lambda kv: (kv[1]["accuracy"], kv[0]))
    return {k: {**v, "untaught_pairs": untaught[k]} for k, v in worst_first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--manifest", required=True, help="the test manifest the evaluation asked")
    ap.add_argument("--train", nargs="+", required=True, help="the manifests the model was trained on")
    ap.add_argument("--conditions", nargs="*", default=["clean", "written question"], help="condition labels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    test = read_manifest(args.manifest)[0]
    trained = {p for path in args.train for it in read_manifest(path)[0] for p in word_pairs(it.question_text)}
    untaught = untaught_pairs(test, trained)
    key_of = {it.id: template_key(it) for it in test}
    models = per_condition(args.results, args.conditions, lambda rows: scores(rows, key_of, untaught))
    emit({"results": args.results, "manifest": args.manifest, "train": args.train, "models": models}, args.json)


if __name__ == "__main__":
    main()
