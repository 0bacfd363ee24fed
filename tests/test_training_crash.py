"""SIGKILL in the middle of a checkpoint write: nothing corrupt, and resuming gives the
same losses and weights as a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowomni.checkpoint import latest_checkpoint, load_meta, load_model_state

SCRIPT = Path(__file__).parent / "helpers" / "train_tiny.py"


def run(out, *extra):
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "2", "--steps", "6", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def losses(run_dir):
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if r["split"] == "train"]


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_then_resume_matches_uninterrupted(tmp_path):
    run(tmp_path / "clean")

    crash = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(crash), "2", "--steps", "6", "--hang-in-save", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (crash / "HANGING").exists():
        assert proc.poll() is None and time.time() < deadline, "trainer never reached the 4th checkpoint write"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # the half-written step 4 is invisible; step 3 is complete and loads
    half = list(crash.glob(".step_00000004.tmp-*"))
    assert half and (half[0] / "model.safetensors").is_file() and not (half[0] / "meta.json").exists()
    newest = latest_checkpoint(crash)
    assert newest.name == "step_00000003" and load_meta(newest)["step"] == 3
    assert all(torch.isfinite(v).all() for v in load_model_state(newest).values() if v.is_floating_point())

    run(crash, "--resume")
    assert not list(crash.glob(".step_*.tmp-*")), "the dead writer's temp folder is cleaned up"
    a, b = losses(tmp_path / "clean"), losses(crash)
    assert [s for s, _ in b] == [1, 2, 3, 4, 5, 6]
    for (s, la), (_, lb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-5), s
    wa = load_file(str(tmp_path / "clean/step_00000006/model.safetensors"))
    wb = load_file(str(crash / "step_00000006/model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5, msg=k)
