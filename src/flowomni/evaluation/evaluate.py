"""Evaluate a spoken-QA model: answer accuracy, intelligibility, latency, robustness.

For every test item the model hears the question and answers with text and speech (s2s).
Scores:
- text: exact match of the answer text with the reference (after normalisation), and WER;
- speech: the independent ASR transcribes the spoken answer; its WER against the model's
  own text (text-speech consistency) and against the reference answer (what a listener gets);
- latency: first packet and real-time factor of streamed answers on a few items;
- robustness: the same on perturbed questions (noise at several SNRs, speed changes) and on
  voices never heard in training. Each condition is one row of a sweep table.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from flowomni.audio.io import AudioError, load_audio
from flowomni.data.skills import HELD_OUT_FACTS
from flowomni.evaluation.asr import asr_model_folder, check_beam
from flowomni.evaluation.intervals import accuracy_interval, wer_with_interval
from flowomni.evaluation.text import exact_match, normalize, wer

log = logging.getLogger(__name__)


def question_audio(
    items: list[Any], sr: int, perturb: Any | None, rng: np.random.Generator
) -> Iterator[tuple[Any, np.ndarray]]:
    """Each item with its question audio at `sr`, perturbed by `perturb` (an AugmentSpec, or
    None) with noise drawn from `rng` in item order: how an evaluation condition sounds
    (benchmarks/encoder_hearing.py hears the same samples through it). Unreadable clips are
    logged and skipped."""
    from flowomni.data.augment import augment

    for item in items:
        try:
            wav = load_audio(item.question_audio, sr)
            if perturb is not None:
                wav = augment(wav, sr, perturb, rng)
        except AudioError as e:
            log.warning("skipping %s: %s", item.id, e)
            continue
        yield item, wav


@dataclass
class EvalConfig:
    manifest: str = ""  # the test manifest (JSONL)
    limit: int = 100  # items per condition (0: all)
    batch_size: int = 8
    latency_items: int = 8  # answered one by one, streaming, for first-packet latency and RTF
    snrs: list[float] = field(default_factory=lambda: [20.0, 10.0, 5.0, 0.0])
    speeds: list[float] = field(default_factory=lambda: [0.8, 0.9, 1.1, 1.2])
    noise_kind: str = "white"  # white | pink | babble
    # other voices asking the same questions: condition name -> manifest (e.g. the corpus's
    # test_seen_voices.jsonl and test_shifted_voices.jsonl)
    voice_sets: dict[str, str] = field(default_factory=dict)
    text_questions: bool = True  # also ask every question as text (text in, speech out)
    seed: int = 0
    examples: int = 3  # answers kept (with audio and mel) for the report
    speak: bool = True  # False: text answers only (s2t / t2t; no ASR, no latency), to measure understanding
    asr_beam: int = 1  # the independent ASR's beam (flowomni.evaluation.asr; 1: greedy)
    # the listener: None is Whisper tiny.en (every report's); another installed Whisper by name
    # ("whisper-base") or CTranslate2 folder
    asr_model: str | None = None

    def __post_init__(self) -> None:
        check_beam(self.asr_beam, "asr_beam")  # before a model loads, not when the ASR is made
        if self.asr_model:
            asr_model_folder(self.asr_model)  # a missing or truncated model is named now, not mid-run


@dataclass
class ItemResult:
    id: str
    skill: str
    question: str
    reference: str
    text: str
    heard: str  # the independent ASR's transcript of the spoken answer
    audio_s: float
    exact: bool


def score(rows: list[ItemResult]) -> dict[str, Any]:
    """Aggregate scores of one condition, with 95 % bootstrap intervals over items.
    "accuracy_target" and "speech_wer_vs_reference_target" leave out the held-out world facts
    (which no model can infer, so their reference words measure no model's speech)."""
    if not rows:
        return {"items": 0}
    spoken = [r for r in rows if r.audio_s > 0]
    target = [r for r in rows if r.skill != HELD_OUT_FACTS]
    out: dict[str, Any] = {
        "items": len(rows),
        "accuracy": sum(r.exact for r in rows) / len(rows),
        "accuracy_ci95": accuracy_interval([r.exact for r in rows]),
        "accuracy_target": sum(r.exact for r in target) / len(target) if target else None,
        "accuracy_target_ci95": accuracy_interval([r.exact for r in target]) if target else None,
        "text_wer": wer([r.reference for r in rows], [r.text for r in rows]),
        "spoken_share": len(spoken) / len(rows),
    }
    if spoken:
        with_text = [r for r in spoken if normalize(r.text)]
        # silent answers count as all-deleted against the reference
        for key, said_by, chosen in (
            ("speech_wer_vs_text", "text", with_text),
            ("speech_wer_vs_reference", "reference", rows),
            ("speech_wer_vs_reference_target", "reference", target),
        ):
            refs, heard = [getattr(r, said_by) for r in chosen], [r.heard for r in chosen]
            out[key], out[f"{key}_ci95"] = wer_with_interval(refs, heard) if chosen else (None, None)
        out["speech_exact"] = sum(exact_match(r.reference, r.heard) for r in rows) / len(rows)
        d = [r.audio_s for r in spoken]
        out["answer_seconds"] = {"mean": statistics.fmean(d), "min": min(d), "max": max(d)}
    skills: dict[str, list[bool]] = {}
    for r in rows:
        skills.setdefault(r.skill, []).append(r.exact)
    out["accuracy_by_skill"] = {k: sum(v) / len(v) for k, v in sorted(skills.items())}
    return out


def condition(rows: list[ItemResult], **label: Any) -> dict[str, Any]:
    """One condition's scores, with its per-item rows: two models' rows on the same items give
    paired differences (flowomni.evaluation.report.paired_table)."""
    return {**label, **score(rows), "rows": [asdict(r) for r in rows]}


class Evaluator:
    def __init__(self, engine: Any, cfg: EvalConfig, transcriber: Any | None = None) -> None:
        from flowomni.evaluation.asr import Transcriber

        self.engine, self.cfg = engine, cfg
        self.asr = transcriber or (Transcriber(cfg.asr_model, beam_size=cfg.asr_beam) if cfg.speak else None)
        self.examples: list[dict[str, Any]] = []

    def items(self, manifest: str) -> list[Any]:
        from flowomni.data.manifest import read_manifest

        items, skipped = read_manifest(manifest)
        items = [i for i in items if i.question_audio is not None]
        if skipped.total:
            log.warning("%s: %s", manifest, skipped.summary())
        if not items:
            raise ValueError(f"{manifest}: no items with question audio to evaluate")
        return items[: self.cfg.limit] if self.cfg.limit else items

    def answer(
        self, items: list[Any], perturb: Any | None = None, keep_examples: bool = False, as_text: bool = False
    ) -> list[ItemResult]:
        """Answer all items (batched), first perturbing each question's audio by `perturb`
        (a flowomni.data.augment.AugmentSpec), with noise fixed by the seed; `as_text`: ask
        the written question instead of the spoken one."""
        rng = np.random.default_rng(self.cfg.seed)
        sr = self.engine.model.cfg.input_mel.sample_rate
        rows: list[ItemResult] = []
        for start in range(0, len(items), self.cfg.batch_size):
            batch = items[start : start + self.cfg.batch_size]
            if as_text:
                asked = [(item, {"text": item.question_text}) for item in batch]
            else:
                asked = [(i, {"audio": wav, "sample_rate": sr}) for i, wav in question_audio(batch, sr, perturb, rng)]
            if not asked:
                continue
            chunk, questions = [item for item, _ in asked], [q for _, q in asked]
            answers = self.engine.answer_batch(questions, speak=self.cfg.speak)
            for item, ans in zip(chunk, answers):
                spoken = ans.audio is not None and self.cfg.speak
                heard = self.asr.transcribe(ans.audio, ans.sample_rate) if spoken else ""
                rows.append(
                    ItemResult(
                        id=item.id,
                        skill=str(item.meta.get("skill", "?")),
                        question=item.question_text,
                        reference=item.answer_text,
                        text=ans.text,
                        heard=heard,
                        audio_s=0.0 if ans.audio is None else len(ans.audio) / ans.sample_rate,
                        exact=exact_match(item.answer_text, ans.text),
                    )
                )
                if keep_examples and len(self.examples) < self.cfg.examples and ans.mel is not None:
                    self.examples.append(
                        {
                            "id": item.id,
                            "question": item.question_text,
                            "text": ans.text,
                            "heard": heard,
                            "mel": ans.mel,
                            "audio": ans.audio,
                            "sample_rate": ans.sample_rate,
                        }
                    )
        return rows

    def latency(self, items: list[Any]) -> dict[str, Any]:
        """Streamed answers one at a time: first packet (ms after the question ends) and RTF."""
        from flowomni.inference.engine import Done

        first, rtf, first_text = [], [], []
        if items[: self.cfg.latency_items]:  # warm-up: first-call costs (allocator, caches) are not latency
            list(self.engine.respond(str(items[0].question_audio)))
        for item in items[: self.cfg.latency_items]:
            done = next(ev for ev in self.engine.respond(str(item.question_audio)) if isinstance(ev, Done))
            t = done.timings
            if "first_audio_ms" in t:
                first.append(t["first_audio_ms"])
                rtf.append(t["rtf"])
            if "first_text_ms" in t:
                first_text.append(t["first_text_ms"])

        def med(x: list[float]) -> float | None:
            return statistics.median(x) if x else None

        return {
            "first_packet_ms_median": med(first),
            "first_packet_ms_max": max(first) if first else None,
            "first_text_ms_median": med(first_text),
            "rtf_median": med(rtf),
            "items": len(first),
        }

    def measure_latency(self, items: list[Any] | None = None) -> dict[str, Any]:
        """First packet and RTF on the manifest's (or `items`') first items ({} for text-only
        evaluations)."""
        if not self.cfg.speak:
            return {}
        return self.latency(self.items(self.cfg.manifest) if items is None else items)

    def run(self, latency: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every condition; `latency` when measured already (run_all), else measured first."""
        from flowomni.data.augment import AugmentSpec

        cfg = self.cfg
        t0 = time.perf_counter()
        items = self.items(cfg.manifest)
        if latency is None:  # before the ASR runs: see run_all
            latency = self.measure_latency(items)
        clean = self.answer(items, None, keep_examples=True)
        result: dict[str, Any] = {
            "config": asdict(cfg),
            "clean": score(clean),
            "latency": latency,
            "sweeps": {"noise": [], "speed": []},
            "rows": [asdict(r) for r in clean],
        }
        for snr in cfg.snrs:
            rows = self.answer(items, AugmentSpec(noise_snr_db=snr, noise_kind=cfg.noise_kind))
            result["sweeps"]["noise"].append(condition(rows, snr_db=snr))
        for speed in cfg.speeds:
            rows = self.answer(items, AugmentSpec(speed=speed))
            result["sweeps"]["speed"].append(condition(rows, speed=speed))
        if cfg.text_questions:
            result["sweeps"]["text_input"] = [condition(self.answer(items, as_text=True), input="written question")]
        voices = [condition(self.answer(self.items(path)), voices=name) for name, path in cfg.voice_sets.items()]
        if voices:
            result["sweeps"]["voices"] = voices
        result["asr_redecoded"] = getattr(self.asr, "redecoded", 0)  # looping transcripts decoded again
        result["wall_s"] = time.perf_counter() - t0
        return result


def run_all(evaluators: dict[str, Evaluator]) -> dict[str, dict[str, Any]]:
    """Every model's results, the latency of all of them measured before any answer is
    transcribed: once the ASR (CTranslate2) has run in a process, torch decodes slower for the
    rest of it on 2 cores (measured: the same model's RTF 0.11 before, 0.19-0.20 after), so a
    second model measured after the first one's answers would look slower than it is."""
    latency = {name: ev.measure_latency() for name, ev in evaluators.items()}
    return {name: ev.run(latency[name]) for name, ev in evaluators.items()}
