"""Talking to a trained model: streaming answers (text deltas + audio chunks) and batches.

`Engine.respond` runs the encoder once over the question, prefills the backbone, then
decodes text and mel groups in parallel (see decoder.py). Mel groups go to a streaming
vocoder as they are drawn; the first chunk is a single group so the first sound leaves as
early as possible, later chunks grow (fewer, cheaper vocoder calls) up to `max_chunk_frames`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from flowomni.audio.io import AudioError, load_audio, resample, validate
from flowomni.audio.mel import MelSpectrogram
from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.inference.precision import decode_dtype, step_model
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task


def vocoder_name(model: FlowOmni) -> str:
    """The vocoder a model's config names; a relative path is resolved against its checkpoint."""
    name, root = model.cfg.vocoder, model.checkpoint_path
    if root is not None and (Path(root) / name).exists():
        return str(Path(root) / name)
    return name


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


Event = Union[TextDelta, AudioChunk, Done]


@dataclass
class StreamConfig:
    first_chunk_frames: int = 4  # one group: the first sound leaves after one flow step
    # later chunks double up to this (~0.74 s at 86 Hz). Each vocoder call recomputes its left
    # context (36 frames for the Vocos vocoder), so bigger chunks cost less per second of audio:
    # measured 21 vs 26 ms per audio second for 64 vs 32 (2 cores); playback is never starved,
    # as the frames already sent (4+8+16+32) outlast the time to draw the next 64 at RTF < 0.5
    max_chunk_frames: int = 64


@dataclass
class Answer:
    text: str
    audio: np.ndarray | None
    sample_rate: int
    mel: torch.Tensor | None
    timings: dict[str, float] = field(default_factory=dict)


AudioInput = Union[str, Path, np.ndarray, torch.Tensor]


