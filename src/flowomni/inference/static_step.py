"""One decode step of every answer slot, as one graph over a static KV cache.

`Decoder` (decoder.py) steps a fixed batch with transformers' dynamic cache: every step grows
the cache by a concatenation per layer (new shapes every step), and the host reads the sampled
speech states in the middle of a step to decide which rows draw a mel group. On a GPU that is
dozens of small kernel launches and host syncs per step: a step of the 10 M-parameter model
took 30 ms on an H200 (issue 21).

Here the state of `slots` answers lives in fixed tensors: keys and values [slots, kv_heads,
max_len, head_dim] per layer, each slot's at its own positions, and per slot its hidden state,
next position and stream flags. One step -- text head and token sampling, the state head under
its grammar, the flow head (or its one-step student), the feedback projection and the backbone
over the static cache -- is a function of those tensors and of noise drawn beforehand, with no
data-dependent control flow and no host sync, so `torch.compile(mode="reduce-overhead")`
captures it as one CUDA graph. Every voice row draws a mel group; a row whose state is not GEN
does not use it (the GEN rows compute exactly what Decoder computes), and a free slot computes
garbage in its own rows only. Rows after the voice rows hold answers that never speak (text
replies, guided answers' companions): no flow head runs for them.

The backbone's own layers do the work (any Llama/Qwen2-style HF decoder: `layers`, `norm`,
`rotary_emb`): `_StepCache.update` has the signature of transformers' `Cache.update`, so their
attention writes the new key and value at each slot's position and reads the slot's keys back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flowomni.inference.decoder import GenerationConfig, next_states
from flowomni.inference.guide import TextGuide
from flowomni.model import tokenizer as tk
from flowomni.model.backbone import decoder_of
from flowomni.model.layout import GEN, START, STOP
from flowomni.model.sampling import sample_with_noise

STATIC_BACKBONES = ("qwen2", "llama", "mistral", "qwen3")


def unsupported(model: Any) -> str | None:
    """Why `model` cannot decode with static steps (None: it can)."""
    cfg = model.lm.config
    if model.cfg.speech_head != "flow":
        return f"the {model.cfg.speech_head} speech head steps through its own stream"
    if cfg.model_type not in STATIC_BACKBONES:
        return f"backbone type {cfg.model_type!r} (static steps know {', '.join(STATIC_BACKBONES)})"
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        return "sliding-window attention"
    body = decoder_of(model.lm)
    if not all(hasattr(body, a) for a in ("layers", "norm", "rotary_emb")):
        return f"{type(body).__name__} lacks layers/norm/rotary_emb"
    return None


@dataclass(frozen=True)
class StepSpec:
    """What the step graph is specialised for: every answer in it samples this way."""

    text_temperature: float
    top_k: int
    top_p: float
    flow_method: str
    flow_steps: int
    flow_temperature: float
    cfg_scale: float
    guided_text: bool = False  # rows may copy another row's text (guide.py)

    @classmethod
    def of(cls, gen: GenerationConfig, flow: Any) -> StepSpec:
        method, steps, temperature, cfg_scale = flow.sampler(
            gen.flow_steps, gen.flow_method, gen.flow_temperature, gen.cfg_scale
        )
        return cls(gen.text_temperature, gen.top_k, gen.top_p, method, steps, temperature, cfg_scale, gen.guided_text)

    @property
    def text_noise(self) -> bool:
        return self.text_temperature > 0

    @property
    def flow_noise(self) -> bool:
        return self.flow_temperature != 0


class SlotCache(nn.Module):
    """Keys and values of every slot, [slots, kv_heads, max_len, head_dim] per layer (buffers,
    so a compiled step sees fixed addresses)."""

    def __init__(self, lm: nn.Module, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        cfg = lm.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (slots, cfg.num_key_value_heads, max_len, head_dim)
        self.n_layers, self.max_len = cfg.num_hidden_layers, max_len
        for i in range(self.n_layers):
            self.register_buffer(f"k{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
            self.register_buffer(f"v{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("rows", torch.arange(slots, device=device), persistent=False)

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"k{i}"), getattr(self, f"v{i}")

    @torch.no_grad()
    def load(self, slot: int, cache: Any, row: int, start: int, length: int) -> None:
        """Copy positions [start, start + length) of row `row` of a prefill's DynamicCache into
        the first `length` positions of `slot`."""
        for i, layer in enumerate(cache.layers):
            k, v = self.layer(i)
            k[slot, :, :length] = layer.keys[row, :, start : start + length]
            v[slot, :, :length] = layer.values[row, :, start : start + length]


class _StepCache:
    """What the backbone's attention layers see as their cache during one step."""

    def __init__(self, slots: SlotCache, pos: torch.Tensor, length: int) -> None:
        self.slots, self.pos, self.length = slots, pos, length

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.slots.layer(layer_idx)
        rows = self.slots.rows
        k[rows, :, self.pos] = key_states[:, :, 0]
        v[rows, :, self.pos] = value_states[:, :, 0]
        return k[:, :, : self.length], v[:, :, : self.length]


