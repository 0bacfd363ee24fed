"""`flowomni bench NAME [ARGS...]`: run benchmarks/NAME.py (JSON results with --json)."""

from __future__ import annotations

import argparse
import runpy
import sys

from flowomni.paths import REPO_ROOT

BENCH_DIR = REPO_ROOT / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem != "common")


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = ", ".join(available()) if BENCH_DIR.is_dir() else ""
    p.add_argument("name", help=f"benchmark to run: {names}" if names else "benchmark name")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its own arguments, e.g. --json")


def run(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"{args.name}.py"
    if not script.is_file():
        names = ", ".join(available()) or f"none (no {BENCH_DIR})"
        print(f"flowomni bench: unknown benchmark {args.name!r}; available: {names}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(BENCH_DIR))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:  # argparse inside the benchmark
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    return 0
