"""The discrete speech head: Mini-Omni-style codec codes with a delay across codebooks.

Each mel group is quantised by the model's frozen MelCodec into n_q codes (residual stages).
As in Mini-Omni, codebook c of speech step j carries code c of group j - c, so one LLM step
predicts all n_q codebooks at once while the fine stages of a group still see its coarse
stages (they were fed back c steps earlier). K groups thus take K + n_q - 1 GEN positions:

    step j       0    1    2    3    4          (K = 3 groups, n_q = 3)
    codebook 0   g0.0 g1.0 g2.0 END  -
    codebook 1   -    g0.1 g1.1 g2.1 -
    codebook 2   -    -    g0.2 g1.2 g2.2

'-' is the PAD code (id codebook_size); they are fixed by the step index and the end, so
they are fed as PAD but not trained (IGNORE targets) and the decoder forces them. The PAD
in codebook 0 after the last group ('END') is the one the model chooses: it ends the
speech, and the remaining n_q - 1 steps drain the delay before STOP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.audio.stats import FeatureStats
from flowomni.config import Bounds
from flowomni.model.codec import CodecConfig, MelCodec
from flowomni.model.layout import GEN, IGNORE, STOP
from flowomni.model.sampling import sample_tokens
from flowomni.model.speech_head import SpeechHead, SpeechStream

log = logging.getLogger(__name__)


@dataclass
class CodeHeadConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {"hidden": (0, 65536), "temperature": (0, 100), "top_k": (0, None)}

    hidden: int = 0  # >0: an MLP of this width before the n_q linear heads
    temperature: float = 0.0  # code sampling at inference; 0: greedy (as Mini-Omni's top_k=1)
    top_k: int = 0


def delay_codes(codes: torch.Tensor, n_real: torch.Tensor, pad: int) -> torch.Tensor:
    """Codes [B, K, n_q] of groups (item b: the first n_real[b] are real) -> delayed code
    vectors [B, K + n_q - 1, n_q]: out[b, j, c] = codes[b, j - c, c], or `pad` where j - c
    is not a real group of item b."""
    b, k, n_q = codes.shape
    j = torch.arange(k + n_q - 1, device=codes.device)[:, None]
    c = torch.arange(n_q, device=codes.device)[None, :]
    g = j - c  # [J, n_q]: the group each slot carries
    valid = (g[None] >= 0) & (g[None] < n_real.to(codes.device)[:, None, None])
    if k == 0:
        return torch.full((b, n_q - 1, n_q), pad, dtype=torch.long, device=codes.device)
    picked = codes[:, g.clamp(0, k - 1), c.expand_as(g)]  # [B, J, n_q]
    return torch.where(valid, picked, torch.full_like(picked, pad))


def undelay_codes(delayed: torch.Tensor) -> torch.Tensor:
    """Delayed vectors [..., J, n_q] -> group codes [..., J - n_q + 1, n_q] (inverse of
    delay_codes for the real groups)."""
    n_q = delayed.shape[-1]
    k = delayed.shape[-2] - n_q + 1
    g = torch.arange(k, device=delayed.device)[:, None]
    c = torch.arange(n_q, device=delayed.device)[None, :]
    return delayed[..., g + c, c.expand(k, n_q)]


def forced_pad(j: torch.Tensor, end: torch.Tensor, n_q: int) -> torch.Tensor:
    """[N, n_q] mask of the slots of step j [N] that must be PAD, given the number of real
    groups `end` [N] (-1: not known yet): before the delay reaches a codebook, or after its
    last group. Codebook 0 at step `end` is the model's own END choice, not forced."""
    c = torch.arange(n_q, device=j.device)[None, :]
    jj, ee = j[:, None], end[:, None]
    return (jj < c) | ((ee >= 0) & (jj - c >= ee) & ~((c == 0) & (jj == ee)))


class CodeEmbedding(nn.Module):
    """Codes [..., n_q] (PAD allowed; IGNORE is read as PAD) -> sum of per-codebook embeddings."""

    def __init__(self, n_q: int, vocab: int, d: int) -> None:
        super().__init__()
        self.n_q, self.vocab = n_q, vocab
        self.emb = nn.Embedding(n_q * vocab, d)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.where(codes < 0, self.vocab - 1, codes)
        offsets = torch.arange(self.n_q, device=codes.device) * self.vocab
        return self.emb(codes + offsets).sum(-2)


class CodeHead(nn.Module):
    """Hidden states [N, D] -> logits [N, n_q, vocab]: one linear classifier per codebook."""

    def __init__(self, d: int, n_q: int, vocab: int, hidden: int = 0) -> None:
        super().__init__()
        self.n_q, self.vocab = n_q, vocab
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU()) if hidden else nn.Identity()
        self.out = nn.Linear(hidden or d, n_q * vocab)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(h)).view(*h.shape[:-1], self.n_q, self.vocab)


