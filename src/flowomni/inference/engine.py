"""Talking to a trained model: streaming answers (text deltas + audio chunks) and batches.

`Engine.respond` runs the encoder once over the question, prefills the backbone, then
decodes text and mel groups in parallel, one static step at a time (slots.py; models whose
backbone or speech head static steps do not know decode with decoder.py). Every mel group goes
to the vocoder's stream as it is drawn, and the stream sends audio as soon as its lookahead
allows (answer_stream.py). `answer_batch` decodes many questions in slots, new ones joining as
others finish; `submit` hands an answer to the engine's decode loop (batcher.py), which steps
every answer the server has in flight together.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowomni.audio.io import AudioError, load_audio, resample, validate
from flowomni.audio.mel import MelSpectrogram
from flowomni.inference.answer_stream import AnswerStream, AudioChunk, Done, Event, Received, TextDelta
from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.inference.precision import decode_dtype, step_model
from flowomni.inference.slots import SlotDecoder
from flowomni.inference.static_step import unsupported
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task

__all__ = ["Answer", "AudioChunk", "Done", "Engine", "Event", "Received", "TextDelta"]


def vocoder_name(model: FlowOmni) -> str:
    """The vocoder a model's config names; a relative path is resolved against its checkpoint."""
    name, root = model.cfg.vocoder, model.checkpoint_path
    if root is not None and (Path(root) / name).exists():
        return str(Path(root) / name)
    return name


@dataclass
class Answer:
    text: str
    audio: np.ndarray | None
    sample_rate: int
    mel: torch.Tensor | None
    timings: dict[str, float] = field(default_factory=dict)


AudioInput = str | Path | np.ndarray | torch.Tensor


BATCH_SLOTS = 32  # most answers `answer_batch` decodes at once
KEEP_DECODERS = 4  # slot decoders an engine keeps (respond's, batches'; the decode loop has its own)


