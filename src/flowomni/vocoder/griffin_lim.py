"""Griffin-Lim: the weight-free default vocoder, in plain torch.

log-mel -> linear magnitude by non-negative least squares (pseudo-inverse start, then a few
projected-gradient steps: the pseudo-inverse alone smears energy and goes negative), then
fast Griffin-Lim (Perraudin et al. 2013: the phase update extrapolates with momentum, which
converges in far fewer iterations than plain Griffin-Lim).
"""

from __future__ import annotations

import functools
import re

import torch

from flowomni.audio.istft import istft
from flowomni.audio.mel import MelConfig, mel_filterbank
from flowomni.vocoder.base import Vocoder

DEFAULT_ITERS = 32
_NAME = re.compile(r"^griffin-lim(?:-(\d+))?$")


def parse_name(name: str) -> int | None:
    """ "griffin-lim" -> 32, "griffin-lim-N" -> N, anything else -> None."""
    m = _NAME.match(name)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else DEFAULT_ITERS


@functools.lru_cache(maxsize=8)
def _filterbank_inverse(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None):
    """(filterbank [M, F], pseudo-inverse [F, M], 1 / Lipschitz constant), from one SVD."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
    u, s, vh = torch.linalg.svd(fb.double(), full_matrices=False)
    keep = s > s[0] * 1e-6
    pinv = (vh[keep].T / s[keep]) @ u[:, keep].T
    return fb, pinv.float(), float(1.0 / s[0] ** 2)


class MelInverter:
    """log-mel [B, T, n_mels] -> linear STFT magnitude [B, T, n_fft//2+1], non-negative."""

    def __init__(self, cfg: MelConfig, iters: int = 10, device: torch.device | str = "cpu") -> None:
        fb, pinv, self.step = _filterbank_inverse(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.fb, self.pinv = fb.to(device), pinv.to(device)
        self.iters = iters

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        mel = torch.exp(log_mel)
        mag = torch.clamp(mel @ self.pinv.T, min=0.0)
        for _ in range(self.iters):  # projected gradient on 0.5 * ||mag fb^T - mel||^2, mag >= 0
            mag = torch.clamp(mag - self.step * ((mag @ self.fb.T - mel) @ self.fb), min=0.0)
        return mag


class GriffinLim(Vocoder):
    """Fast Griffin-Lim with momentum; `n_iter` trades speed for phase quality."""

    def __init__(
        self,
        mel_cfg: MelConfig,
        n_iter: int = DEFAULT_ITERS,
        *,
        momentum: float = 0.99,
        nnls_iters: int = 10,
        seed: int = 0,
        left_context: int = 16,
        lookahead_frames: int = 6,
        chunk_frames: int = 8,
        crossfade: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if n_iter < 1:
            raise ValueError(f"griffin-lim needs at least 1 iteration, got {n_iter}")
        if not 0 <= momentum < 1:
            raise ValueError(f"griffin-lim momentum must be in [0, 1), got {momentum}")
        self.cfg = mel_cfg
        self.name = "griffin-lim" if n_iter == DEFAULT_ITERS else f"griffin-lim-{n_iter}"
        self.sample_rate, self.hop_length, self.n_mels = mel_cfg.sample_rate, mel_cfg.hop_length, mel_cfg.n_mels
        self.n_iter, self.momentum, self.seed = n_iter, momentum, seed
        self.win_length = mel_cfg.win_length or mel_cfg.n_fft
        self.device = torch.device(device)
        self.window = torch.hann_window(self.win_length, device=self.device)
        self.inverter = MelInverter(mel_cfg, nnls_iters, self.device)
        self.left_context, self.lookahead_frames, self.chunk_frames = left_context, lookahead_frames, chunk_frames
        self.crossfade = self.hop_length if crossfade is None else crossfade

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        """T * hop samples -> T frames (the (T+1)-th, centred past the end, is not ours)."""
        pad_mode = "reflect" if x.shape[-1] > self.cfg.n_fft // 2 else "constant"  # reflect needs > pad samples
        spec = torch.stft(
            x,
            self.cfg.n_fft,
            self.hop_length,
            self.win_length,
            self.window,
            center=True,
            pad_mode=pad_mode,
            return_complex=True,
        )
        return spec[..., : x.shape[-1] // self.hop_length]

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return istft(spec, self.cfg.n_fft, self.hop_length, self.window, length)

    def synthesize(self, mel: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        mag = self.inverter(mel).transpose(1, 2)  # [B, F, T]
        length = mel.shape[1] * self.hop_length
        n_pre = 0 if prefix is None else prefix.shape[-1]
        gen = torch.Generator().manual_seed(self.seed)
        phase = 2 * torch.pi * torch.rand(mag.shape, generator=gen).to(mag.device)  # the same on every device
        angles = torch.view_as_complex(torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1))
        if n_pre:  # start the known part's frames from the phase of the samples already emitted
            x = self._istft(mag * angles, length)
            x[:, :n_pre] = prefix
            angles = torch.sgn(self._stft(x))
        # the phase update runs on real views of the complex tensors: several times faster on CPU
        rebuilt_prev = torch.zeros_like(torch.view_as_real(angles))
        alpha = self.momentum / (1 + self.momentum)
        for _ in range(self.n_iter):
            x = self._istft(mag * angles, length)
            if n_pre:
                x[:, :n_pre] = prefix
            rebuilt = torch.view_as_real(self._stft(x))
            a = rebuilt - alpha * rebuilt_prev
            norm = torch.hypot(a[..., 0], a[..., 1]).add_(1e-16).unsqueeze(-1)
            angles = torch.view_as_complex(a.div_(norm))
            rebuilt_prev = rebuilt
        x = self._istft(mag * angles, length)
        if n_pre:
            x[:, :n_pre] = prefix
        return x
