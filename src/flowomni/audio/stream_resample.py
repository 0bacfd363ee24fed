"""Resampling a stream that arrives in pieces, without seams between them.

`resample` (scipy's polyphase filter) treats every call as a whole signal, so resampling a
stream chunk by chunk puts a click at each boundary. `StreamResampler` evaluates a windowed
sinc at each output instant from a running history of the input instead: pushing a signal
in any chunking and then calling `flush` gives the same samples as pushing it in one piece.
Output lags the input by `half_width` input samples (under 1 ms for the speech rates used
here), which `flush` releases at the end of the stream.
"""

from __future__ import annotations

import math

import numpy as np


class StreamResampler:
    def __init__(
        self, orig_sr: int, target_sr: int, half_width: int = 16, rolloff: float = 0.94, beta: float = 8.0
    ) -> None:
        """`half_width` taps each side (at the lower of the two rates), a Kaiser-windowed sinc
        with its cutoff at `rolloff` of the lower Nyquist frequency."""
        if orig_sr <= 0 or target_sr <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
        g = math.gcd(orig_sr, target_sr)
        self.up, self.down = target_sr // g, orig_sr // g  # output n sits at input time n * down / up
        self.cutoff = min(1.0, target_sr / orig_sr) * rolloff  # of the input's Nyquist frequency
        self.width = math.ceil(half_width / min(1.0, target_sr / orig_sr))  # taps each side, input samples
        # one row of taps per output phase: the phases repeat every `up` outputs
        taps = np.arange(-self.width + 1, self.width + 1)
        dist = (np.arange(self.up) / self.up)[:, None] - taps[None, :]
        self._taps = taps
        self._kernels = (self.cutoff * np.sinc(self.cutoff * dist) * _kaiser(dist, self.width, beta)).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self.width, np.float32)  # the silence before the stream starts
        self._buf_start = -self.width  # absolute input index of _buf[0]
        self._n_in = 0
        self._n_out = 0

    def _render(self, n_end: int) -> np.ndarray:
        """Output samples self._n_out .. n_end-1 from the history (every tap is in it)."""
        n = np.arange(self._n_out, n_end, dtype=np.int64)
        base = (n * self.down) // self.up  # the input sample at or before each output instant
        idx = base[:, None] + self._taps[None, :]  # absolute input indices
        kernel = self._kernels[(n * self.down) % self.up]
        self._n_out = n_end
        return np.einsum("ij,ij->i", self._buf[idx - self._buf_start], kernel).astype(np.float32)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples that are final so far."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, pcm])
        self._n_in += len(pcm)
        # output n needs inputs up to base(n) + width
        last_ready = self._n_in - 1 - self.width  # highest base index whose taps are all in
        n_end = 0 if last_ready < 0 else (last_ready * self.up) // self.down + 1
        out = self._render(n_end) if n_end > self._n_out else np.zeros(0, np.float32)
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """The rest of the output (the input is taken to be silent after its end); resets."""
        n_end = -(-self._n_in * self.up // self.down)  # ceil: the whole signal's output length
        self._buf = np.concatenate([self._buf, np.zeros(self.width, np.float32)])
        out = self._render(n_end) if n_end > self._n_out else np.zeros(0, np.float32)
        self.reset()
        return out

    def _trim(self) -> None:
        """Forget input no output will need again."""
        first_needed = (self._n_out * self.down) // self.up - self.width + 1
        drop = min(max(0, first_needed - self._buf_start), len(self._buf))
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop


def _kaiser(dist: np.ndarray, width: int, beta: float) -> np.ndarray:
    """A Kaiser window over [-width, width] evaluated at `dist` (zero outside)."""
    r = np.clip(dist / width, -1.0, 1.0)
    return np.i0(beta * np.sqrt(1.0 - r * r)) / np.i0(beta)
