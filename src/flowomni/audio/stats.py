"""Per-dimension mean/variance normalisation of features, estimated from data.

Flow matching starts from unit Gaussian noise, so its targets should have unit scale per mel
bin; the stats travel with the checkpoint so inference de-normalises exactly as training saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FeatureStats:
    mean: torch.Tensor  # [dim]
    std: torch.Tensor  # [dim]

    @classmethod
    def identity(cls, dim: int) -> FeatureStats:
        return cls(torch.zeros(dim), torch.ones(dim))

    @classmethod
    def estimate(cls, frames: list[torch.Tensor], min_std: float = 1e-3) -> FeatureStats:
        """Stats over all frames of all clips (each [T, dim]), accumulated in float64."""
        if not frames:
            raise ValueError("cannot estimate feature stats from zero clips")
        dim = frames[0].shape[-1]
        n, s, ss = 0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
        for f in frames:
            f = f.reshape(-1, dim).double()
            n += f.shape[0]
            s += f.sum(0)
            ss += (f * f).sum(0)
        mean = s / n
        var = (ss / n - mean * mean).clamp(min=0.0)
        return cls(mean.float(), var.sqrt().clamp(min=min_std).float())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x) + self.mean.to(x)

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean.contiguous(), f"{prefix}.std": self.std.contiguous()}

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], prefix: str) -> FeatureStats:
        return cls(sd[f"{prefix}.mean"].float(), sd[f"{prefix}.std"].float())
