"""Arithmetic and comparison: misheard, or heard and got wrong? Wrong answers sorted by cause.

Their answers restate the question's numbers, so each wrong answer of an evaluation (the
per-item rows of `flowomni eval`'s results.json) is sorted (flowomni/evaluation/error_kinds.py):
numbers the question never said (misheard), one of its numbers twice or dropped (copied wrong),
its own numbers with a wrong result, relation or yes/no (reasoned wrong). Per condition: if
written questions fail by reasoning and spoken ones by hearing, more practice fixes the first
and only a better ear the second.

    python benchmarks/error_kinds.py reports/flowomni_tiny_v5_all/results.json --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.evaluation.error_kinds import count_kinds  # noqa: E402

from common import emit, per_condition  # noqa: E402

CONDITIONS = ["clean", "training voices", "shifted voices", "SNR (dB) 10.0", "written question"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `flowomni eval`")
    ap.add_argument("--conditions", nargs="*", default=CONDITIONS, help="condition labels (those with rows)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    emit({"results": args.results, "models": per_condition(args.results, args.conditions, count_kinds)}, args.json)


if __name__ == "__main__":
    main()
