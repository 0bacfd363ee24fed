"""Two gloo processes (torchrun) take the same training step as one process with their
combined batch."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "helpers" / "train_tiny.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_combined_batch(tmp_path):
    one = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "4"], capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                          str(SCRIPT), str(tmp_path / "two"), "2"], capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one/step_00000001/model.safetensors"))
    b = load_file(str(tmp_path / "two/step_00000001/model.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)
    # ...and the step really changed the model: Adam's first step moves every weight with a
    # gradient by ~lr = 1e-3 (zero-initialised output layers and unused embeddings stay put)
    from test_model_flowomni import tiny_config  # noqa: F401  (same model, same seed)
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.tokenizer import CharTokenizer

    torch.manual_seed(0)
    init = FlowOmni(tiny_config(), CharTokenizer()).checkpoint_state()
    for k, v in init.items():
        if k in a and not k.endswith(("_mean", "_std")):
            moved += int(((a[k] - v).abs() > 1e-4).sum())
    assert moved > 0.1 * sum(v.numel() for v in a.values()), moved