class Engine:
    def __init__(self, model: FlowOmni, vocoder: Any = None, *, gen: GenerationConfig | None = None,
                 stream: StreamConfig | None = None) -> None:
        from flowomni.vocoder import load_vocoder

        self.model = model.eval()
        self.device = next(model.parameters()).device
        if vocoder is None or isinstance(vocoder, str):
            vocoder = load_vocoder(vocoder or vocoder_name(model), model.cfg.output_mel)
        self.vocoder = vocoder
        self.gen = gen or GenerationConfig()
        self.stream_cfg = stream or StreamConfig()
        self.in_mel = MelSpectrogram(model.cfg.input_mel).to(self.device)
        # make the decode-step copy now (precision.py), not inside the first answer's latency
        step_model(self.model, decode_dtype(self.gen.decode_dtype, self.device, 1, next(model.parameters()).dtype))

    @classmethod
    def load(cls, path: str | Path | None = None, *, vocoder: Any = None, device: str | None = None,
             gen: GenerationConfig | None = None) -> "Engine":
        """A checkpoint folder (None: the shipped model) on `device`, with the vocoder its
        config names unless `vocoder` is given."""
        return cls(FlowOmni.load(path).to(device or "cpu"), vocoder, gen=gen)

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

    def prompt(self, audio: AudioInput | None, text: str | None, speak: bool, sample_rate: int | None,
               history: list[tuple[str, str]] | None = None) -> Prompt:
        if (audio is None) == (text is None):
            raise ValueError("give exactly one of question audio or question text")
        if audio is not None:
            return Prompt(Task.S2S if speak else Task.S2T, audio_mel=self.question_mel(audio, sample_rate),
                          history=history)
        if not text or not text.strip():
            raise ValueError("question text is empty")
        return Prompt(Task.T2S if speak else Task.T2T, text=text, history=history)

    # ---- streaming ----
    def respond(self, audio: AudioInput | None = None, *, sample_rate: int | None = None, text: str | None = None,
                speak: bool = True, gen: GenerationConfig | None = None,
                history: list[tuple[str, str]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Answer one question, yielding TextDelta / AudioChunk events as they are ready and a
        final Done with timings (ms from the call; the question is complete at the call).
        `history`: earlier (question, answer) turns of the conversation, as text context.
        `should_stop`: polled every decoding step; when it turns true the answer ends early
        (barge-in), still with a Done event."""
        t0 = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - t0) * 1000

        prompt = self.prompt(audio, text, speak, sample_rate, history)
        dec = Decoder(self.model, [prompt], gen or self.gen)
        tok = self.model.tokenizer
        ids: list[int] = []
        said = ""
        groups: list[torch.Tensor] = []
        pending: list[torch.Tensor] = []
        stream = self.vocoder.stream() if speak else None
        target = self.stream_cfg.first_chunk_frames
        timings = {"prefill_ms": dec.timings.prefill_s * 1000, "vocoder_ms": 0.0}
        n_samples = 0

        def vocode(mel: torch.Tensor | None) -> Iterator[AudioChunk]:
            nonlocal n_samples
            tv = time.perf_counter()
            pcm = stream.push(mel) if mel is not None else stream.flush()
            timings["vocoder_ms"] += (time.perf_counter() - tv) * 1000
            if len(pcm):
                n_samples += len(pcm)
                timings.setdefault("first_audio_ms", ms())
                yield AudioChunk(np.asarray(pcm, dtype=np.float32), self.vocoder.sample_rate, ms())

        while not dec.done and not (should_stop is not None and should_stop()):
            (out,) = dec.step()
            if out.token is not None:
                ids.append(out.token)
                now = tok.decode(ids)
                if len(now) > len(said) and now.startswith(said):
                    timings.setdefault("first_text_ms", ms())
                    yield TextDelta(now[len(said):], ms())
                    said = now
            if out.group is not None and stream is not None:
                groups.append(out.group)
                pending.append(out.group)
                if sum(len(g) for g in pending) >= target:
                    yield from vocode(torch.cat(pending).cpu())
                    pending = []
                    target = min(target * 2, self.stream_cfg.max_chunk_frames)
        if stream is not None:
            if pending:
                yield from vocode(torch.cat(pending).cpu())
            yield from vocode(None)
        final = tok.decode(ids)
        if len(final) > len(said):
            yield TextDelta(final[len(said):], ms())
        audio_s = n_samples / self.vocoder.sample_rate if speak else 0.0
        total = ms()
        timings.update(
            total_ms=total, steps=dec.timings.steps, backbone_ms=dec.timings.backbone_s * 1000,
            flow_ms=dec.timings.flow_s * 1000, rtf=(total / 1000) / audio_s if audio_s else 0.0,
        )
        yield Done(final, audio_s, timings, torch.cat(groups) if groups else None)

    def answer(self, audio: AudioInput | None = None, **kw: Any) -> Answer:
        """Collect `respond` into one Answer (text, whole audio, mel, timings)."""
        chunks, done = [], None
        for ev in self.respond(audio, **kw):
            if isinstance(ev, AudioChunk):
                chunks.append(ev.pcm)
            elif isinstance(ev, Done):
                done = ev
        assert done is not None
        audio_out = np.concatenate(chunks) if chunks else None
        return Answer(done.text, audio_out, self.vocoder.sample_rate, done.mel, done.timings)

    # ---- batches (evaluation) ----
    @torch.no_grad()
    def answer_batch(self, questions: list[dict[str, Any]], *, speak: bool = True,
                     gen: GenerationConfig | None = None) -> list[Answer]:
        """Answer several questions in one padded batch. Each question is a dict with `audio`
        (+ `sample_rate` for samples) or `text`. Audio is vocoded one-shot per answer."""
        t0 = time.perf_counter()
        prompts = [self.prompt(q.get("audio"), q.get("text"), speak, q.get("sample_rate")) for q in questions]
        dec = Decoder(self.model, prompts, gen or self.gen)
        ids: list[list[int]] = [[] for _ in prompts]
        groups: list[list[torch.Tensor]] = [[] for _ in prompts]
        while not dec.done:
            for i, out in enumerate(dec.step()):
                if out.token is not None:
                    ids[i].append(out.token)
                if out.group is not None:
                    groups[i].append(out.group)
        decode_s = time.perf_counter() - t0
        answers = []
        for i in range(len(prompts)):
            mel = torch.cat(groups[i]).cpu() if groups[i] else None
            wav = self.vocoder(mel).numpy() if mel is not None else None
            answers.append(Answer(self.model.tokenizer.decode(ids[i]), wav, self.vocoder.sample_rate, mel,
                                  {"batch_decode_ms": decode_s * 1000, "steps": dec.timings.steps}))
        return answers
