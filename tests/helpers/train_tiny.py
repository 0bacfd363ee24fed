"""Train a tiny model on 4 equal-size examples; run alone or under torchrun.

    train_tiny.py OUT BATCH_SIZE [--steps N] [--resume] [--hang-in-save K] [--fsdp]

test_training_distributed.py: 2 processes x 2 examples must give the parameters of
1 process x 4 examples. test_training_crash.py: `--hang-in-save K` stops inside the K-th
checkpoint write (after the weights, before meta.json) and waits to be SIGKILLed. Equal
sizes make each rank's mean loss a mean over equally many targets, so averaging gradients
across ranks equals the gradient of the combined batch. The flow loss's random time and
noise are replaced by fixed ones: ranks draw random numbers from their own streams, which is
right for training but not comparable with a single process.
"""

import math
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flowomni.model.flow_head import FlowHead  # noqa: E402
from flowomni.model.flowomni import FlowOmni  # noqa: E402
from flowomni.model.tokenizer import CharTokenizer  # noqa: E402
from flowomni.training.config import TrainConfig  # noqa: E402
from flowomni.training.dataset import TaskDataset, collate  # noqa: E402
from flowomni.training.loop import train  # noqa: E402

from helpers.models import tiny_config  # noqa: E402


def fixed_flow_loss(self, h, x1, generator=None):
    c = self.refiner(h)
    x1 = x1.flatten(1)
    t = torch.full((h.shape[0],), 0.5)
    x0 = torch.zeros_like(x1)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    return F.mse_loss(self.net(xt, t, c).float(), (x1 - x0).float(), reduction="none").mean(dim=1)


class Features:
    """Deterministic 'speech' features of fixed length, one pattern per file name."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def get(self, path):
        rng = np.random.default_rng(sum(map(ord, str(path))))
        return rng.standard_normal((self.frames, 80)).astype(np.float32) - 5


def hang_in_save(k: int, out: Path) -> None:
    """Make the k-th checkpoint write stop half-way and announce it with a marker file."""
    import time

    from flowomni import checkpoint

    calls = {"n": 0}
    real = checkpoint.save_file

    def save_file(tensors, path, *a, **kw):
        real(tensors, path, *a, **kw)
        if path.endswith("model.safetensors"):
            calls["n"] += 1
            if calls["n"] == k:
                (out / "HANGING").write_text(path)
                time.sleep(600)

    checkpoint.save_file = save_file


def main(out: str, batch_size: int, steps: int, resume: bool, sharding: str = "ddp") -> None:
    FlowHead.loss = fixed_flow_loss
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.feedback_noise, cfg.flow.p_uncond = 0.0, 0.0
    tok = CharTokenizer()
    qa = [
        ("What is one plus two?", "One plus two is three."),
        ("What is two plus one?", "Two plus one is three."),
        ("What is six plus two?", "Six plus two is eight."),
        ("What is two plus six?", "Two plus six is eight."),
    ]
    items = [
        SimpleNamespace(
            id=f"i{i}",
            question_text=q,
            answer_text=a,
            question_audio=Path(f"q{i}"),
            answer_audio=Path(f"a{i}"),
            kind="qa",
        )
        for i, (q, a) in enumerate(qa)
    ]
    ds = TaskDataset(
        items, ["s2s"], tok, Features(120), Features(40), group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack
    )
    model = FlowOmni(cfg, tok)
    tcfg = TrainConfig(
        max_steps=steps,
        batch_size=batch_size,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        eval_every=100,
        save_every=1,
        log_every=1,
        tensorboard=False,
        grad_clip=0.0,
        sharding=sharding,
    )
    train(
        model,
        ds,
        None,
        partial(collate, group=cfg.group, pad_id=tok.pad_id, silence=math.log(1e-5)),
        tcfg,
        Path(out),
        config_yaml="{}\n",
        resume=resume,
    )


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("batch_size", type=int)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hang-in-save", type=int, default=0)
    p.add_argument("--fsdp", action="store_true", help="train.sharding=fsdp (FSDP2 over the processes)")
    a = p.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.hang_in_save:
        hang_in_save(a.hang_in_save, Path(a.out))
    main(a.out, a.batch_size, a.steps, a.resume, "fsdp" if a.fsdp else "ddp")
