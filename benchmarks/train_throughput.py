"""Training throughput of a config's shapes, and the cost of the speech parts over the backbone.

Runs full Flow-Omni training steps (forward + backward + AdamW) on a batch of speech-to-speech
examples, and, in the same process and interleaved, training steps of the bare backbone on
the same text ids and sequence length (LM loss only), both under the autocast training uses
(bf16 on a GPU). Reports speech frames/s, peak memory, and full_step / backbone_step (targets:
< 1.5 for the tiny model on a CPU; <= 1.3 at paper scale on a GPU, issue 21).

    python benchmarks/train_throughput.py --json [--config configs/tiny.yaml] [--batch 8]
    python benchmarks/train_throughput.py --config configs/paper_scale.yaml --device cuda --batch 16 --json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from flowomni.config import load_config
from flowomni.model.config import ModelConfig
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import build_tokenizer
from flowomni.training.dataset import TaskDataset, collate

from common import emit, environment, peak_rss_mb, summary, time_interleaved

ROOT = Path(__file__).resolve().parent.parent


class RandomFeatures:
    """Stand-in feature source: speed does not depend on what the mel frames contain."""

    def __init__(self, n_mels: int, frames: dict[str, int]) -> None:
        self.n_mels, self.frames = n_mels, frames

    def get(self, path: Path) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
        return rng.normal(-5, 2, size=(self.frames[str(path)], self.n_mels)).astype(np.float32)


def make_batch(m: ModelConfig, tok, batch: int, q_seconds: float, a_seconds: float):
    items, q_frames, a_frames = [], {}, {}
    for i in range(batch):
        jitter = 1 + 0.2 * (i % 3 - 1)
        q, a = Path(f"q{i}.wav"), Path(f"a{i}.wav")
        q_frames[str(q)] = int(q_seconds * jitter * m.input_mel.frame_rate)
        a_frames[str(a)] = int(a_seconds * jitter * m.output_mel.frame_rate)
        items.append(
            SimpleNamespace(
                id=str(i),
                question_text="What is seven plus two?",
                answer_text="Seven plus two is nine.",
                question_audio=q,
                answer_audio=a,
                kind="qa",
            )
        )
    ds = TaskDataset(
        items,
        [Task.S2S.value],
        tok,
        RandomFeatures(m.input_mel.n_mels, q_frames),
        RandomFeatures(m.output_mel.n_mels, a_frames),
        group=m.group,
        delay=m.delay,
        stack=m.encoder.stack,
        in_frame_rate=m.input_mel.frame_rate,
        out_frame_rate=m.output_mel.frame_rate,
        extra_groups=m.extra_groups,
    )
    return collate(
        [ds[i] for i in range(len(ds))], group=m.group, pad_id=tok.pad_id, silence=math.log(m.output_mel.log_floor)
    )


def autocast(device: torch.device, precision: str):  # noqa: ANN201
    """bf16 autocast on a GPU (as `flowomni train` runs with mixed_precision: auto), or nothing."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "no"
    if precision == "no":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def measure(
    config: str,
    batch_size: int,
    q_seconds: float,
    a_seconds: float,
    repeats: int,
    device: torch.device,
    precision: str = "auto",
) -> dict:
    """Full training steps (forward + backward + AdamW) against bare-backbone steps on the
    same tokens, interleaved; frames/s of the full step."""
    torch.manual_seed(0)
    cfg = load_config(ModelConfig, config, section="model")
    cfg.encoder.pretrained = None  # shapes only
    tok = build_tokenizer(cfg.tokenizer)
    model = FlowOmni(cfg, tok).to(device).train()
    batch = {
        k: v.to(device) if torch.is_tensor(v) else v
        for k, v in make_batch(cfg, tok, batch_size, q_seconds, a_seconds).items()
    }
    full_opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lm_opt = torch.optim.AdamW(model.lm.parameters(), lr=1e-4)
    text, mask = batch["text"], batch["attention_mask"]

    def full_step() -> None:
        full_opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = model(batch)["loss"]
        loss.backward()
        full_opt.step()

    def backbone_step() -> None:  # the same LM on the same tokens and length, LM loss only
        lm_opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model.lm(input_ids=text, attention_mask=mask).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), text[:, 1:].flatten())
        loss.backward()
        lm_opt.step()

    times = time_interleaved({"full": full_step, "backbone": backbone_step}, repeats)
    full, bb = summary(times["full"]), summary(times["backbone"])
    frames = int(batch["num_frames"])
    return {
        "batch": batch_size,
        "question_seconds": q_seconds,
        "answer_seconds": a_seconds,
        "precision": precision if precision != "auto" else ("bf16" if device.type == "cuda" else "fp32"),
        "sequence_length": int(text.shape[1]),
        "speech_frames_per_step": frames,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "backbone_parameters_m": round(sum(p.numel() for p in model.lm.parameters()) / 1e6, 3),
        "full_step": full,
        "backbone_step": bb,
        "frames_per_s": round(frames / full["median_s"], 1),
        "full_over_backbone": round(full["median_s"] / bb["median_s"], 3),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--question-seconds", type=float, default=2.0)
    ap.add_argument("--answer-seconds", type=float, default=2.5)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "no", "bf16", "fp16"],
        help="autocast (auto: bf16 on a GPU, as training runs)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = measure(
        args.config,
        args.batch,
        args.question_seconds,
        args.answer_seconds,
        args.repeats,
        torch.device(args.device),
        args.precision,
    )
    config = Path(args.config).resolve()
    result = {
        "benchmark": "train_throughput",
        "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else args.config),
        **r,
        "target_full_over_backbone": 1.3 if args.device.startswith("cuda") else 1.5,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
