"""Two gloo processes (torchrun) take the same training step as one process with their
combined batch."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowomni.serving.server import free_port

SCRIPT = Path(__file__).parent / "helpers" / "train_tiny.py"


@pytest.mark.slow
def run_one(out: Path, batch_size: int, *extra: str) -> None:
    one = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(batch_size), *extra], capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 0, one.stderr[-3000:]


def run_two(out: Path, batch_size: int, *extra: str) -> None:
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(SCRIPT),
            str(out),
            str(batch_size),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]


def assert_same_weights(a_dir: Path, b_dir: Path) -> dict:
    a = load_file(str(a_dir / "model.safetensors"))
    b = load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)
    return a


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_combined_batch(tmp_path):
    run_one(tmp_path / "one", 4)
    run_two(tmp_path / "two", 2)
    a = assert_same_weights(tmp_path / "one/step_00000001", tmp_path / "two/step_00000001")
    moved = 0
    # ...and the step really changed the model: Adam's first step moves every weight with a
    # gradient by ~lr = 1e-3 (zero-initialised output layers and unused embeddings stay put)
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.tokenizer import CharTokenizer

    from helpers.models import tiny_config  # (same model, same seed)

    torch.manual_seed(0)
    init = FlowOmni(tiny_config(), CharTokenizer()).checkpoint_state()
    for k, v in init.items():
        if k in a and not k.endswith(("_mean", "_std")):
            moved += int(((a[k] - v).abs() > 1e-4).sum())
    assert moved > 0.1 * sum(v.numel() for v in a.values()), moved


@pytest.mark.slow
def test_fsdp_matches_one_process_and_its_checkpoints_resume(tmp_path):
    """FSDP over 2 processes takes the combined-batch step of one process; its checkpoint has
    the single-process format, and resuming it (Adam moments gathered, saved, re-sharded)
    gives the uninterrupted single process's second step."""
    run_one(tmp_path / "one", 4, "--steps", "2")
    run_two(tmp_path / "fsdp", 2, "--steps", "1", "--fsdp")
    assert_same_weights(tmp_path / "one/step_00000001", tmp_path / "fsdp/step_00000001")
    one_opt = load_file(str(tmp_path / "one/step_00000001/optimizer.safetensors"))
    fsdp_opt = load_file(str(tmp_path / "fsdp/step_00000001/optimizer.safetensors"))
    # same positions; a parameter no rank used (here the CFG null condition) has no Adam state
    # in one process but a zero-gradient one under FSDP, which keeps every parameter in the graph
    assert one_opt.keys() <= fsdp_opt.keys()
    for k in one_opt:
        torch.testing.assert_close(one_opt[k], fsdp_opt[k], atol=1e-6, rtol=1e-4, msg=k)
    extra = {k for k in fsdp_opt.keys() - one_opt.keys() if not k.endswith(".step")}
    assert all(float(fsdp_opt[k].abs().max()) == 0.0 for k in extra), extra
    run_two(tmp_path / "fsdp", 2, "--steps", "2", "--fsdp", "--resume")
    assert_same_weights(tmp_path / "one/step_00000002", tmp_path / "fsdp/step_00000002")