@dataclass
class StepTensors:
    """Per-slot decode state on the device: the step's inputs, and (returned) its outputs."""

    h: torch.Tensor  # [S, D] last hidden state
    pos: torch.Tensor  # [S] position the next input takes (its key is written there)
    text_done: torch.Tensor  # [S] bool
    started: torch.Tensor  # [S] bool: the speech stream has passed START
    speech_done: torch.Tensor  # [S] bool


class StaticStep(nn.Module):
    """The whole speech decode step for `slots` answers (see the module docstring)."""

    def __init__(self, model: Any, spec: StepSpec, slots: int, max_len: int, voice_rows: int | None = None) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        # rows [0, voice_rows) may speak; the rest hold text answers and guided answers' companions,
        # so the flow head never runs for them (with guided text it would double the speech cost)
        self.voice_rows = slots if voice_rows is None else voice_rows
        p = next(model.parameters())
        self.cache = SlotCache(model.lm, slots, max_len, p.dtype, p.device)
        self.eos, self.tpad = model.tokenizer.token_id(tk.EOS), model.tokenizer.token_id(tk.TEXT_PAD)
        self.guide = TextGuide(slots, max_len, self.tpad, p.device) if spec.guided_text else None
        flow = model.speech.flow
        self.t_grid = (
            None
            if spec.flow_method == "student"
            else flow.time_grid(spec.flow_steps, spec.flow_method, p.new_zeros(1)).clone()
        )

    @torch.no_grad()
    def forward(
        self,
        h: torch.Tensor,
        pos: torch.Tensor,
        text_done: torch.Tensor,
        started: torch.Tensor,
        speech_done: torch.Tensor,
        text_noise: torch.Tensor | None,
        flow_noise: torch.Tensor | None,
        length: int,
        masked: bool,
    ) -> tuple[torch.Tensor, ...]:
        """One step from the fields of `StepTensors`: (text tokens [S], speech states [S], raw
        log-mel groups [voice_rows, k, n_mels], then the next StepTensors' fields). `length`: cache
        positions attended (> every active slot's pos); `masked`: slots may differ in length
        (else every slot attends [0, length)). Plain tensors in and out, for torch.compile."""
        m, spec = self.model, self.spec
        tokens = sample_with_noise(
            m.text_logits(h), text_noise, temperature=spec.text_temperature, top_k=spec.top_k, top_p=spec.top_p
        )
        tokens = torch.where(text_done, torch.full_like(tokens, self.tpad), tokens)
        if self.guide is not None:
            tokens = self.guide(tokens, text_done, speech_done)
        states = next_states(m.state_head(h), started, speech_done)
        v = self.voice_rows
        gen = (states == GEN)[:v]
        flow = m.speech.flow
        x0 = flow.start(h[:v], spec.flow_temperature, noise=flow_noise)
        units = flow.carry(
            x0, h[:v], steps=spec.flow_steps, method=spec.flow_method, cfg_scale=spec.cfg_scale, t_grid=self.t_grid
        )
        raw = m.out_stats.denormalize(units)
        e = m.embed_text(tokens) + m.state_emb(states)
        voiced = torch.where(gen[:, None], e[:v] + m.speech.embed(units), e[:v])
        e = torch.cat([voiced, e[v:]]) if v < len(e) else voiced
        h_next = self._backbone(e, pos, length, masked)
        pos_next = (pos + 1).clamp(max=self.cache.max_len - 1)  # a free slot's row must stay inside the cache
        return (
            tokens,
            states,
            raw,
            h_next,
            pos_next,
            text_done | (tokens == self.eos),
            started | (states == START),
            speech_done | (states == STOP),
        )

    def _backbone(self, e: torch.Tensor, pos: torch.Tensor, length: int, masked: bool) -> torch.Tensor:
        body = decoder_of(self.model.lm)
        x, pos_ids = e[:, None], pos[:, None]
        rope = body.rotary_emb(x, pos_ids)
        mask = None
        if masked:
            mask = (torch.arange(length, device=pos.device)[None] <= pos_ids)[:, None, None, :]
        cache = _StepCache(self.cache, pos, length)
        for layer in body.layers:
            out = layer(
                x,
                attention_mask=mask,
                position_ids=pos_ids,
                past_key_values=cache,
                use_cache=True,
                position_embeddings=rope,
            )
            x = out[0] if isinstance(out, tuple) else out
        return body.norm(x)[:, -1]


class BackboneStep(nn.Module):
    """The bare backbone's step over a StaticStep's cache: an input embedding in, the last hidden
    state out. What benchmarks compare the whole speech step with (compiled the same way)."""

    def __init__(self, step: StaticStep) -> None:
        super().__init__()
        self.step = step

    @torch.no_grad()
    def forward(self, e: torch.Tensor, pos: torch.Tensor, length: int, masked: bool) -> torch.Tensor:
        return self.step._backbone(e, pos, length, masked)
