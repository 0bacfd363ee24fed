"""The speech-output half of the model, behind one small interface with two variants.

A GEN position of the layout reads a speech *unit* as input and the position before it
learns to predict that unit. For the flow variant (the paper) a unit is a normalised mel
group [k, n_mels], predicted by flow matching; for the discrete baseline (Mini-Omni style,
code_head.py) it is a vector of n_q codec codes, delayed across codebooks, predicted by n_q
cross-entropy heads. FlowOmni and the decoder only talk to `SpeechHead`/`SpeechStream`, and
`FlowOmni.build_speech_head` is the one place that picks the variant. Each head takes its
own sub-config (FlowHeadConfig; CodecConfig + CodeHeadConfig) and a few numbers, never the
whole ModelConfig, so model/config.py can import the heads' configs without a cycle.

A head is a module of the model, `model.speech` (its parts: `model.speech.flow`, ...): one
name for each part. Checkpoint files keep the flat names they always had (`flow.*`, `mel_in.*`;
see FlowOmni.checkpoint_state).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from flowomni.audio.stats import FeatureStats
from flowomni.model.flow_head import FlowHead, FlowHeadConfig


class SpeechStream(ABC):
    """Per-decode state of the speech output for a batch of prompts (see inference.decoder)."""

    def constrain(self, allowed: torch.Tensor) -> torch.Tensor:
        """Narrow the allowed next speech states [B, NUM_STATES] beyond the generic grammar."""
        return allowed

    @abstractmethod
    def step(
        self, h: torch.Tensor, gen: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """Draw the units of the rows whose next state is GEN (mask `gen` [B]) from hidden
        states h [B, D]. Returns (units [B, ...] to feed back, or None if no row is GEN;
        per row a new raw log-mel group [k, n_mels] that is now complete, or None)."""


class SpeechHead(nn.Module, ABC):
    extra_groups: int = 0  # GEN positions a spoken answer has beyond its real mel groups

    @abstractmethod
    def units(self, groups: torch.Tensor, n_real: torch.Tensor, stats: FeatureStats) -> torch.Tensor:
        """Raw answer mel groups [B, K, k, n_mels] (item b has n_real[b] real groups, then
        silence) -> the unit of every GEN index [B, K + extra_groups, ...]."""

    @abstractmethod
    def embed(self, units: torch.Tensor, *, noisy: bool = False) -> torch.Tensor:
        """Units [N, ...] -> speech inputs [N, D] (the GEN state embedding is added by the model).
        `noisy`: training-time input corruption (exposure bias), if the variant has one."""

    @abstractmethod
    def loss(self, h: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """Scalar training loss for predicting units [N, ...] from hidden states h [N, D]."""

    @abstractmethod
    def zero_loss(self, h: torch.Tensor) -> torch.Tensor:
        """A zero that still touches the head's parameters (a batch without speech, under DDP)."""

    @abstractmethod
    def predict_mel(self, h: torch.Tensor, n_real: int, stats: FeatureStats, **kw: Any) -> torch.Tensor:
        """Teacher-forced prediction: hidden states of one item's GEN targets in order [J, D]
        -> its raw log-mel groups [n_real, k, n_mels]."""

    @abstractmethod
    def stream(self, batch_size: int, gen: Any, stats: FeatureStats) -> SpeechStream:
        """Decoding state for `batch_size` prompts; `gen` is an inference GenerationConfig."""


class FlowSpeech(SpeechHead):
    """The paper's continuous head: mel groups in through an MLP, out through flow matching."""

    def __init__(
        self, cfg: FlowHeadConfig, d: int, n_mels: int, group: int, *, feedback_noise: float, init_std: float = 0.02
    ) -> None:
        """`cfg`: model.flow; `d`: the backbone width; `group`: mel frames per step;
        `feedback_noise`: model.feedback_noise (see `embed`)."""
        super().__init__()
        self.feedback_noise = feedback_noise
        self.mel_in = nn.Sequential(nn.Linear(group * n_mels, d), nn.GELU(), nn.Linear(d, d))
        # its output is summed with a token embedding: start at that scale (std init_std per
        # dimension), not nn.Linear's ~10x larger default, so the text stays readable
        nn.init.normal_(self.mel_in[-1].weight, std=init_std / math.sqrt(d))
        nn.init.zeros_(self.mel_in[-1].bias)
        self.flow = FlowHead(cfg, d, n_mels, group)

    def units(self, groups: torch.Tensor, n_real: torch.Tensor, stats: FeatureStats) -> torch.Tensor:
        return stats.normalize(groups)

    def embed(self, units: torch.Tensor, *, noisy: bool = False) -> torch.Tensor:
        if noisy and self.feedback_noise > 0:
            # at inference the fed-back groups are samples, not recordings: train on noisy
            # copies so the text stream does not lean on exact mel values (exposure bias)
            units = units + self.feedback_noise * torch.randn_like(units)
        return self.mel_in(units.flatten(-2))

    def loss(self, h: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        return self.flow.loss(h, units).mean()

    @torch.no_grad()
    def draw(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised groups [N, k, F] as inference draws them from hidden states h [N, D]: the
        configured ODE (the one a distilled student imitates) without guidance."""
        method = "euler" if self.flow.cfg.method == "student" else None
        return self.flow.sample(h, method=method, cfg_scale=1.0, generator=generator)

    def zero_loss(self, h: torch.Tensor) -> torch.Tensor:
        return self.flow.loss(h[:1, 0], h.new_zeros(1, self.flow.group, self.flow.frame_dim)).mean() * 0

    def predict_mel(self, h: torch.Tensor, n_real: int, stats: FeatureStats, **kw: Any) -> torch.Tensor:
        return stats.denormalize(self.flow.sample(h[:n_real], **kw))

    def stream(self, batch_size: int, gen: Any, stats: FeatureStats) -> SpeechStream:
        return FlowStream(self.flow, gen, stats)


class FlowStream(SpeechStream):
    def __init__(self, flow: FlowHead, gen: Any, stats: FeatureStats) -> None:
        self.flow, self.gen, self.stats = flow, gen, stats

    def step(
        self, h: torch.Tensor, gen: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        rows = gen.tolist()  # one sync; a streamed answer (batch 1) takes the unmasked path
        if not any(rows):
            return None, [None] * h.shape[0]
        g = self.gen
        kw = dict(
            steps=g.flow_steps,
            method=g.flow_method,
            temperature=g.flow_temperature,
            cfg_scale=g.cfg_scale,
            generator=generator,
        )
        if all(rows):
            units = self.flow.sample(h, **kw)
        else:
            z = self.flow.sample(h[gen], **kw)
            units = torch.zeros(h.shape[0], *z.shape[1:], device=h.device, dtype=z.dtype)
            units[gen] = z
        raw = self.stats.denormalize(units)
        return units, [raw[i] if r else None for i, r in enumerate(rows)]
