"""Streaming the neural vocoder at one-shot cost: every frame goes through the trunk once.

The generic stream (base.py) re-synthesises each chunk with its whole receptive field: for
the shipped vocoder 36 frames of left context and 9 of lookahead around every chunk, which
made streaming in 4-frame pushes cost ~25x one-shot synthesis (reports/vocoder.json). Here
each convolution keeps the last `kernel - 1` input frames it saw (its state) and only new
frames are computed, as a causal streaming convolution does; the frames a convolution cannot
compute yet (its `lookahead` future frames are missing) wait in that state. At the end of the
utterance each layer is closed with the zero frames one-shot synthesis pads it with, so the
output equals the one-shot output. Only the inverse STFT is windowed (1 frame back, 2 ahead),
over the trunk outputs kept here.

What is left is a fixed cost per call (~100 small ops), so the stream makes few chunks (base.py)
and runs the trunk step as a frozen TorchScript graph, as the one-shot trunk does. Slices are
written relative to the end of each layer's input, so one traced graph holds for any number of
new frames and for the first call (whose states are one frame shorter); the last call, with
the end padding, is a second graph.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.vocoder.base import MAX_CHUNK_FRAMES, VocoderStream

log = logging.getLogger(__name__)


def _advance(
    conv: nn.Module, state: torch.Tensor, x: torch.Tensor, final: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One convolution's step: its kept frames `state` and new input x [1, n, C] -> (output for
    every frame now computable, the input frames those are centred on, the frames to keep).
    Not final, the caller guarantees at least one output frame (see StreamTrunk)."""
    k = conv.kernel_size[0]
    left, lookahead = conv.pad
    x = torch.cat([state, x], dim=1)
    if final and lookahead:  # one-shot synthesis pads the end of every layer's input with zeros
        x = F.pad(x, (0, 0, 0, lookahead))
    centre = x[:, left:-lookahead] if lookahead else x[:, left:]
    return conv.valid(x), centre, x[:, 1 - k :] if k > 1 else x[:, :0]


def initial_states(run: nn.Module, like: torch.Tensor) -> list[torch.Tensor]:
    """Each convolution's left zero padding, as one-shot synthesis starts."""
    convs = [run.embed, *(b.dwconv for b in run.blocks)]
    return [
        like.new_zeros(1, c.pad[0], c.in_channels, dtype=c.weight.dtype if i == 0 else like.dtype)
        for i, c in enumerate(convs)
    ]


class StreamTrunk(nn.Module):
    """The generator's trunk as a step over new mel frames with per-convolution states."""

    def __init__(self, run: nn.Module, final: bool = False) -> None:
        super().__init__()
        self.run, self.final = run, final

    def forward(self, mel: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """mel [1, n, M] (n >= the trunk's lookahead + 1 on the first call) -> (trunk outputs for
        the frames now final [1, n', 2F], new states)."""
        run, final = self.run, self.final
        y, _, s = _advance(run.embed, states[0], mel.to(run.embed.weight.dtype), final)
        new = [s]
        x = run.norm(y.to(run.norm.weight.dtype))
        for block, state in zip(run.blocks, states[1:]):
            y, centre, s = _advance(block.dwconv, state, x, final)
            new.append(s)
            x = block.mix(centre, y)
        return run.head(run.final_norm(x).to(run.head.weight.dtype)).float(), new


def frozen_step(step: StreamTrunk, mel_channels: int, like: torch.Tensor) -> nn.Module:
    """`step` as a frozen TorchScript graph, or itself if tracing fails (only speed is lost)."""
    lookahead = sum(c.pad[1] for c in [step.run.embed, *(b.dwconv for b in step.run.blocks)])
    example = (like.new_zeros(1, lookahead + 2, mel_channels), initial_states(step.run, like))
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices
            return torch.jit.freeze(torch.jit.trace(step.eval(), example))
    except Exception as e:  # noqa: BLE001
        log.warning("vocoder stream: could not freeze the trunk step (%s: %s); running it eagerly", type(e).__name__, e)
        return step


class NeuralStream(VocoderStream):
    def __init__(
        self,
        vocoder,
        max_chunk_frames: int = MAX_CHUNK_FRAMES,  # noqa: ANN001 - NeuralVocoder
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(vocoder, max_chunk_frames, clock)
        gen, run = vocoder.generator, vocoder._run  # the generator as it runs (bf16 products, packed linears)
        self._run = run
        like = torch.zeros(0, device=self.device)
        self._states: list[torch.Tensor] | None = None
        self._step, self._last = vocoder.stream_step(like, final=False), vocoder.stream_step(like, final=True)
        self._like = like
        n_fft, hop = gen.n_fft, gen.hop
        self.left_context = (n_fft // 2 - 1) // hop  # the iSTFT's reach; the trunk keeps its own state
        self.window_lookahead = (n_fft // 2 + hop - 1) // hop
        self._fed = 0  # mel frames given to the trunk
        self._spec = like.new_zeros(1, 0, gen.head.out_features)  # trunk outputs from `_spec_offset` on
        self._spec_offset = 0

    @torch.inference_mode()
    def _synthesize(self, start: int, end: int, final: bool) -> torch.Tensor:
        received = self.frames_received
        if received > self._fed or final:
            mel = self._mel[None, self._fed - self._offset :]
            states = self._states if self._states is not None else initial_states(self._run, self._like)
            with torch.jit.optimized_execution(False):  # see NeuralVocoder: no re-specialising per length
                out, self._states = (self._last if final else self._step)(mel, states)
            self._spec = torch.cat([self._spec, out], dim=1)
            self._fed = received
        spec = self._spec[:, start - self._spec_offset : end - self._spec_offset]
        return self._run.waveform(spec)[0]

    def _drop_frames(self) -> None:
        # the trunk holds its own context: mel frames are needed until fed, spectra one frame back
        fed = self._fed - self._offset
        if fed > 0:
            self._mel, self._offset = self._mel[fed:], self._offset + fed
        drop = max(0, self._done - self.left_context) - self._spec_offset
        if drop > 0:
            self._spec, self._spec_offset = self._spec[:, drop:], self._spec_offset + drop
