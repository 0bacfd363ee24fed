"""A one-step student of the flow head: the ODE's start point and the condition in, its end out.

The flow head draws a mel group by integrating a velocity field over several network
evaluations, each reading the full adaLN MLP's weights. On a CPU at batch 1 that is memory
traffic, not arithmetic, and it costs more than a small backbone's whole decode step. The
student is trained by `flowomni distill-flow` to map the teacher's start point x0 (prior mean
plus temperature-scaled noise) and hidden state h straight to the teacher sampler's result
x1 (progressive/consistency distillation collapsed to one jump, as the deterministic ODE
makes x1 a function of (x0, h)). It has no adaLN: the condition is added to the input and
before every block, so one group costs one pass over ~2 M weights.
"""

from __future__ import annotations

import torch
from torch import nn


class FlowStudent(nn.Module):
    def __init__(self, dim: int, cond_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)  # starts as the identity: x1 = x0 (the prior mean at T=0)
        nn.init.zeros_(self.out.bias)

    def forward(self, x0: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x0 [N, k*F] (normalised mel space), h [N, D] -> x1 [N, k*F]."""
        c = self.cond(h)
        z = self.inp(x0) + c
        for blk in self.blocks:
            z = z + blk(z + c)
        return x0 + self.out(self.norm(z))