class Engine:
    def __init__(
        self,
        model: FlowOmni,
        vocoder: Any = None,
        *,
        gen: GenerationConfig | None = None,
        max_chunk_frames: int | None = None,
    ) -> None:
        from flowomni.vocoder import load_vocoder

        self.model = model.eval()
        self.device = next(model.parameters()).device
        if vocoder is None or isinstance(vocoder, str):
            vocoder = load_vocoder(vocoder or vocoder_name(model), model.cfg.output_mel, device=self.device)
        self.vocoder = vocoder
        self.gen = gen or GenerationConfig()
        self.max_chunk_frames = max_chunk_frames
        self.in_mel = MelSpectrogram(model.cfg.input_mel).to(self.device)
        self.static = unsupported(model) is None  # decode with static steps (else decoder.Decoder)
        self._decoders: dict[Any, SlotDecoder] = {}
        self._decoders_lock = threading.Lock()
        self.loop: Any = None  # the DecodeLoop behind `submit` (batcher.py)
        # make the decode-step copy (precision.py) and the one-slot decoder now, not inside the first answer's latency
        step_model(self.model, decode_dtype(self.gen.decode_dtype, self.device, 1, next(model.parameters()).dtype))
        if self.static:
            self.decoder(self.gen, 1)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        vocoder: Any = None,
        device: str | None = None,
        gen: GenerationConfig | None = None,
    ) -> Engine:
        """A checkpoint folder (None: the shipped model) on `device`, with the vocoder its
        config names unless `vocoder` is given (the vocoder runs on the same device)."""
        return cls(FlowOmni.load(path).to(device or "cpu"), vocoder, gen=gen)

    def decoder(self, gen: GenerationConfig, slots: int) -> SlotDecoder:
        """A slot decoder for answers sampled as `gen` says (one per sampling setup and size,
        kept: on a GPU each compiles its step once). Hold its `lock` while using it."""
        key = (
            slots,
            dataclasses.astuple(dataclasses.replace(gen, seed=None, max_steps=0)),
            tuple(p._version for p in self.model.parameters()),
        )
        with self._decoders_lock:
            return self._cached_decoder(key, gen, slots)

    def _cached_decoder(self, key: Any, gen: GenerationConfig, slots: int) -> SlotDecoder:
        if key not in self._decoders:
            self._decoders = {k: v for k, v in self._decoders.items() if k[2] == key[2]}  # weights changed: drop
            while len(self._decoders) >= KEEP_DECODERS:  # each holds a KV cache: keep the most recently used
                self._decoders.pop(next(iter(self._decoders)))
            self._decoders[key] = SlotDecoder(self.model, gen, slots)
        self._decoders[key] = self._decoders.pop(key)  # most recently used last
        return self._decoders[key]

    def warm_up(self, steps: int = 24) -> float:
        """Answer half a second of quiet noise once, untimed, through the path users' answers take
        (the decode loop when it runs, else `respond`), so that the first user does not pay the
        first-call costs: oneDNN kernels for each shape, allocator growth, the vocoder stream's
        first chunk (shipped model, 2 cores: its first answer's first text 472 ms after the
        question, the next one's 60 ms). No state carries over: every answer seeds its own
        generator and resets its slot. Returns the seconds it took."""
        t0 = time.perf_counter()
        sr = self.model.cfg.input_mel.sample_rate
        noise = np.random.default_rng(0).normal(0.0, 0.05, sr // 2).astype(np.float32)
        kw: dict[str, Any] = {"sample_rate": sr, "gen": dataclasses.replace(self.gen, max_steps=steps)}
        if self.loop is not None:
            ended, failed = threading.Event(), []

            def sink(ev: Any) -> None:
                if isinstance(ev, BaseException):
                    failed.append(ev)
                elif ev is None:
                    ended.set()

            self.submit(noise, **kw).start(sink)
            ended.wait()
            if failed:
                raise failed[0]
        else:
            for _ in self.respond(noise, **kw):
                pass
        return time.perf_counter() - t0

    # ---- inputs ----
    def question_mel(self, audio: AudioInput, sample_rate: int | None = None) -> torch.Tensor:
        """Raw log-mel [T, n_mels] of a question: a file path, or samples with their rate."""
        sr = self.model.cfg.input_mel.sample_rate
        if isinstance(audio, (str, Path)):
            wav = load_audio(audio, sr)
        else:
            if sample_rate is None:
                raise AudioError("question audio given as samples needs its sample_rate")
            arr = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
            wav = resample(validate(arr, sample_rate, "question audio"), sample_rate, sr)
        with torch.no_grad():
            return self.in_mel(torch.from_numpy(wav).to(self.device))

    def prompt(
        self,
        audio: AudioInput | None,
        text: str | None,
        speak: bool,
        sample_rate: int | None,
        history: list[tuple[str, str]] | None = None,
    ) -> Prompt:
        if (audio is None) == (text is None):
            raise ValueError("give exactly one of question audio or question text")
        if audio is not None:
            return Prompt(
                Task.S2S if speak else Task.S2T, audio_mel=self.question_mel(audio, sample_rate), history=history
            )
        if not text or not text.strip():
            raise ValueError("question text is empty")
        return Prompt(Task.T2S if speak else Task.T2T, text=text, history=history)

    def answer_stream(self, speak: bool, t0: float) -> AnswerStream:
        return AnswerStream(self.model.tokenizer, self.vocoder, speak, t0, self.max_chunk_frames)

    # ---- streaming ----
    def respond(
        self,
        audio: AudioInput | None = None,
        *,
        sample_rate: int | None = None,
        text: str | None = None,
        speak: bool = True,
        gen: GenerationConfig | None = None,
        history: list[tuple[str, str]] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Event]:
        """Answer one question, yielding TextDelta / AudioChunk events as they are ready and a
        final Done with timings (ms from the call; the question is complete at the call).
        `history`: earlier (question, answer) turns of the conversation, as text context.
        `should_stop`: polled every decoding step; when it turns true the answer ends early
        (barge-in), still with a Done event."""
        t0 = time.perf_counter()
        prompt = self.prompt(audio, text, speak, sample_rate, history)
        gen = gen or self.gen
        stop = should_stop or (lambda: False)
        out = self.answer_stream(speak, t0)
        dec = self.decoder(gen, 1) if self.static else None
        if dec is not None and dec.lock.acquire(blocking=False):
            try:
                (ans,) = dec.join([prompt], [gen.seed], [gen.max_steps])
                try:
                    while not ans.done and not stop():
                        step = dec.step()
                        if ans.id in step:
                            yield from out.feed(step[ans.id])
                finally:
                    dec.leave(ans)
            finally:
                dec.lock.release()
            timings = {"prefill_ms": ans.prefill_s * 1000, "steps": ans.steps, "decode_ms": ans.step_s * 1000}
        else:  # decoder.py: other backbones and heads, or a second answer at once from another thread
            dec = Decoder(self.model, [prompt], gen)
            while not dec.done and not stop():
                (step,) = dec.step()
                yield from out.feed(step)
            t = dec.timings
            timings = {
                "prefill_ms": t.prefill_s * 1000,
                "steps": t.steps,
                "backbone_ms": t.backbone_s * 1000,
                "flow_ms": t.flow_s * 1000,
                "decode_ms": sum(t.per_step) * 1000,
            }
        yield from out.finish(timings)

    def submit(
        self, audio: AudioInput | None = None, *, should_stop: Callable[[], bool] | None = None, **kw: Any
    ) -> Any:
        """`respond`'s answer as a job for the decode loop, which steps every job in flight
        together (batcher.py); its `start(sink)` hands it over. Models without static steps get
        `respond`'s iterator instead (the server runs those in threads)."""
        if not self.static:
            return self.respond(audio, should_stop=should_stop, **kw)
        from flowomni.inference.batcher import AnswerJob

        if self.loop is None:
            self.start_loop(4)
        return AnswerJob(self.loop, audio, should_stop=should_stop, **kw)

    def start_loop(self, slots: int) -> Any:
        """Start (or resize) the decode loop behind `submit`, with `slots` answers at once."""
        from flowomni.inference.batcher import DecodeLoop

        if self.loop is None or self.loop.capacity != slots:
            old, self.loop = self.loop, DecodeLoop(self, slots)
            if old is not None:
                old.stop(wait=False)  # it finishes what it has, then exits
        return self.loop

    def stop_loop(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None

    def answer(self, audio: AudioInput | None = None, **kw: Any) -> Answer:
        """Collect `respond` into one Answer (text, whole audio, mel, timings)."""
        got = Received()
        for ev in self.respond(audio, **kw):
            got.add(ev)
        done = got.final()
        return Answer(done.text, got.audio(), self.vocoder.sample_rate, done.mel, done.timings)

    # ---- batches (evaluation) ----
    @torch.no_grad()
    def answer_batch(
        self, questions: list[dict[str, Any]], *, speak: bool = True, gen: GenerationConfig | None = None
    ) -> list[Answer]:
        """Answer several questions together. Each question is a dict with `audio` (+
        `sample_rate` for samples) or `text`. Each answer is what `respond` makes of its question
        with the same `gen` (its own generator, seeded with gen.seed); audio is vocoded one-shot."""
        t0 = time.perf_counter()
        gen = gen or self.gen
        prompts = [self.prompt(q.get("audio"), q.get("text"), speak, q.get("sample_rate")) for q in questions]
        if not prompts:
            return []
        if self.static:
            from flowomni.inference.batcher import decode_all

            dec = self.decoder(gen, min(len(prompts), BATCH_SLOTS))
            with dec.lock:
                results, steps = decode_all(dec, prompts)
        else:
            results, steps = self._legacy_batch(prompts, gen)
        decode_s = time.perf_counter() - t0
        answers = []
        for ids, groups in results:
            mel = torch.cat(groups).cpu() if groups else None
            wav = self.vocoder(mel).cpu().numpy() if mel is not None else None
            answers.append(
                Answer(
                    self.model.tokenizer.decode(ids),
                    wav,
                    self.vocoder.sample_rate,
                    mel,
                    {"batch_decode_ms": decode_s * 1000, "steps": steps},
                )
            )
        return answers

    def _legacy_batch(
        self, prompts: list[Prompt], gen: GenerationConfig
    ) -> tuple[list[tuple[list[int], list[torch.Tensor]]], int]:
        dec = Decoder(self.model, prompts, gen)
        results: list[tuple[list[int], list[torch.Tensor]]] = [([], []) for _ in prompts]
        while not dec.done:
            for (ids, groups), out in zip(results, dec.step()):
                if out.token is not None:
                    ids.append(out.token)
                if out.group is not None:
                    groups.append(out.group)
        return results, dec.timings.steps
