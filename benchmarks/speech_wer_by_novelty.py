"""Is the speech lost on sentences the model never learned to say? Speech WER by novelty.

The speech path learns from a few thousand distinct answer recordings. This splits an
evaluation's spoken answers by whether the text the model wrote (and so had to say) is one of
the training answers (the corpus's answer texts, any training manifest: spoken, written or
answer-voice sentences, after normalisation) and gives the speech WER against that text for
each part, per skill, with 95 % intervals: if novel sentences are heard much worse than
familiar ones, the speech path needs more sentences, not a better sampler.

    python benchmarks/speech_wer_by_novelty.py reports/flowomni_tiny_v10_all/results.json \
        --train data/spoken_qa_taught/train.jsonl data/spoken_qa_taught/train_text.jsonl --json
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.evaluation.intervals import ratio_interval, word_edits  # noqa: E402
from flowomni.evaluation.text import normalize  # noqa: E402

from common import emit, per_condition  # noqa: E402


def said_in_training(manifests: list[str]) -> set[str]:
    """Normalised answer texts of the training manifests (an utterance's answer is its own text)."""
    return {normalize(item.answer_text) for path in manifests for item in read_manifest(path)[0]}


def by_novelty(rows: list[dict[str, Any]], known: set[str]) -> dict[str, dict[str, Any]]:
    """'familiar' / 'novel' (and per skill) -> items, words, speech WER vs own text [95 %]."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        text = normalize(r.get("text") or "")
        if not text or r.get("heard") is None:  # no text to say, or not spoken
            continue
        part = "familiar" if text in known else "novel"
        groups[part].append(r)
        groups[f"{part} / {r.get('skill', '?')}"].append(r)
    out = {}
    for name in sorted(groups, key=lambda k: ("/" in k, k)):
        rs = groups[name]
        edits, words = word_edits([r["text"] for r in rs], [r["heard"] for r in rs])
        out[name] = {
            "items": len(rs),
            "words": int(words.sum()),
            "speech_wer_vs_text": float(edits.sum() / words.sum()),
            "ci95": list(ratio_interval(edits, words)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--train", nargs="+", required=True, help="the training manifests (spoken, written, tts)")
    ap.add_argument("--conditions", nargs="*", default=["clean"], help="condition labels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    known = said_in_training(args.train)
    models = per_condition(args.results, args.conditions, lambda rows: by_novelty(rows, known))
    emit({"results": args.results, "train": args.train, "training_answers": len(known), "models": models}, args.json)


if __name__ == "__main__":
    main()
