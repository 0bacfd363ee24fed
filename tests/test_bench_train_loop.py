"""benchmarks/train_loop.py: `flowomni train` on a synthetic corpus against its model step."""

from pathlib import Path

import pytest

from helpers.bench import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_loop_benchmark_json(tmp_path: Path) -> None:
    res = run_benchmark(
        "train_loop.py",
        "--batch",
        "2",
        "--steps",
        "10",
        "--repeats",
        "1",
        "--question-seconds",
        "0.5",
        "--answer-seconds",
        "0.5",
        "--device",
        "cpu",
        timeout=900,
        cwd=tmp_path,
    )
    assert res["model_step_frames_per_s"] > 0 and res["loop_frames_per_s"] > 0
    assert len(res["loop_windows_frames_per_s"]) == 2  # logged every 5 steps
    ratio = res["loop_frames_per_s"] / res["model_step_frames_per_s"]  # of the rounded rates: close, not equal
    assert res["loop_over_model_step"] == pytest.approx(ratio, abs=2e-3)
    assert res["model_step"]["full_over_backbone"] > 0 and res["model_step"]["precision"] == "fp32"
