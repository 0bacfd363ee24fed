"""The vocoder interface, and chunked streaming shared by all vocoders.

Every vocoder maps natural-log mel frames (as made by `MelSpectrogram(answer_mel_config())`)
to exactly `T * hop_length` samples: frame i is centred on sample i * hop_length, so the
output for frames [a, b) is samples [a * hop, b * hop) and chunks join without bookkeeping.

Streaming re-synthesises a window of frames around each new chunk: `left_context` frames
before it (so state such as phase or convolution history is right) and `lookahead_frames`
after it (so samples are only emitted once no later frame can change them). A vocoder whose
output depends on a bounded neighbourhood (the neural one) then streams exactly what it
makes in one shot; an iterative one (Griffin-Lim) is handed the samples already emitted so
it continues them, and its chunks are joined with a short crossfade.

The stream alone decides the chunking (callers push every mel group as it is made). The
first chunk leaves as soon as one frame is past the lookahead: the first sound waits for
nothing but the vocoder's own lookahead. After that a chunk waits for more frames while a
listener who started playing with the first chunk still has half of the audio sent so far
left to hear, up to `max_chunk_frames`; and, unless that listener would run out before the
next push (plus the time to make a chunk and a margin) while pushes come faster than they play,
it is never smaller than what was sent before (chunks at least double: few windows, and a
producer or vocoder slower than real time does not slow itself down further with small ones).
A producer much faster than real time thus gets few large chunks (each window has a fixed cost: ~0.7 ms for
the neural stream on one core, so a clip synthesised in 4-frame windows cost ~25x one-shot),
and the audio buffered ahead grows with the audio sent either way. Time is the stream's clock
(`clock`, wall time unless a test or benchmark paces it); the chunking, never the samples of
the neural vocoder, depends on it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

MAX_CHUNK_FRAMES = 128  # ~1.5 s at 86 Hz: bigger chunks save little
MARGIN_S = 0.05  # a chunk leaves this long before the listener would run out, at the latest
KEEP_AHEAD = 0.5  # ... or when the listener has less than this share of the audio sent left


def as_frames(
    mel: torch.Tensor | np.ndarray, n_mels: int, device: torch.device | str = "cpu", check_finite: bool = True
) -> tuple[torch.Tensor, bool]:
    """Validate mel `[T, n_mels]` or `[B, T, n_mels]`; returns `([B, T, n_mels] float32 on `device`, was_batched)`."""
    mel = torch.as_tensor(mel).detach().to(device)  # a vocoder runs where its weights are (the model's device)
    if mel.dim() not in (2, 3) or mel.shape[-1] != n_mels:
        raise ValueError(
            f"vocoder input must be mel frames [T, {n_mels}] or [B, T, {n_mels}], got shape {tuple(mel.shape)}"
        )
    if check_finite:
        finite(mel)
    batched = mel.dim() == 3
    return (mel if batched else mel[None]).float(), batched


def finite(mel: torch.Tensor) -> None:
    if not torch.isfinite(mel).all():
        raise ValueError("vocoder input mel contains NaN or Inf")


class Vocoder(ABC):
    """mel frames -> waveform. `name` is what a model checkpoint's config stores to find it again."""

    name: str
    sample_rate: int
    hop_length: int
    n_mels: int
    # Streaming geometry (frames): how much past and future a chunk needs, the smallest
    # chunk worth synthesising, and the crossfade (samples) between chunks.
    left_context: int = 0
    lookahead_frames: int = 0
    chunk_frames: int = 1
    crossfade: int = 0
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def synthesize(self, mel: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """mel [B, T, n_mels] -> wav [B, T * hop]. `prefix`: known samples for the start of
        the output (streaming windows), which iterative vocoders continue; others ignore it."""

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor | np.ndarray) -> torch.Tensor:
        """mel [T, n_mels] or [B, T, n_mels] -> float wav [T * hop] or [B, T * hop]."""
        frames, batched = as_frames(mel, self.n_mels, self.device)
        if frames.shape[1] == 0:
            wav = frames.new_zeros(frames.shape[0], 0)
        else:
            wav = self.synthesize(frames)
        return wav if batched else wav[0]

    def stream(
        self, max_chunk_frames: int = MAX_CHUNK_FRAMES, clock: Callable[[], float] = time.perf_counter
    ) -> VocoderStream:
        return VocoderStream(self, max_chunk_frames, clock)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, sample_rate={self.sample_rate}, hop_length={self.hop_length})"
        )


