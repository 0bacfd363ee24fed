"""Step-wise decoding of text and mel groups, in parallel, with the backbone's KV cache.

The question (audio through the encoder once, or text) is prefilled in one pass; then each
step reads the last hidden state, samples the next text token and speech state, draws a
speech unit with the model's speech head when the state is GEN (a mel group from the flow
head, or a delayed code vector from the discrete head, which emits each mel group once all
its codebooks are known), and feeds both back as the next position.
Several prompts decode together: prefixes are left-padded and positions are explicit, so
each prompt sees exactly what it would alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from flowomni.config import Bounds, check_choice
from flowomni.inference.guide import TextGuide
from flowomni.inference.precision import DECODE_DTYPES, cast_cache, decode_dtype, step_model
from flowomni.model import tokenizer as tk
from flowomni.model.encoder import n_adapter_frames
from flowomni.model.flow_head import FLOW_METHODS
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import GEN, PAD, START, STOP, Task, prefix
from flowomni.model.sampling import sample_tokens


@dataclass
class GenerationConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "max_steps": (1, 100_000),
        "text_temperature": (0, 100),
        "top_k": (0, None),
        "top_p": (0, 1),
        "flow_steps": (1, 1000),
        "flow_temperature": (0, 100),
        "cfg_scale": (0, 100),
        "code_temperature": (0, 100),
        "code_top_k": (0, None),
        "max_prompt_positions": (0, None),
    }

    max_steps: int = 400  # hard cap on answer positions (about 18 s of speech at 21.5 Hz)
    text_temperature: float = 0.0  # 0: greedy
    top_k: int = 0
    top_p: float = 1.0
    flow_steps: int | None = None  # None: the model config's defaults
    flow_method: str | None = None
    flow_temperature: float | None = None
    cfg_scale: float | None = None
    code_temperature: float | None = None  # discrete head: code sampling (None: model.code_head's)
    code_top_k: int | None = None
    seed: int | None = None
    decode_dtype: str = "auto"  # steps after the prefill: auto (fp16 for small CPU batches), float32, ...
    max_prompt_positions: int = 0  # >0: refuse a prompt (history + question) longer than this (PromptTooLong)
    # a spoken answer writes the text a text reply to the same question writes, decoded beside it
    # in the same batch; it only times the words (guide.py: batch-parallel decoding, Mini-Omni)
    guided_text: bool = True

    def __post_init__(self) -> None:
        if self.flow_method is not None:
            check_choice("flow_method", self.flow_method, FLOW_METHODS)
        check_choice("decode_dtype", self.decode_dtype, DECODE_DTYPES)


class PromptTooLong(ValueError):
    """A prompt longer than `GenerationConfig.max_prompt_positions`: refused before the encoder
    and the prefill run (their cost grows with it, the prefill's about quadratically)."""


@dataclass
class Prompt:
    task: Task
    audio_mel: torch.Tensor | None = None  # raw log-mel [T, n_mels] of the question (input features)
    text: str | None = None  # the question as text (text-input tasks)
    history: list[tuple[str, str]] | None = None  # earlier (question, answer) turns, as text


def companion(prompt: Prompt) -> Prompt:
    """The same question asked for a text reply: what guides a spoken answer's text (guide.py)."""
    return dataclasses.replace(prompt, task=Task.S2T if prompt.task.speech_in else Task.T2T)


def with_companions(prompts: list[Prompt], gen: GenerationConfig) -> tuple[list[Prompt], list[int]]:
    """The prompts followed by the companions of the guided ones (spoken answers, when `gen`
    asks for guided text), and the indices of those guided prompts, in the companions' order."""
    guided = [i for i, p in enumerate(prompts) if gen.guided_text and p.task.speech_out]
    return [*prompts, *(companion(prompts[i]) for i in guided)], guided


@dataclass
class StepOutput:
    token: int | None  # a new text token (None once the text has ended)
    group: torch.Tensor | None  # a new raw log-mel group [k, n_mels], or None (also on the
    # discrete head's first n_q - 1 GEN steps, while the delay fills up)
    text_done: bool
    speech_done: bool


@dataclass
class DecodeTimings:
    prefill_s: float = 0.0
    backbone_s: float = 0.0
    flow_s: float = 0.0  # time in the speech head (flow sampling or code sampling + codec decode)
    steps: int = 0
    per_step: list[float] = field(default_factory=list)


@dataclass
class Prefill:
    """The prompts' positions run through the backbone: its KV cache and last hidden states."""

    cache: Any  # transformers' DynamicCache, [B, kv_heads, L, head_dim] per layer
    h: torch.Tensor  # [B, D] hidden state of each prompt's last position
    mask: torch.Tensor  # [B, L] 1 on real positions (prompts are left-padded)
    positions: torch.Tensor  # [B, L] position ids (each prompt from 0)
    embeds: torch.Tensor  # [B, L, D] the inputs


@torch.no_grad()
def prefill(model: FlowOmni, prompts: list[Prompt], device: torch.device, limit: int = 0) -> Prefill:
    """Lay out and embed the prompts (spoken questions through the encoder in one batch),
    left-padded, and run them through the backbone in one pass. `limit` > 0: a prompt longer
    than that many positions is refused (PromptTooLong) before the encoder runs."""
    m, stack, tok = model, model.cfg.encoder.stack, model.tokenizer
    layouts = []
    for p in prompts:
        hist = [(tok.encode(q), tok.encode(a)) for q, a in p.history or []]
        if p.task.speech_in:
            if p.audio_mel is None or p.audio_mel.shape[0] == 0:
                raise ValueError(f"task {p.task.value} needs question audio")
            n = n_adapter_frames(p.audio_mel.shape[0], stack)
            layouts.append(prefix(p.task, tok, None, n, hist))
        else:
            if not p.text:
                raise ValueError(f"task {p.task.value} needs question text")
            layouts.append(prefix(p.task, tok, tok.encode(p.text), 0, hist))
    if limit and (longest := max(len(lay) for lay in layouts)) > limit:
        raise PromptTooLong(
            f"the prompt (earlier turns + question) is {longest} positions long, over the limit of {limit}"
        )
    b, L = len(prompts), max(len(lay) for lay in layouts)
    text = torch.zeros(b, L, dtype=torch.long, device=device)
    kind = torch.full((b, L), PAD, dtype=torch.long, device=device)
    audio_index = torch.full((b, L), -1, dtype=torch.long, device=device)
    mask = torch.zeros(b, L, dtype=torch.long, device=device)
    for i, lay in enumerate(layouts):
        off = L - len(lay)  # left padding
        text[i, off:] = torch.tensor(lay.text, device=device)
        kind[i, off:] = torch.tensor(lay.kind, device=device)
        audio_index[i, off:] = torch.tensor(lay.audio_index, device=device)
        mask[i, off:] = 1
    audio = None
    audio_idx = [i for i, p in enumerate(prompts) if p.task.speech_in]
    if audio_idx:  # all spoken questions through the encoder in one batch
        mels = [prompts[i].audio_mel.to(device).float() for i in audio_idx]
        lens = torch.tensor([x.shape[0] for x in mels], device=device)
        feats, _ = m.encode_audio(torch.nn.utils.rnn.pad_sequence(mels, batch_first=True), lens)
        audio = feats.new_zeros(b, *feats.shape[1:])
        audio[audio_idx] = feats
    emb = m.embed_prompt(text, kind, audio, audio_index) * mask[..., None].to(m.state_emb.weight.dtype)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = m.backbone(emb, mask, position_ids=pos, use_cache=True)
    return Prefill(out.past_key_values, out.last_hidden_state[:, -1], mask, pos, emb)


def next_states(
    logits: torch.Tensor,
    started: torch.Tensor,
    speech_done: torch.Tensor,
    constrain: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Next speech state per prompt from the state head's logits [B, NUM_STATES], greedy within
    the grammar PAD* START GEN* STOP PAD* (`constrain`: a speech stream's further limits)."""
    logits = logits.float()
    allowed = torch.zeros_like(logits, dtype=torch.bool)
    allowed[:, PAD] = ~started
    allowed[:, START] = ~started
    allowed[:, GEN] = started
    allowed[:, STOP] = started
    if constrain is not None:
        allowed = constrain(allowed)
    state = logits.masked_fill(~allowed, float("-inf")).argmax(-1)
    return torch.where(speech_done, torch.full_like(state, PAD), state)


class Decoder:
    """Decodes a batch of prompts one position at a time. Use `step()` until `done`. With
    `gen.guided_text` every spoken answer's companion (a text reply) decodes in rows after the
    prompts' own; `step()` returns the prompts' rows only."""

    def __init__(self, model: FlowOmni, prompts: list[Prompt], gen: GenerationConfig | None = None) -> None:
        if not prompts:
            raise ValueError("no prompts to decode")
        self.model, self.gen = model, gen or GenerationConfig()
        self.tok = model.tokenizer
        self.device = next(model.parameters()).device
        self.n_answers = len(prompts)
        prompts, guided = with_companions(prompts, self.gen)
        self.guide: TextGuide | None = None
        if guided:
            self.guide = TextGuide(len(prompts), self.gen.max_steps + 1, self.tok.token_id(tk.TEXT_PAD), self.device)
            for k, i in enumerate(guided):
                self.guide.reset(i, self.n_answers + k)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(self.gen.seed if self.gen.seed is not None else torch.seed() % 2**63)
        self.speech_out = torch.tensor([p.task.speech_out for p in prompts], device=self.device)
        self.text_done = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        self.speech_done = ~self.speech_out
        self.started = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        self.n_steps = 0
        self.timings = DecodeTimings()
        t0 = time.perf_counter()
        self._prefill(prompts)
        self._to_step_precision(self.n_answers, len(prompts))
        self.timings.prefill_s = time.perf_counter() - t0

    def _to_step_precision(self, answers: int, rows: int) -> None:
        """Steps run on `self.step_model` (see precision.py): move the prefill's state across
        and make the speech stream (of all `rows`) on the model that will step. The dtype goes
        by answers, companions not counted, as in slots.py: an answer is the same alone."""
        dtype = decode_dtype(self.gen.decode_dtype, self.device, answers, self.h.dtype)
        self.step_model = step_model(self.model, dtype)
        if self.step_model is not self.model:
            self.cache = cast_cache(self.cache, dtype)
            self.h = self.h.to(dtype)
            self.embeds = [e.to(dtype) for e in self.embeds]
        self.stream = self.step_model.speech.stream(rows, self.gen, self.step_model.out_stats)

    @property
    def done(self) -> bool:
        done = (self.text_done & self.speech_done)[: self.n_answers]
        return bool(done.all()) or self.n_steps >= self.gen.max_steps

    @torch.no_grad()
    def _prefill(self, prompts: list[Prompt]) -> None:
        p = prefill(self.model, prompts, self.device, self.gen.max_prompt_positions)
        self.mask, self.embeds, self.pos_all = p.mask, [p.embeds], p.positions
        self.cache, self.h, self.next_pos = p.cache, p.h, p.positions[:, -1] + 1

    def _states(self, h: torch.Tensor) -> torch.Tensor:
        return next_states(self.step_model.state_head(h), self.started, self.speech_done, self.stream.constrain)

    @torch.no_grad()
    def step(self) -> list[StepOutput]:
        m, g = self.step_model, self.gen
        t0 = time.perf_counter()
        h = self.h
        tokens = sample_tokens(
            m.text_logits(h), temperature=g.text_temperature, top_k=g.top_k, top_p=g.top_p, generator=self.generator
        )
        tpad = self.tok.token_id(tk.TEXT_PAD)
        tokens = torch.where(self.text_done, torch.full_like(tokens, tpad), tokens)
        if self.guide is not None:
            tokens = self.guide(tokens, self.text_done, self.speech_done)
        states = self._states(h)
        gen = states == GEN
        t_flow = time.perf_counter()
        units, groups = self.stream.step(h, gen, self.generator)
        self.timings.flow_s += time.perf_counter() - t_flow

        outputs = []
        eos = self.tok.token_id(tk.EOS)
        for tok, done, group in zip(tokens.tolist(), self.text_done.tolist(), groups):  # one sync, not one per row
            new_tok = None if done or tok in (eos, tpad) else tok  # <tpad>: aligned text waits for its speech
            outputs.append(StepOutput(new_tok, group.float() if group is not None else None, False, False))
        self.text_done |= tokens == eos
        self.started |= states == START
        self.speech_done |= states == STOP

        # the next position's input: text token + speech input
        t_bb = time.perf_counter()
        e = m.embed_text(tokens) + m.state_emb(states)
        if units is not None:  # GEN rows add their unit (their state embedding is GEN's already)
            e = torch.where(gen[:, None], e + m.speech.embed(units), e)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.embeds.append(e[:, None])
        self.pos_all = torch.cat([self.pos_all, self.next_pos[:, None]], dim=1)
        out = m.backbone(
            e[:, None], self.mask, position_ids=self.next_pos[:, None], past_key_values=self.cache, use_cache=True
        )
        self.cache, self.h = out.past_key_values, out.last_hidden_state[:, -1]
        self.next_pos = self.next_pos + 1
        self.n_steps += 1
        self.timings.backbone_s += time.perf_counter() - t_bb
        self.timings.steps += 1
        self.timings.per_step.append(time.perf_counter() - t0)
        for o, text_done, speech_done in zip(outputs, self.text_done.tolist(), self.speech_done.tolist()):
            o.text_done, o.speech_done = text_done, speech_done
        return outputs[: self.n_answers]