class DiscreteSpeech(SpeechHead):
    def __init__(
        self, cc: CodecConfig, cfg: CodeHeadConfig, d: int, n_mels: int, group: int, *, fresh: bool = True
    ) -> None:
        """`cc`: model.codec; `cfg`: model.code_head; `d`: the backbone width; `group`: mel
        frames per step; `fresh`: a new model, so the fitted codec `cc.path` names is loaded."""
        super().__init__()
        self.n_q, self.pad = cc.n_q, cc.codebook_size
        self.extra_groups = cc.n_q - 1
        self.cfg = cfg
        self.codec = MelCodec(cc.n_q, cc.codebook_size, group, n_mels)
        if fresh and cc.path:
            loaded = MelCodec.load(cc.path)
            loaded.check_fits(cc.n_q, cc.codebook_size, group, n_mels, where=cc.path)
            self.codec.load_state_dict(loaded.state_dict())
        self.code_in = CodeEmbedding(cc.n_q, cc.codebook_size + 1, d)
        self.code_head = CodeHead(d, cc.n_q, cc.codebook_size + 1, cfg.hidden)

    def units(self, groups: torch.Tensor, n_real: torch.Tensor, stats: FeatureStats) -> torch.Tensor:
        """Delayed code vectors [B, K + n_q - 1, n_q]; slots the decoder forces are IGNORE."""
        codes = self.codec.encode(groups)
        delayed = delay_codes(codes, n_real, self.pad)
        j = torch.arange(delayed.shape[1], device=groups.device)
        forced = forced_pad(j.repeat(len(n_real)), n_real.to(groups.device).repeat_interleave(len(j)), self.n_q)
        return delayed.masked_fill(forced.view_as(delayed), IGNORE)

    def embed(self, units: torch.Tensor, *, noisy: bool = False) -> torch.Tensor:
        return self.code_in(units)

    def loss(self, h: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        logits = self.code_head(h)
        return F.cross_entropy(logits.flatten(0, 1).float(), units.flatten(), ignore_index=IGNORE)

    def zero_loss(self, h: torch.Tensor) -> torch.Tensor:
        return self.code_head(h[:1, 0]).sum() * 0 + self.code_in.emb.weight[:1].sum() * 0

    def predict_mel(self, h: torch.Tensor, n_real: int, stats: FeatureStats, **kw: Any) -> torch.Tensor:
        """Greedy codes of each group's slots (PAD excluded), undelayed and decoded."""
        logits = self.code_head(h[: n_real + self.n_q - 1])
        codes = logits[..., : self.pad].argmax(-1)
        return self.codec.decode(undelay_codes(codes))

    def stream(self, batch_size: int, gen: Any, stats: FeatureStats) -> SpeechStream:
        return CodeStream(self, batch_size, gen)


class CodeStream(SpeechStream):
    """Samples one delayed code vector per GEN step and emits group g at step g + n_q - 1,
    once all its codebooks are known, so every output is a complete raw log-mel group."""

    def __init__(self, head: DiscreteSpeech, batch_size: int, gen: Any) -> None:
        self.head = head
        dev = head.codec.codebooks.device
        temperature, top_k = getattr(gen, "code_temperature", None), getattr(gen, "code_top_k", None)
        self.temperature = head.cfg.temperature if temperature is None else temperature
        self.top_k = head.cfg.top_k if top_k is None else top_k
        self.steps = torch.zeros(batch_size, dtype=torch.long, device=dev)  # delayed vectors drawn so far
        self.end = torch.full((batch_size,), -1, dtype=torch.long, device=dev)  # real groups, once known
        self.history = torch.full((batch_size, 64, head.n_q), head.pad, dtype=torch.long, device=dev)

    def drained(self) -> torch.Tensor:
        return (self.end >= 0) & (self.steps >= self.end + self.head.n_q - 1)

    def constrain(self, allowed: torch.Tensor) -> torch.Tensor:
        """Speech ends by codebook 0's END code, then STOP comes exactly when the delay has
        drained (as in every training layout): no STOP before, no GEN after. With a single
        codebook there is no delay and no END slot: the state head's STOP ends speech."""
        if self.head.n_q == 1:
            return allowed
        done = self.drained()
        allowed = allowed.clone()
        allowed[:, STOP] &= done
        allowed[:, GEN] &= ~done
        return allowed

    def step(
        self, h: torch.Tensor, gen: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        b, head = h.shape[0], self.head
        out: list[torch.Tensor | None] = [None] * b
        if not gen.any():
            return None, out
        rows = torch.nonzero(gen, as_tuple=True)[0]
        j, end = self.steps[rows], self.end[rows]
        logits = head.code_head(h[rows]).float()  # [G, n_q, V + 1]
        forced = forced_pad(j, end, head.n_q)
        pad_ok = forced.clone()
        if head.n_q > 1:  # codebook 0 may end the speech (one codebook: STOP ends it)
            pad_ok[:, 0] |= end < 0
        logits[..., : head.pad] = logits[..., : head.pad].masked_fill(forced[..., None], float("-inf"))
        logits[..., head.pad] = logits[..., head.pad].masked_fill(~pad_ok, float("-inf"))
        codes = sample_tokens(
            logits.flatten(0, 1), temperature=self.temperature, top_k=self.top_k, generator=generator
        ).view(len(rows), head.n_q)
        self.end[rows] = torch.where((end < 0) & (codes[:, 0] == head.pad), j, end)
        if int(j.max()) >= self.history.shape[1]:
            self.history = torch.cat([self.history, torch.full_like(self.history, head.pad)], 1)
        self.history[rows, j] = codes
        self.steps[rows] = j + 1
        # group g = j - (n_q - 1) is complete now, unless it lies past the end
        g, end = j - (head.n_q - 1), self.end[rows]
        ready = (g >= 0) & ((end < 0) | (g < end))
        if ready.any():
            r, gg = rows[ready], g[ready]
            c = torch.arange(head.n_q, device=h.device)
            group_codes = self.history[r[:, None], gg[:, None] + c, c]  # [M, n_q]
            mel = head.codec.decode(group_codes)
            for i, row in enumerate(r.tolist()):
                out[row] = mel[i]
        units = torch.full((b, head.n_q), head.pad, dtype=torch.long, device=h.device)
        units[rows] = codes
        return units, out
