"""Which voices does the model not hear? Accuracy per voice dialect, from an evaluation's rows.

`flowomni eval` keeps every answer with its item id; the manifests name each item's voice
("espeak:en-gb-scotland+m3", "piper:joe-us ..."). This joins the two and counts right answers
(held-out world facts left out) per voice dialect, i.e. the voice name without its espeak
variant, for each condition asked. `--by kind` counts per kind of voice instead: a training
voice, a training accent with a variant (timbre) never used in training, an accent never used
in training, the piper voice: which novelty the model does not generalise over.

    python benchmarks/accuracy_by_voice.py reports/continuous_vs_discrete/results.json \
        --manifests data/spoken_qa/test.jsonl data/spoken_qa/test_seen_voices.jsonl --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.data.voices import UNSEEN_ACCENTS, seen_espeak_voices  # noqa: E402

from common import emit, per_condition, tally  # noqa: E402


def dialect(voice: str) -> str:
    """ "espeak:en-gb-scotland+m3" -> "en-gb-scotland"; "piper:joe-us" -> "joe-us"."""
    return voice.split(":", 1)[-1].split("+", 1)[0].split()[0]


_TRAINING_VOICES = frozenset(seen_espeak_voices())


def kind(voice: str) -> str:
    """ "espeak:en-gb-scotland+m3" -> "unseen accent"; "espeak:en-us+m7" -> "training accent,
    unseen variant"; "espeak:en-us+m3" -> "training voice"; "piper:joe-us ..." -> "piper"."""
    if not voice.startswith("espeak:"):
        return "piper"
    name = voice.split(":", 1)[1].split()[0]
    if dialect(voice) in UNSEEN_ACCENTS:
        return "unseen accent"
    return "training voice" if name in _TRAINING_VOICES else "training accent, unseen variant"


def voices(manifests: list[str], by: str = "dialect") -> dict[str, str]:
    group = {"dialect": dialect, "kind": kind}[by]
    return {item.id: group(str(item.meta.get("voice", "?"))) for path in manifests for item in read_manifest(path)[0]}


def by_voice(rows: list[dict[str, Any]], voice_of: dict[str, str]) -> dict[str, dict[str, Any]]:
    return tally(rows, lambda r: voice_of.get(r["id"], "?"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--manifests", nargs="+", required=True, help="the manifests the evaluation asked")
    ap.add_argument("--conditions", nargs="*", default=["clean", "training voices"], help="condition labels")
    ap.add_argument("--by", choices=["dialect", "kind"], default="dialect", help="group voices by dialect or kind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    voice_of = voices(args.manifests, args.by)
    models = per_condition(args.results, args.conditions, lambda rows: by_voice(rows, voice_of))
    emit({"results": args.results, "models": models}, args.json)


if __name__ == "__main__":
    main()
