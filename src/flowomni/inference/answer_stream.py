"""One answer's decode steps as events: text deltas, audio chunks, then Done.

Every mel group goes to the vocoder stream as it is drawn; the stream decides when a chunk of
audio is worth making (the first as soon as its lookahead is covered, later ones larger: see
vocoder/base.py). Used by `Engine.respond` (one answer, in the caller's thread) and by the
decode loop (every active answer of the server, in one thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowomni.inference.decoder import StepOutput


@dataclass
class TextDelta:
    text: str
    t_ms: float  # since the request started


@dataclass
class AudioChunk:
    pcm: np.ndarray  # float32 mono samples in [-1, 1]
    sample_rate: int
    t_ms: float


@dataclass
class Done:
    text: str
    audio_seconds: float
    timings: dict[str, float]
    mel: torch.Tensor | None = None  # the whole answer's raw log-mel [T, n_mels]


Event = TextDelta | AudioChunk | Done


@dataclass
class Received:
    """What a consumer of an answer's events has received: the text so far, the audio (kept
    when `keep_audio`, else only counted), Done, and when the first text and audio came
    (`clock()`: ms on the consumer's own clock, e.g. since the user stopped speaking). The
    one bookkeeping behind `Engine.answer`, `flowomni chat` and the server's two endpoints."""

    clock: Callable[[], float] | None = None
    keep_audio: bool = True
    text: str = ""
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    sample_rate: int = 0
    done: Done | None = None
    timings: dict[str, float] = field(default_factory=dict)  # first_text_ms, first_audio_ms

    def add(self, ev: Event) -> Event:
        if isinstance(ev, TextDelta):
            if self.clock is not None:
                self.timings.setdefault("first_text_ms", self.clock())
            self.text += ev.text
        elif isinstance(ev, AudioChunk):
            if self.clock is not None:
                self.timings.setdefault("first_audio_ms", self.clock())
            self.sample_rate = ev.sample_rate
            self.samples += len(ev.pcm)
            if self.keep_audio:
                self.chunks.append(ev.pcm)
        elif isinstance(ev, Done):
            self.done, self.text = ev, ev.text
        return ev

    def audio(self) -> np.ndarray | None:
        return np.concatenate(self.chunks) if self.chunks else None

    def final(self) -> Done:
        if self.done is None:
            raise RuntimeError("the answer's events ended without Done")
        return self.done


class AnswerStream:
    """`feed` it one step's output at a time, then `finish`; both yield the events due.
    `t0`: perf_counter when the request started (the question was complete)."""

    def __init__(
        self, tokenizer: Any, vocoder: Any, speak: bool, t0: float, max_chunk_frames: int | None = None
    ) -> None:
        self.tok, self.vocoder, self.t0 = tokenizer, vocoder, t0
        self.stream = None
        if speak:
            self.stream = vocoder.stream() if max_chunk_frames is None else vocoder.stream(max_chunk_frames)
        self.ids: list[int] = []
        self.said = ""
        self.groups: list[torch.Tensor] = []
        self.samples = 0
        self.timings: dict[str, float] = {"vocoder_ms": 0.0}

    def ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def feed(self, out: StepOutput) -> Iterator[Event]:
        if out.token is not None:
            self.ids.append(out.token)
            now = self.tok.decode(self.ids)
            if len(now) > len(self.said) and now.startswith(self.said):
                self.timings.setdefault("first_text_ms", self.ms())
                yield TextDelta(now[len(self.said) :], self.ms())
                self.said = now
        if out.group is not None and self.stream is not None:
            self.groups.append(out.group)
            yield from self._vocode(out.group)

    def _vocode(self, mel: torch.Tensor | None) -> Iterator[AudioChunk]:
        tv = time.perf_counter()
        pcm = self.stream.push(mel) if mel is not None else self.stream.flush()
        self.timings["vocoder_ms"] += (time.perf_counter() - tv) * 1000
        if len(pcm):
            self.samples += len(pcm)
            self.timings.setdefault("first_audio_ms", self.ms())
            yield AudioChunk(pcm, self.vocoder.sample_rate, self.ms())

    def finish(self, decode_timings: dict[str, float]) -> Iterator[Event]:
        """The rest of the audio and text, then Done with `decode_timings` (prefill_ms, steps, ...)
        merged into this stream's timings."""
        if self.stream is not None:
            yield from self._vocode(None)
        final = self.tok.decode(self.ids)
        if len(final) > len(self.said):
            yield TextDelta(final[len(self.said) :], self.ms())
        audio_s = self.samples / self.vocoder.sample_rate
        total = self.ms()
        timings = {
            **decode_timings,
            **self.timings,
            "total_ms": total,
            "rtf": (total / 1000) / audio_s if audio_s else 0.0,
        }
        yield Done(final, audio_s, timings, torch.cat(self.groups) if self.groups else None)
