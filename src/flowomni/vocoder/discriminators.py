"""Discriminators for adversarial vocoder training (used in training only; never shipped).

Multi-period (HiFi-GAN): the waveform folded into [T/p, p] grids for prime periods p, judged
by 2-D convs with height-only kernels, so each sub-discriminator sees one periodic structure
(pitch harmonics). Multi-resolution (UnivNet / Vocos): magnitude spectrograms at several
STFT sizes, so both fine time and fine frequency detail are judged. Every sub-discriminator
returns its logits and its intermediate features (for the feature-matching loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from flowomni.config import Bounds

Features = list[torch.Tensor]


@dataclass
class DiscriminatorConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {"periods": (1, 1000), "period_channels": (1, 16384), "resolution_channels": (1, 16384)}

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [16, 64, 128, 256])  # HiFi-GAN: 32..1024
    resolutions: list[list[int]] = field(
        default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]
    )
    resolution_channels: int = 32


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: list[int]) -> None:
        super().__init__()
        self.period = period
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            for c_in, c_out in zip(chans[:-1], chans[1:])
        )
        self.convs.append(weight_norm(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0))))
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, Features]:  # wav [B, T]
        b, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        return conv_stack(self.convs, self.out, wav.view(b, 1, -1, self.period))


def conv_stack(convs: nn.ModuleList, out: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
    """Leaky-ReLU conv layers then an output conv: (flattened logits, every layer's output
    for the feature-matching loss)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = out(x)
    feats.append(x)
    return x.flatten(1), feats


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, win: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (7, 5), (2, 2), padding=(3, 2))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, (5, 3), (2, 1), padding=(2, 1))),
                weight_norm(nn.Conv2d(c, c, 3, (2, 1), padding=1)),
                weight_norm(nn.Conv2d(c, c, 3, 1, padding=1)),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, 3, 1, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spec = torch.stft(wav, self.n_fft, self.hop, self.win, self.window, center=True, return_complex=True)
        return conv_stack(self.convs, self.out, compressed_magnitude(spec)[:, None])  # [B, 1, F, T]


def compressed_magnitude(spec: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """|spec| ** 0.5 with a finite gradient everywhere: `spec.abs().pow(0.5)` has an infinite
    one at silent bins, which turned a GAN run's generator weights to NaN within 50 steps."""
    return (torch.view_as_real(spec).square().sum(-1) + eps).pow(0.25)


class Discriminators(nn.Module):
    """All sub-discriminators; `forward(wav)` -> (list of logits, list of feature lists)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, cfg.period_channels) for p in cfg.periods)
        self.mrd = nn.ModuleList(ResolutionDiscriminator(*r, cfg.resolution_channels) for r in cfg.resolutions)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[Features]]:
        logits, feats = [], []
        for d in [*self.mpd, *self.mrd]:
            lg, ft = d(wav)
            logits.append(lg)
            feats.append(ft)
        return logits, feats
