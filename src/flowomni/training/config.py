"""Optimisation and bookkeeping settings of a training run (the `train:` section of a config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from flowomni.config import Bounds


@dataclass
class TrainConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "max_steps": (1, 10**10),
        "batch_size": (1, 65536),
        "grad_accum": (1, 65536),
        "max_positions": (0, None),
        "lr": (0, 10),
        "min_lr": (0, 10),
        "warmup_steps": (0, None),
        "weight_decay": (0, 100),
        "betas": (0, 0.99999),
        "grad_clip": (0, None),
        "num_workers": (0, 256),
        "bucket_batches": (1, None),
        "log_every": (1, None),
        "eval_every": (1, None),
        "eval_batches": (1, None),
        "save_every": (1, None),
        "keep_checkpoints": (0, None),
        "max_nonfinite_steps": (1, None),
    }

    stage: int = 2  # 1: frozen backbone + encoder, ASR/TTS only (paper); 2: everything, all tasks
    max_steps: int = 3000  # optimizer steps
    batch_size: int = 16  # examples per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_positions: int = 0  # >0: also cap a micro-batch at this many padded positions (B * L)
    lr: float = 1e-4
    min_lr: float = 5e-6  # cosine floor (paper: 1e-4 -> 5e-6)
    warmup_steps: int = 100
    weight_decay: float = 0.01
    # learning-rate multipliers by parameter-name prefix, e.g. {"encoder.": 0.1} for the Whisper
    # layers `model.encoder.tune_top` lets learn (pretrained weights want smaller steps)
    lr_scale: dict[str, float] = field(default_factory=dict)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    grad_clip: float = 1.0
    mixed_precision: str = "auto"  # auto: bf16 on GPU, fp32 on CPU; or no / bf16 / fp16
    seed: int = 0
    num_workers: int = 0  # DataLoader workers (features are memory-mapped, so 0 is fine on CPU; a GPU wants some)
    prefetch: int = 4  # batches each worker makes ahead
    bucket_batches: int = 50  # length bucketing: sort pools of this many batches by length
    log_every: int = 10
    eval_every: int = 250
    eval_batches: int = 8
    save_every: int = 250
    keep_checkpoints: int = 3
    tensorboard: bool = True
    # a step whose loss or gradient is NaN/Inf is skipped (no update, counted in the log); this many in
    # a row stop the run (the last checkpoint is kept: a diverged run does not write one)
    max_nonfinite_steps: int = 20
    sharding: str = "ddp"  # multi-process: "ddp" (a full replica per process) or "fsdp" (sharded; sharding.py)