class VocoderStream:
    """Stateful chunked synthesis: `push(mel_chunk)` returns the samples that are now final,
    `flush()` the rest. Concatenated, they equal (or, for Griffin-Lim, closely match) the
    one-shot output. The first samples leave once `lookahead_frames` + 1 frames are in; after
    that a chunk leaves when `due` says so (see the module doc).

    A window synthesised for frames [a, b) spans [a - left_context, b + window_lookahead):
    here the vocoder's whole lookahead; a subclass that keeps state between windows (the
    neural stream) needs less."""

    def __init__(
        self, vocoder: Vocoder, max_chunk_frames: int = MAX_CHUNK_FRAMES, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.vocoder, self.clock = vocoder, clock
        self.device = vocoder.device
        self.hop = vocoder.hop_length
        self.left_context = vocoder.left_context
        self.lookahead_frames = vocoder.lookahead_frames
        self.window_lookahead = vocoder.lookahead_frames
        self.chunk_frames = max(1, vocoder.chunk_frames)
        self.max_chunk_frames = max(self.chunk_frames, max_chunk_frames)
        self.crossfade = min(vocoder.crossfade, vocoder.lookahead_frames * self.hop)
        self._mel = torch.zeros(0, vocoder.n_mels, device=self.device)  # frames from `_offset` on
        self._offset = 0  # absolute index of _mel[0]
        self._new: list[torch.Tensor] = []  # frames pushed after _mel, joined (and checked) when a chunk is made
        self._n_new = 0
        self._done = 0  # frames whose samples were emitted
        self._past = torch.zeros(
            0, device=self.device
        )  # emitted samples kept as context: [(_done - len/hop) * hop, _done * hop)
        self._tail = torch.zeros(
            0, device=self.device
        )  # provisional samples after _done * hop, blended into the next chunk
        self._finished = False
        self.calls = 0  # windows synthesised (for benchmarks and tests)
        self._t_first = 0.0  # clock when the first chunk left
        self._t_push: float | None = None  # clock of the last push
        self._gap = 0.0  # time between pushes, and to make a chunk (moving averages)
        self._cost = 0.0
        self._push_s = 0.0

    def due(self, ready: int, now: float) -> bool:
        """Whether the frames ready (those before `ready`) should leave as a chunk now."""
        pending = ready - self._done
        if pending < 1:
            return False
        if self._done == 0 or pending >= self.max_chunk_frames:
            return True  # the first sound waits for nothing but the lookahead
        sent = self._done * self.hop / self.vocoder.sample_rate
        left = sent - (now - self._t_first)  # what a listener who started with the first chunk has not heard
        if left < self._gap + self._cost + MARGIN_S and self._gap < self._push_s:
            return True  # it would run out before the next push could help (and pushes come faster than they play)
        if pending < min(max(self.chunk_frames, self._done), self.max_chunk_frames):
            return False  # otherwise chunks at least double what was sent: few windows
        return left < KEEP_AHEAD * sent

    @property
    def frames_received(self) -> int:
        return self._offset + self._mel.shape[0] + self._n_new

    @torch.inference_mode()
    def push(self, mel_chunk: torch.Tensor | np.ndarray) -> np.ndarray:
        if self._finished:
            raise RuntimeError("this stream was flushed; start a new one with vocoder.stream()")
        frames, batched = as_frames(mel_chunk, self.vocoder.n_mels, self.device, check_finite=False)
        if batched:
            raise ValueError(f"stream.push takes one utterance's frames [t, n_mels], got shape {tuple(frames.shape)}")
        self._new.append(frames[0])
        self._n_new += frames.shape[1]
        now = self.clock()
        if self._t_push is not None:
            self._gap = 0.5 * self._gap + 0.5 * (now - self._t_push)
        self._t_push = now
        self._push_s = frames.shape[1] * self.hop / self.vocoder.sample_rate  # audio in one push
        ready = self.frames_received - self.lookahead_frames
        if not self.due(ready, now):
            return np.zeros(0, dtype=np.float32)
        out = self._emit(ready, final=False)
        end = self.clock()
        if self._t_first == 0.0:
            self._t_first = end  # (the first window also pays one-time costs: not counted)
        else:
            self._cost = 0.5 * self._cost + 0.5 * (end - now)
        return out

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        return self._emit(self.frames_received, final=True)

    def _synthesize(self, start: int, end: int, final: bool) -> torch.Tensor:
        """Samples of the window of frames [start, end) (start = _done - left_context or 0)."""
        window = self._mel[start - self._offset : end - self._offset]
        n_prefix = (self._done - start) * self.hop
        prefix = self._past[self._past.shape[0] - n_prefix :] if n_prefix else None
        return self.vocoder.synthesize(window[None], prefix=None if prefix is None else prefix[None])[0]

    def _emit(self, upto: int, final: bool) -> np.ndarray:
        """Synthesise the window around frames [_done, upto) and return their samples."""
        if self._new:  # one join and one finiteness check per chunk, not per push
            new, self._new, self._n_new = torch.cat(self._new), [], 0
            finite(new)
            self._mel = torch.cat([self._mel, new])
        if upto <= self._done:  # nothing new (a provisional tail past the last frame is dropped)
            self._tail = torch.zeros(0, device=self.device)
            return np.zeros(0, dtype=np.float32)
        start = max(0, self._done - self.left_context)
        end = self.frames_received if final else min(self.frames_received, upto + self.window_lookahead)
        wav = self._synthesize(start, end, final)
        self.calls += 1
        a, b = (self._done - start) * self.hop, (upto - start) * self.hop
        out = wav[a:b].clone()
        if self._tail.numel():  # fade from the previous window's guess into this window's
            n = min(self._tail.numel(), out.numel())
            ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, torch.pi, n + 2)[1:-1])
            out[:n] = self._tail[:n] * (1 - ramp) + out[:n] * ramp
        self._tail = wav[b : b + self.crossfade].clone() if not final else torch.zeros(0, device=self.device)
        self._done = upto
        keep = self.left_context * self.hop
        self._past = torch.cat([self._past, out])[-keep:] if keep else self._past[:0]
        self._drop_frames()
        return out.float().cpu().numpy()  # the one device-to-host copy of a chunk

    def _drop_frames(self) -> None:
        """Forget mel frames no window will need again."""
        drop = max(0, self._done - self.left_context) - self._offset
        if drop > 0:
            self._mel, self._offset = self._mel[drop:], self._offset + drop
