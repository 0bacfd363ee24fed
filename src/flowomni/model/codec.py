"""MelCodec: residual vector quantisation of mel frame groups, for the discrete baseline.

The Mini-Omni-style variant of the model predicts speech as discrete codes instead of
continuous mel; to compare the two fairly the codes quantise exactly what the flow head
draws: one group of k normalised log-mel frames, flattened to k * n_mels dims. Stage c of
`n_q` picks the nearest of `codebook_size` codewords to what stages 0..c-1 left over; the
reconstruction is the sum of the chosen codewords, so any prefix of the codes is a coarser
reconstruction. Codebooks are fitted by k-means (k-means++ seeding, then Lloyd iterations)
stage by stage on the residuals of a corpus. The codec keeps its own normalisation stats so
its codes never depend on anything outside its checkpoint folder (safetensors + YAML).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from flowomni.audio.stats import FeatureStats
from flowomni.config import Bounds

log = logging.getLogger(__name__)

CHUNK = 8192  # vectors per distance computation (bounds memory at CHUNK x codebook_size floats)


@dataclass
class CodecConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "n_q": (1, 64),
        "codebook_size": (2, 1 << 20),
        "iters": (0, 100_000),
        "init_vectors": (1, 1 << 30),
        "max_groups": (1, 1 << 40),
    }

    n_q: int = 8  # codebooks (residual stages)
    codebook_size: int = 1024  # codewords per codebook; code id `codebook_size` is PAD
    path: str = ""  # trained codec folder (`flowomni train-codec`), loaded into a fresh model
    # fitting (`flowomni train-codec`)
    iters: int = 15  # Lloyd iterations per stage
    init_vectors: int = 16384  # k-means++ seeds from at most this many vectors per stage
    max_groups: int = 100_000  # training groups drawn from the corpus (evenly over items)
    seed: int = 0


class CodecError(ValueError):
    """A codec folder that is missing, or does not fit the model it is loaded into."""


def to_groups(mel: torch.Tensor, group: int, silence: float) -> torch.Tensor:
    """Raw log-mel [T, n_mels] -> groups [ceil(T / k), k, n_mels], the last one padded with
    `silence` (the log-mel floor), exactly as training batches cut answers."""
    n = -(-mel.shape[0] // group)
    out = mel.new_full((n * group, mel.shape[1]), silence)
    out[: mel.shape[0]] = mel
    return out.view(n, group, mel.shape[1])


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest codeword, for vectors x [N, D]."""
    c2 = codebook.pow(2).sum(1)
    idx, dist = [], []
    for chunk in x.split(CHUNK):
        d = c2[None, :] - 2 * chunk @ codebook.T  # |x - c|^2 - |x|^2
        m, i = d.min(dim=1)
        idx.append(i)
        dist.append((m + chunk.pow(2).sum(1)).clamp(min=0))
    return torch.cat(idx), torch.cat(dist)


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to the
    squared distance to the nearest centre so far (spreads centres over the data)."""
    n = x.shape[0]
    centres = torch.empty(k, x.shape[1], dtype=x.dtype)
    centres[0] = x[torch.randint(n, (1,), generator=generator)]
    d2 = (x - centres[0]).pow(2).sum(1)
    for i in range(1, k):
        total = d2.sum()
        j = (
            torch.multinomial(d2 / total, 1, generator=generator)
            if total > 0
            else torch.randint(n, (1,), generator=generator)
        )
        centres[i] = x[j]
        d2 = torch.minimum(d2, (x - centres[i]).pow(2).sum(1))
    return centres


def lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int) -> torch.Tensor:
    """Lloyd iterations; a cluster left empty is re-seeded with the worst-served vector."""
    k = centres.shape[0]
    for _ in range(iters):
        idx, dist = nearest(x, centres)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, idx, x)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            worst = dist.topk(int(empty.sum())).indices
            centres[empty] = x[worst]
    return centres


class MelCodec(nn.Module):
    """encode(raw log-mel groups [..., k, n_mels]) -> codes [..., n_q]; decode(codes) -> groups.

    Everything is a buffer: the codec is frozen inside the model and travels with its weights.
    """

    def __init__(self, n_q: int, codebook_size: int, group: int, n_mels: int) -> None:
        super().__init__()
        if n_q < 1 or codebook_size < 2:
            raise CodecError(f"a codec needs n_q >= 1 and codebook_size >= 2, got {n_q} and {codebook_size}")
        self.n_q, self.codebook_size, self.group, self.n_mels = n_q, codebook_size, group, n_mels
        self.register_buffer("codebooks", torch.zeros(n_q, codebook_size, group * n_mels))
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    @property
    def pad(self) -> int:
        """The code id meaning "no group here" (Mini-Omni delay pattern): one past the codebook."""
        return self.codebook_size

    @property
    def stats(self) -> FeatureStats:
        return FeatureStats(self.mean, self.std)

    @property
    def fitted(self) -> bool:
        return bool(self.codebooks.abs().sum() > 0)

    # ---- quantisation ----
    def _flat(self, groups: torch.Tensor) -> torch.Tensor:
        if groups.shape[-2:] != (self.group, self.n_mels):
            raise ValueError(f"codec takes groups [..., {self.group}, {self.n_mels}], got {tuple(groups.shape)}")
        return self.stats.normalize(groups.float()).flatten(-2)

    @torch.no_grad()
    def encode(self, groups: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Raw log-mel groups [..., k, n_mels] -> codes [..., n_q] (long), greedy residual search."""
        with torch.autocast(groups.device.type, enabled=False):  # exact distances under bf16 training
            return self._encode(self._flat(groups), n_q)

    def _encode(self, x: torch.Tensor, n_q: int | None) -> torch.Tensor:
        lead, n_q = x.shape[:-1], n_q or self.n_q
        r = x.reshape(-1, x.shape[-1])
        codes = []
        for cb in self.codebooks[:n_q]:
            i, _ = nearest(r, cb)
            r = r - cb[i]
            codes.append(i)
        return torch.stack(codes, -1).view(*lead, n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [..., q] (q <= n_q: the first q stages) -> raw log-mel groups [..., k, n_mels].
        PAD codes contribute nothing."""
        q = codes.shape[-1]
        if q > self.n_q:
            raise ValueError(f"{q} codes per group but the codec has {self.n_q} codebooks")
        padded = torch.cat([self.codebooks[:q], self.codebooks.new_zeros(q, 1, self.codebooks.shape[-1])], 1)
        x = padded[torch.arange(q, device=codes.device), codes.clamp(0, self.pad)].sum(-2)
        return self.stats.denormalize(x.view(*codes.shape[:-1], self.group, self.n_mels))

    @torch.no_grad()
    def error(self, groups: torch.Tensor) -> list[float]:
        """Mean squared error in normalised units after 1, 2, ..., n_q stages (falls with q)."""
        x = self._flat(groups).reshape(-1, self.group * self.n_mels)
        out = []
        for cb in self.codebooks:
            i, _ = nearest(x, cb)
            x = x - cb[i]
            out.append(float(x.pow(2).mean()))
        return out

    # ---- fitting ----
    @torch.no_grad()
    def fit(self, groups: torch.Tensor, *, iters: int = 15, init_vectors: int = 16384, seed: int = 0) -> list[float]:
        """Fit stats and codebooks to raw groups [N, k, n_mels]; returns the error after each
        stage. Deterministic for a given seed (CPU)."""
        n = groups.shape[0]
        if n < self.codebook_size:
            raise CodecError(
                f"{n} training groups cannot fill a codebook of {self.codebook_size}: "
                f"use more data or a smaller codec.codebook_size"
            )
        st = FeatureStats.estimate([groups.reshape(-1, self.n_mels).float().cpu()])
        self.mean.copy_(st.mean)
        self.std.copy_(st.std)
        g = torch.Generator().manual_seed(seed)
        r = self._flat(groups.cpu()).reshape(n, -1)
        errors = []
        for c in range(self.n_q):
            seed_set = r[torch.randperm(n, generator=g)[:init_vectors]] if n > init_vectors else r
            cb = lloyd(r, kmeans_pp(seed_set, self.codebook_size, g), iters)
            self.codebooks[c].copy_(cb)
            r = r - cb[nearest(r, cb)[0]]
            errors.append(float(r.pow(2).mean()))
            log.info("codec stage %d/%d: residual mse %.4f", c + 1, self.n_q, errors[-1])
        return errors

    # ---- files ----
    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """A codec folder: model.safetensors, config.yaml, meta.json (written atomically)."""
        import yaml

        from flowomni.checkpoint import save_checkpoint

        shape = {"n_q": self.n_q, "codebook_size": self.codebook_size, "group": self.group, "n_mels": self.n_mels}
        return save_checkpoint(
            path,
            model_state=dict(self.state_dict()),
            config_yaml=yaml.safe_dump(shape),
            meta=json.loads(json.dumps(meta or {})),
            save_rng=False,
        )

    @classmethod
    def load(cls, path: str | Path) -> MelCodec:
        import yaml

        from flowomni.checkpoint import CheckpointError, check_safe, load_model_state

        try:
            folder = check_safe(path)
        except CheckpointError as e:
            raise CodecError(f"codec {e} (train one with `flowomni train-codec`)") from None
        shape = yaml.safe_load((folder / "config.yaml").read_text())
        codec = cls(**{k: int(shape[k]) for k in ("n_q", "codebook_size", "group", "n_mels")})
        codec.load_state_dict(load_model_state(folder))
        return codec

    def check_fits(self, n_q: int, codebook_size: int, group: int, n_mels: int, where: str = "") -> None:
        want = (n_q, codebook_size, group, n_mels)
        have = (self.n_q, self.codebook_size, self.group, self.n_mels)
        if want != have:
            raise CodecError(
                f"codec {where} has (n_q, codebook_size, group, n_mels) = {have} but the model config asks for {want}"
            )
