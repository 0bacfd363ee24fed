"""Run a benchmark script as users do (`python benchmarks/NAME.py ... --json`) and read its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str, timeout: float = 600, cwd: Path | None = None) -> Any:
    """The parsed JSON that `benchmarks/<script> *args --json` prints; a failed run fails the
    test with the end of its stderr."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)
