"""Vocoder losses: spectral reconstruction (mel L1, multi-resolution STFT) and GAN terms."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from flowomni.audio.mel import MelConfig, MelSpectrogram


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over STFT sizes (Yamamoto et al. 2020).

    Several sizes at once stop the generator from trading time for frequency detail; since
    windows of different sizes overlap differently, matching them all constrains phase too.
    """

    def __init__(self, resolutions: list[list[int]]) -> None:
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        for n_fft, _, win in self.resolutions:
            self.register_buffer(f"window_{n_fft}_{win}", torch.hann_window(win), persistent=False)

    def forward(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            window = getattr(self, f"window_{n_fft}_{win}")
            mags = [
                torch.stft(x, n_fft, hop, win, window, center=True, return_complex=True).abs().clamp(min=1e-7)
                for x in (y, target)
            ]
            sc = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1]).clamp(min=1e-7)
            total = total + sc + F.l1_loss(torch.log(mags[0]), torch.log(mags[1]))
        return total / len(self.resolutions)


class MelLoss(nn.Module):
    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.mel = MelSpectrogram(cfg)

    def forward(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.mel(y), self.mel(target))


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "hinge":
        terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]
    elif kind == "lsgan":
        terms = [((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake)]
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; use 'hinge' or 'lsgan'")
    return sum(terms) / len(terms)


def generator_adv_loss(fake: list[torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "hinge":
        terms = [F.relu(1 - f).mean() for f in fake]
    elif kind == "lsgan":
        terms = [((1 - f) ** 2).mean() for f in fake]
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; use 'hinge' or 'lsgan'")
    return sum(terms) / len(terms)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator features of real (constants) and generated audio."""
    terms = [F.l1_loss(f, r.detach()) for rs, fs in zip(real, fake) for r, f in zip(rs, fs)]
    return sum(terms) / len(real)
