"""The flow-steps benchmark's command line: settings are METHOD:STEPS, bad ones are named."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/flow_steps.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_bad_settings_are_refused_by_name():
    for bad in ("rk4:4", "euler:0", "midpoint"):
        r = run("--settings", bad)
        assert r.returncode == 2 and repr(bad) in r.stderr and "METHOD:STEPS" in r.stderr, r.stderr


def test_help_lists_the_default_settings_temperatures_and_guidance():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for word in ("euler:1", "midpoint:16", "--temperatures", "--cfg-scales"):
        assert word in r.stdout
