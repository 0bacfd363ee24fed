"""Inverse STFT by reshaped overlap-add: what `torch.istft(center=True)` computes, faster on CPU.

torch.istft overlap-adds with a generic col2im kernel and rebuilds the window envelope with
another one on every call; both vocoders call it per chunk (Griffin-Lim 33 times per chunk),
where the two kernels cost more than the inverse FFT itself (measured: ~0.8 of 1.3 ms for 225
frames on one core). When the hop divides the FFT size, every frame is `n_fft / hop` whole
hops, so overlap-add is that many shifted additions of [T, hop] blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _overlap_add(pieces: torch.Tensor, t: int) -> torch.Tensor:
    """Frames cut into whole hops, [B, t or 1 (the same frame t times), r, hop] -> the signal
    [B, (t + r - 1) * hop]: piece j of frame i lands on hop i + j."""
    b, _, r, hop = pieces.shape
    out = pieces.new_zeros(b, t + r - 1, hop)
    for j in range(r):
        out[:, j : j + t] += pieces[:, :, j]
    return out.reshape(b, -1)


def istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """complex spec [B, n_fft // 2 + 1, T] -> real [B, length], as torch.istft(center=True).

    Falls back to torch.istft where the hop does not divide n_fft."""
    if n_fft % hop:
        return torch.istft(spec, n_fft, hop, window.shape[-1], window, center=True, length=length)
    if window.shape[-1] < n_fft:  # torch.istft centres a shorter window in the frame
        left = (n_fft - window.shape[-1]) // 2
        window = F.pad(window, (left, n_fft - window.shape[-1] - left))
    b, _, t = spec.shape
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft, dim=-1) * window
    y = _overlap_add(frames.reshape(b, t, n_fft // hop, hop), t)
    envelope = _overlap_add((window * window).reshape(1, 1, n_fft // hop, hop), t)[0]  # what y is divided by
    start = n_fft // 2
    y, envelope = y[:, start : start + length], envelope[start : start + length]
    if y.shape[-1] < length:  # asked for more samples than the frames reach: zeros, as torch does
        y = F.pad(y, (0, length - y.shape[-1]))
        envelope = F.pad(envelope, (0, length - envelope.shape[-1]), value=1.0)
    return y / torch.where(envelope > 1e-11, envelope, 1.0)
