"""Answers decoded together in fixed slots, joining and leaving between steps.

`SlotDecoder` holds `slots` answers' decode state in the static tensors of a `StaticStep`
(static_step.py) and steps them all at once. An answer joins when a slot is free (its prompt
is prefilled with transformers' dynamic cache, then copied into its slot) and leaves when it
is done or stopped; the others never wait for it, and its slot is free for the next step.

Each answer has its own generator, seeded as `Decoder` seeds it, and draws from it what
`Decoder` draws at batch 1, in the same order: text noise (when sampling text), then the flow
head's starting noise. `Decoder` draws flow noise only on GEN steps; the step graph draws it
before it knows the state. On a CPU the host reads every step's states anyway, so a row that
did not draw a group gets its generator's state back and an answer is what `Decoder` makes of
it at batch 1 (tested). On a GPU nothing waits for that read: a step's outputs are copied to
the host asynchronously and read while the next step runs (`lag`), so the noise of a non-GEN
step is simply not used; answers are still a function of their seed alone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from flowomni.inference.decoder import GenerationConfig, Prompt, StepOutput, prefill, with_companions
from flowomni.inference.precision import decode_dtype, step_model
from flowomni.inference.static_step import BackboneStep, StaticStep, StepSpec, StepTensors, unsupported
from flowomni.model import tokenizer as tk
from flowomni.model.layout import GEN

log = logging.getLogger(__name__)
MAX_LEN = 2048  # default positions per slot: 30 s of question (750) + history + 400 answer steps fit
_ids = itertools.count()


@dataclass
class SlotAnswer:
    """One answer in a slot; `done` once its last output was returned."""

    slot: int
    generator: torch.Generator
    max_steps: int
    prefill_s: float
    id: int = field(default_factory=lambda: next(_ids))
    steps: int = 0  # outputs returned
    launched: int = 0  # steps run (ahead of `steps` by one in lag mode)
    step_s: float = 0.0  # wall time of the steps it was in
    done: bool = False
    companion: bool = False  # a guided answer's companion: stepped, never returned (guide.py)


@dataclass
class _Launched:
    """A step whose outputs are on their way to the host."""

    answers: list[SlotAnswer]
    tokens: torch.Tensor
    states: torch.Tensor
    raw: torch.Tensor
    text_done: torch.Tensor
    speech_done: torch.Tensor
    ready: Any = None  # CUDA event
    rng: dict[int, torch.Tensor] = field(default_factory=dict)  # answer id -> generator state before flow noise


class SlotDecoder:
    """Steps up to `slots` answers together (with `gen.guided_text`, each in two rows: its own
    and its companion's, guide.py; a companion is stepped and leaves with its answer, and its
    outputs are never returned). `compile`: run the step under torch.compile
    (None: on CUDA, with CUDA graphs); `max_len`: positions per slot (question, context and
    answer; every step attends them all when compiled), default MAX_LEN or the backbone's
    `max_position_embeddings` if smaller; `lag`: read outputs a step late (None: on CUDA)."""

    def __init__(
        self,
        model: Any,
        gen: GenerationConfig,
        slots: int,
        *,
        max_len: int | None = None,
        compile: bool | None = None,
        lag: bool | None = None,
    ) -> None:
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"static decode steps do not support this model: {why}")
        if slots < 1:
            raise ValueError(f"need at least one slot, got {slots}")
        p = next(model.parameters())
        self.model, self.gen, self.capacity, self.device = model, gen, slots, p.device
        # precision by answers, not rows: up to 4 answers decode as one streamed answer does
        # (fp16 on CPU), companions or not, so an answer is the same in the loop and alone
        self.step_model = step_model(model, decode_dtype(gen.decode_dtype, p.device, slots, p.dtype))
        # guided: `slots` voice rows for spoken answers, then `slots` text rows for their companions
        # and text replies (the flow head runs on voice rows only); else every row may speak
        self.voice_rows = slots
        slots *= 2 if gen.guided_text else 1
        self.spec = StepSpec.of(gen, self.step_model.speech.flow)
        self.max_len = max_len or min(MAX_LEN, int(model.lm.config.max_position_embeddings))
        self.graph = StaticStep(self.step_model, self.spec, slots, self.max_len, self.voice_rows).eval()
        self.compiled = p.device.type == "cuda" if compile is None else compile
        self._mode = "reduce-overhead" if p.device.type == "cuda" else "default"  # CUDA graphs on a GPU
        self.fn = torch.compile(self.graph, mode=self._mode, dynamic=False) if self.compiled else self.graph
        self._bare: Any = None
        self._steps_run = 0
        self.lag = p.device.type == "cuda" if lag is None else lag  # read outputs while the next step runs
        self.exact_rng = not self.lag
        dtype, dev = next(self.step_model.parameters()).dtype, p.device
        d = self.step_model.state_emb.embedding_dim
        self.state = StepTensors(
            torch.zeros(slots, d, dtype=dtype, device=dev),
            torch.zeros(slots, dtype=torch.long, device=dev),
            torch.ones(slots, dtype=torch.bool, device=dev),
            torch.zeros(slots, dtype=torch.bool, device=dev),
            torch.ones(slots, dtype=torch.bool, device=dev),
        )
        vocab = self.step_model.lm.get_output_embeddings().weight.shape[0]
        flow = self.step_model.speech.flow
        self.text_noise = torch.ones(slots, vocab, device=dev) if self.spec.text_noise else None
        self.flow_noise = (
            torch.zeros(self.voice_rows, flow.group * flow.frame_dim, dtype=dtype, device=dev)
            if self.spec.flow_noise
            else None
        )
        self.answers: list[SlotAnswer | None] = [None] * slots
        self.companions: dict[int, SlotAnswer] = {}  # answer id -> its companion (guided text)
        self.lengths = [0] * slots  # host copy of each slot's position
        self._pending: _Launched | None = None
        self.lock = threading.Lock()  # a decoder serves one thread at a time (Engine hands it out)
        tok = model.tokenizer
        self._silent = (tok.token_id(tk.EOS), tok.token_id(tk.TEXT_PAD))  # tokens that add no text

    def _free_rows(self) -> tuple[list[int], list[int]]:
        """Free voice rows and free text rows."""
        free = [i for i, a in enumerate(self.answers) if a is None]
        return [i for i in free if i < self.voice_rows], [i for i in free if i >= self.voice_rows]

    @property
    def free(self) -> int:
        """Answers that may join now, whatever they are (guided: a spoken one takes a voice row
        and a text row)."""
        voice, text = self._free_rows()
        return min(len(voice), len(text)) if self.voice_rows < len(self.answers) else len(voice)

    def _place(self, prompts: list[Prompt], n_asked: int) -> list[int]:
        """A free row for each prompt (companions after the first `n_asked`): spoken answers in
        voice rows, then companions and text replies in text rows, voice rows when those run out."""
        voice, text = self._free_rows()
        rows = [-1] * len(prompts)
        by_need = sorted(range(len(prompts)), key=lambda i: (not prompts[i].task.speech_out, i < n_asked))
        for i in by_need:
            pool = voice if prompts[i].task.speech_out else (text or voice)
            if not pool:
                raise RuntimeError(f"{n_asked} answers to join, {self.free} free slots")
            rows[i] = pool.pop(0)
        return rows

    @property
    def active(self) -> list[SlotAnswer]:
        return [a for a in self.answers if a is not None and not a.done]

    # ---- joining and leaving ----
    @torch.no_grad()
    def join(
        self, prompts: list[Prompt], seeds: list[int | None] | None = None, max_steps: list[int] | None = None
    ) -> list[SlotAnswer]:
        """Prefill `prompts` (and the companions of guided ones) in one batch and give each a
        free slot. Returns the prompts' answers."""
        if not prompts:
            return []
        n_asked = len(prompts)
        seeds = seeds or [self.gen.seed] * n_asked
        max_steps = max_steps or [self.gen.max_steps] * n_asked
        prompts, guided = with_companions(prompts, self.gen)
        seeds = [*seeds, *(seeds[i] for i in guided)]
        max_steps = [*max_steps, *(max_steps[i] for i in guided)]
        free = self._place(prompts, n_asked)
        t0 = time.perf_counter()
        pre = prefill(self.model, prompts, self.device, self.gen.max_prompt_positions)
        total = pre.mask.shape[1]
        lengths = pre.mask.sum(1).tolist()
        if max(lengths) >= self.max_len:
            raise ValueError(
                f"the question and its context take {max(lengths)} positions, more than the decoder's "
                f"{self.max_len} (max_len)"
            )
        prefill_s = time.perf_counter() - t0
        out = []
        for i, (prompt, slot, n) in enumerate(zip(prompts, free, lengths)):
            self.graph.cache.load(slot, pre.cache, i, total - n, n)
            s = self.state
            s.h[slot] = pre.h[i]
            s.pos[slot] = n
            s.text_done[slot], s.started[slot], s.speech_done[slot] = False, False, not prompt.task.speech_out
            g = torch.Generator(self.device)
            g.manual_seed(seeds[i] if seeds[i] is not None else torch.seed() % 2**63)
            ans = SlotAnswer(slot, g, min(max_steps[i], self.max_len - n), prefill_s)
            self.answers[slot], self.lengths[slot] = ans, n
            out.append(ans)
        if self.graph.guide is not None:
            for ans in out:
                self.graph.guide.reset(ans.slot)
            for k, i in enumerate(guided):
                main, comp = out[i], out[n_asked + k]
                self.graph.guide.reset(main.slot, comp.slot)
                self.companions[main.id] = comp
                comp.companion = True
        return out[:n_asked]

    def leave(self, ans: SlotAnswer) -> None:
        """Free `ans`'s slot (done or stopped), and its companion's: the next step no longer
        computes for them."""
        comp = self.companions.pop(ans.id, None)
        if comp is not None:
            self.leave(comp)
        if self.answers[ans.slot] is ans:
            self.answers[ans.slot] = None
            self.state.text_done[ans.slot] = self.state.speech_done[ans.slot] = True
        ans.done = True

    # ---- stepping ----
    @torch.no_grad()
    def step(self) -> dict[int, StepOutput]:
        """Step every active answer once. Returns the outputs now known, by answer id: this
        step's, or (lag mode) the previous step's. An answer is `done` once its last output
        has been returned; call `leave` then."""
        running = [a for a in self.active if a.launched < a.max_steps]
        launched = self._launch(running) if running else None
        if not self.lag:
            return self._read(launched) if launched else {}
        previous, self._pending = self._pending, launched
        outs = self._read(previous) if previous else {}
        if launched is None and self._pending is None:
            for a in self.active:  # nothing left in flight: whatever was still running has ended
                a.done = True
        return outs

    def _launch(self, running: list[SlotAnswer]) -> _Launched:
        rng = {}
        for a in running:
            if self.text_noise is not None:
                self.text_noise[a.slot].exponential_(1, generator=a.generator)
            if self.flow_noise is not None and a.slot < self.voice_rows:
                if self.exact_rng:
                    rng[a.id] = a.generator.get_state()
                self.flow_noise[a.slot].normal_(generator=a.generator)
        length, masked = self._attended(running)
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()
        t0 = time.perf_counter()
        s = self.state
        args = (s.h, s.pos, s.text_done, s.started, s.speech_done, self.text_noise, self.flow_noise, length, masked)
        try:
            tokens, states, raw, *nxt = self.fn(*args)
        except Exception as e:  # noqa: BLE001 - compiling failed: run the same step eagerly
            if not self.compiled or self._steps_run:
                raise
            log.warning("torch.compile of the decode step failed (%s: %s); decoding eagerly", type(e).__name__, e)
            self.fn, self.compiled = self.graph, False
            length, masked = self._attended(running)
            tokens, states, raw, *nxt = self.fn(*args[:-2], length, masked)
        self._steps_run += 1
        self.state = StepTensors(*(x.clone() for x in nxt)) if self.compiled else StepTensors(*nxt)
        for a in running:
            self.lengths[a.slot] += 1
            a.launched += 1
        done = self.state
        out = _Launched(running, tokens, states, raw, done.text_done, done.speech_done, rng=rng)
        if self.lag and self.device.type == "cuda":  # start the copies now; `_read` waits for them a step later
            out.tokens, out.states, out.text_done, out.speech_done = (
                x.to("cpu", non_blocking=True) for x in (tokens, states, done.text_done, done.speech_done)
            )
            out.raw = raw.clone()  # mel groups stay on the device, for the vocoder there
            out.ready = torch.cuda.Event()
            out.ready.record()
        dt = time.perf_counter() - t0
        for a in running:
            a.step_s += dt
        return out

    def _attended(self, running: list[SlotAnswer]) -> tuple[int, bool]:
        """(cache positions the step attends, whether slots need a mask). Compiled: one static
        graph, every slot attends the whole cache, masked; eager: just the longest answer's."""
        if self.compiled:
            return self.max_len, True
        ends = {self.lengths[a.slot] + 1 for a in running}
        return max(ends), len(ends) > 1 or self.capacity > len(running)

    def bare_step(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The bare backbone's step over this decoder's cache for its active answers, compiled
        as the speech step is: e [slots, D] -> hidden states. For benchmarks (the speech step
        over it); it writes where the next speech step writes again."""
        if self._bare is None:
            bare = BackboneStep(self.graph).eval()
            self._bare = torch.compile(bare, mode=self._mode, dynamic=False) if self.compiled else bare

        def run(e: torch.Tensor) -> torch.Tensor:
            length, masked = self._attended(self.active)
            if self.compiled:
                torch.compiler.cudagraph_mark_step_begin()
            return self._bare(e, self.state.pos, length, masked)

        return run

    def _read(self, step: _Launched) -> dict[int, StepOutput]:
        if step.ready is not None:
            step.ready.synchronize()
        tokens, states = step.tokens.tolist(), step.states.tolist()
        text_done, speech_done = step.text_done.tolist(), step.speech_done.tolist()
        outs = {}
        for a in step.answers:
            if a.done:  # left, or ended, while this step was in flight
                continue
            i = a.slot
            gen = states[i] == GEN
            if not gen and a.id in step.rng:
                a.generator.set_state(step.rng[a.id])  # this step drew no group: as Decoder, no noise used
            tok = tokens[i]
            if not a.companion:
                outs[a.id] = StepOutput(
                    None if tok in self._silent else tok,
                    step.raw[i].float() if gen else None,
                    text_done[i],
                    speech_done[i],
                )
            a.steps += 1
            a.done = (text_done[i] and speech_done[i]) or a.steps >= a.max_steps
        return outs
