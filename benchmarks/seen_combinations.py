"""Did the model learn a skill, or the combinations it was trained on?

Each test question carries its combination ("counting/up/1/3", "comparison/pair/7/20"). This
splits an evaluation's answers, per skill, by whether that combination occurs in the manifests
a model was trained on: a model that learned the skill answers both groups alike; one that
learned its table answers the trained combinations only. Held-out world facts are left out.

    python benchmarks/seen_combinations.py reports/flowomni_tiny_v2/results.json \
        --manifests data/spoken_qa/test.jsonl \
        --train data/spoken_qa_v1/train.jsonl data/spoken_qa_v1/train_text.jsonl --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.data.manifest import read_manifest  # noqa: E402

from common import emit, per_condition, tally  # noqa: E402


def combos(paths: list[str]) -> dict[str, str]:
    """item id -> combination key, over the manifests given."""
    return {it.id: str(it.meta.get("combo", "")) for p in paths for it in read_manifest(p)[0]}


def by_seen(rows: list[dict[str, Any]], combo_of: dict[str, str], trained: set[str]) -> dict[str, dict[str, Any]]:
    """skill -> {"trained": counts, "unseen": counts} (groups with no questions left out)."""
    out: dict[str, dict[str, Any]] = {}
    seen = tally(rows, lambda r: (r["skill"], "trained" if combo_of.get(r["id"]) in trained else "unseen"))
    for (skill, group), counts in seen.items():
        out.setdefault(skill, {})[group] = counts
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--manifests", nargs="+", required=True, help="the manifests the evaluation asked")
    ap.add_argument("--train", nargs="+", required=True, help="the manifests the model was trained on")
    ap.add_argument("--models", nargs="*", help="only these models of the results (default: all)")
    ap.add_argument("--conditions", nargs="*", default=["clean", "written question"], help="condition labels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    combo_of = combos(args.manifests)
    trained = set(combos(args.train).values())
    models = per_condition(args.results, args.conditions, lambda rows: by_seen(rows, combo_of, trained))
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models}
    emit({"results": args.results, "train": args.train, "models": models}, args.json)


if __name__ == "__main__":
    main()
