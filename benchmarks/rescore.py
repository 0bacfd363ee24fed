"""An earlier evaluation's scores, computed again from its stored per-item rows.

When scoring gains a number (speech WER against the reference on the target skills, which
leaves out the held-out world facts as target accuracy does), an older `flowomni eval`
results.json has the rows but not the number. This recomputes every model's every condition
with today's `flowomni.evaluation.evaluate.score`: no model, no ASR, a second.

    python benchmarks/rescore.py reports/flowomni_tiny_v11_all/results.json --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.evaluation.evaluate import ItemResult, score  # noqa: E402
from flowomni.evaluation.report import conditions  # noqa: E402

from common import emit  # noqa: E402


def rescore(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """model -> condition label -> scores of its rows (the rows themselves left out)."""
    return {
        name: {label: score([ItemResult(**r) for r in rows]) for label, _, rows in conditions(res) if rows}
        for name, res in results.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        models = rescore(json.loads(Path(args.results).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit(f"rescore: {args.results} is not a readable `flowomni eval` results.json ({type(e).__name__}: {e})")
    emit({"results": args.results, "models": models}, args.json)


if __name__ == "__main__":
    main()
