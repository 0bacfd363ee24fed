"""AdamW with decoupled weight decay on matrices only, and warmup + cosine decay."""

from __future__ import annotations

import math

import torch


def build_optimizer(
    params: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float, betas: list[float]
) -> torch.optim.AdamW:
    """Biases, norms and 1-d gains are not decayed (as in nanoGPT); frozen params are skipped."""
    decay = [p for _, p in params if p.requires_grad and p.dim() >= 2]
    rest = [p for _, p in params if p.requires_grad and p.dim() < 2]
    if not decay and not rest:
        raise ValueError("no trainable parameters (check the training stage)")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]))


def warmup_cosine(warmup: int, total: int, lr: float, min_lr: float):
    """LambdaLR factor: linear warmup to `lr`, cosine down to `min_lr` at `total` steps."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))) / lr

    return factor
