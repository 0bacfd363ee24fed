"""AdamW with decoupled weight decay on matrices only, and warmup + cosine decay."""

from __future__ import annotations

import math

import torch


def build_optimizer(
    params: list[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    betas: list[float],
    lr_scale: dict[str, float] | None = None,
) -> torch.optim.AdamW:
    """Biases, norms and 1-d gains are not decayed (as in nanoGPT); frozen params are skipped.
    `lr_scale`: name prefix -> lr multiplier (the longest matching prefix wins); the schedule
    scales every group alike, so the ratios hold throughout."""
    scales = sorted((lr_scale or {}).items(), key=lambda kv: -len(kv[0]))
    for prefix, scale in scales:
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 <= scale <= 100:
            raise ValueError(f"train.lr_scale[{prefix!r}] = {scale!r}: not a number in 0..100")
        if not any(name.startswith(prefix) for name, _ in params):
            raise ValueError(f"train.lr_scale: no parameter is named {prefix!r}...")
    # the two unscaled groups always exist, first: checkpoints' optimizer states keep their layout
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in params:
        if p.requires_grad:
            scale = next((s for prefix, s in scales if name.startswith(prefix)), 1.0)
            groups.setdefault((p.dim() >= 2, scale), []).append(p)
    if not any(groups.values()):
        raise ValueError("no trainable parameters (check the training stage)")
    return torch.optim.AdamW(
        [
            {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale}
            for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1] != 1.0, kv[0][1]))
        ],
        lr=lr,
        betas=(betas[0], betas[1]),
    )


def warmup_cosine(warmup: int, total: int, lr: float, min_lr: float):
    """LambdaLR factor: linear warmup to `lr`, cosine down to `min_lr` at `total` steps."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))) / lr

    return factor
