"""`flowomni data synth`: build the synthetic spoken-QA corpus offline, in parallel, resumably.

The build is a pure function of its settings: a plan (every item's question, answer and
question voice, drawn from a per-item random stream) is made first, then the audio of each
distinct clip is synthesized by worker processes. Files are content-addressed (named by a
hash of text + voice), so

* an answer text is synthesized once and shared by every item that gives it,
* a rerun (after a crash or Ctrl-C) skips every clip already on disk, and a rerun with
  different settings never reuses a stale clip,
* the result does not depend on the number of workers.

Output (OUT/):
  train.jsonl, valid.jsonl      spoken questions in training voices
  test.jsonl                    held-out phrasings (and combinations, see skills.py), spoken by
                                voices never used in training (unseen espeak accents and variants)
  test_seen_voices.jsonl        the same test questions in training voices
  test_shifted_voices.jsonl     the same test questions in the piper voice, tempo 0.9/1.1 x pitch +-300 cents
  train_text.jsonl              written training questions (no question audio; answers spoken):
                                many more phrasings than audio can cover, for t2t / t2s steps
  train_tts.jsonl               training questions' texts spoken in the answer voice ("utterance"
                                items, for TTS steps): the speech path practises many more
                                sentences than the answers' few thousand
  audio/{questions,answers}/, corpus.json (settings, sizes, hours, skips).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from flowomni.audio.io import resample, save_audio
from flowomni.data.augment import change_tempo_pitch
from flowomni.data.fsutil import atomic_path, atomic_write_text
from flowomni.data.manifest import Item, SkipStats, write_manifest
from flowomni.data.parallel import run_jobs
from flowomni.data.skills import QA, assign_splits, item_rng, sample_qa
from flowomni.data.voices import ANSWER_VOICE, Speaker, Voice, question_voice, shifted_voice

log = logging.getLogger(__name__)

DEFAULT_SIZE = 12000
SEEN = "test_seen_voices"
SHIFTED = "test_shifted_voices"
TEXT = "train_text"
TTS = "train_tts"
SHIFTS = [(0.9, -300.0), (0.9, 300.0), (1.1, -300.0), (1.1, 300.0)]  # (tempo, cents) of the shifted voices
SYNTH_VERSION = 2  # bump when rendering changes, so content-addressed names change too


@dataclass
class SynthConfig:
    size: int = DEFAULT_SIZE  # train + valid + test items
    seed: int = 0
    valid_frac: float = 0.05  # of items
    test_frac: float = 0.05
    voice_sets: bool = True  # also the test questions in training voices and in shifted piper voices
    text_size: int = 0  # written training questions in train_text.jsonl (0: none)
    tts_size: int = 0  # training questions' texts in the answer voice, train_tts.jsonl (0: none)
    taught_phrases: bool = False  # train also on the skills' taught templates (assign_splits)
    piper_share: float = 0.15  # questions asked by the piper voice
    accent_share: float = 0.0  # training questions asked with a synthetic accent (data/accents.py)
    question_sr: int = 16000  # the encoder's rate: no resampling when features are computed
    workers: int = 0  # 0: one per CPU core
    only: tuple[str, ...] = ()  # build just these manifests (e.g. the test sets, minutes not hours)
    # build only the first N training items (0: all): a shorter run on the corpus a full build
    # makes, with the same valid and test splits (item j of a split does not depend on the size)
    train_items: int = 0

    def __post_init__(self) -> None:
        for name in ("piper_share", "accent_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.tts_size < 0:
            raise ValueError(f"tts_size must be >= 0, got {self.tts_size}")
        if self.train_items < 0:
            raise ValueError(f"train_items must be >= 0 (0: all), got {self.train_items}")


@dataclass(frozen=True)
class Planned:
    id: str
    split: str
    qa: QA
    voice: Voice | None  # None: a written question (train_text)
    question_file: str  # relative to the output folder ("" for written questions)
    answer_file: str


@dataclass(frozen=True)
class Job:
    rel: str
    text: str
    voice: Voice
    sample_rate: int | None  # None: the engine's native rate
    aligned: bool = False  # an answer: its word timings are written beside it


@dataclass
class BuildReport:
    splits: dict[str, dict] = field(default_factory=dict)
    skipped: SkipStats = field(default_factory=SkipStats)
    synthesized: int = 0
    reused: int = 0
    seconds: float = 0.0


def _digest(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, (SYNTH_VERSION, *parts))).encode()).hexdigest()[:20]


def question_file(text: str, voice: Voice, sr: int) -> str:
    h = _digest(text, voice.fingerprint(), sr)
    return f"audio/questions/{h[:2]}/{h}.wav"


def answer_file(text: str) -> str:
    h = _digest(text, ANSWER_VOICE.fingerprint())
    return f"audio/answers/{h[:2]}/{h}.wav"


def split_sizes(cfg: SynthConfig) -> dict[str, int]:
    if cfg.size < 3:
        raise ValueError(f"--size must be at least 3 (one item per split), got {cfg.size}")
    n_valid = max(1, round(cfg.size * cfg.valid_frac))
    n_test = max(1, round(cfg.size * cfg.test_frac))
    if n_valid + n_test >= cfg.size:
        raise ValueError(f"valid + test fractions leave no training items at size {cfg.size}")
    return {"train": cfg.size - n_valid - n_test, "valid": n_valid, "test": n_test}


def plan(cfg: SynthConfig) -> dict[str, list[Planned]]:
    """Every item of every manifest (of `cfg.only`'s, if given), without audio. Item j of a split
    is the same whatever `size` and `only`."""
    pools = assign_splits(taught=cfg.taught_phrases)
    out: dict[str, list[Planned]] = {}

    def planned(name: str, j: int, split: str, qa: QA, voice: Voice | None) -> Planned:
        qfile = question_file(qa.question, voice, cfg.question_sr) if voice is not None else ""
        return Planned(f"{name}-{j:06d}", split, qa, voice, qfile, answer_file(qa.answer))

    for split, n in split_sizes(cfg).items():
        if split == "train" and cfg.train_items:
            n = min(n, cfg.train_items)
        items = []
        for j in range(n):
            rng = item_rng(cfg.seed, split, j)
            qa = sample_qa(pools, split, rng)
            voice = question_voice(rng, unseen=split == "test", piper_share=cfg.piper_share)
            if split == "train" and cfg.accent_share and voice.engine == "espeak":
                # drawn last, so an item without an accent is the item a build without accents has
                if rng.random() < cfg.accent_share:
                    voice = replace(voice, accent=rng.randrange(1, 2**31))
            items.append(planned(split, j, split, qa, voice))
        out[split] = items
    if cfg.voice_sets:  # the test questions again, in training voices and in shifted piper voices
        out[SEEN] = [
            planned("seen", j, SEEN, p.qa, question_voice(item_rng(cfg.seed, SEEN, j), piper_share=cfg.piper_share))
            for j, p in enumerate(out["test"])
        ]
        out[SHIFTED] = [
            planned("shifted", j, SHIFTED, p.qa, shifted_voice(*SHIFTS[j % len(SHIFTS)]))
            for j, p in enumerate(out["test"])
        ]
    if cfg.text_size:
        out[TEXT] = [
            planned("text", j, TEXT, sample_qa(pools, "train", item_rng(cfg.seed, TEXT, j)), None)
            for j in range(cfg.text_size)
        ]
    if cfg.tts_size:  # the answer voice says a training question (its text is what it says)
        out[TTS] = []
        for j in range(cfg.tts_size):
            qa = sample_qa(pools, "train", item_rng(cfg.seed, TTS, j))
            out[TTS].append(planned("tts", j, TTS, replace(qa, answer=qa.question), None))
    if cfg.only:
        unknown = sorted(set(cfg.only) - set(out))
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: this corpus has {', '.join(out)}")
        out = {k: v for k, v in out.items() if k in cfg.only}
    return out


# --- rendering one clip -----------------------------------------------------------------------------


def speech_bounds(wav: np.ndarray, sr: int, *, top_db: float = 40.0, margin_s: float = 0.06) -> tuple[int, int]:
    """(start, end) sample of the clip without leading/trailing stretches quieter than `top_db`
    below the loudest 10 ms frame, keeping a short margin so onsets and decays stay intact."""
    hop = max(1, sr // 100)
    n = len(wav) // hop
    if n == 0:
        return 0, len(wav)
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-top_db / 20))
    margin = int(margin_s * sr)
    return max(0, loud[0] * hop - margin), min(len(wav), (loud[-1] + 1) * hop + margin)


def trim_silence(wav: np.ndarray, sr: int, **kw: float) -> np.ndarray:
    start, end = speech_bounds(wav, sr, **kw)
    return wav[start:end]


def render_clip(speaker: Speaker, job: Job) -> tuple[np.ndarray, int, list[list[float]] | None]:
    """Samples, rate, and (for piper) each word's [start, end] in seconds of the trimmed clip."""
    wav, sr, spans = speaker.speak_aligned(job.text, job.voice)
    start, end = speech_bounds(np.asarray(wav, dtype=np.float32), sr)
    wav = np.asarray(wav[start:end], dtype=np.float32)
    words = (
        None
        if spans is None
        else [[round(max(0, a - start) / sr, 4), round(max(0, min(b, end) - start) / sr, 4)] for a, b in spans]
    )
    if job.voice.tempo != 1.0 or job.voice.cents:
        wav = change_tempo_pitch(wav, sr, job.voice.tempo, job.voice.cents)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak < 1e-4:
        raise RuntimeError(f"{job.voice.label} produced silence for {job.text!r}")
    wav = wav * (10 ** (job.voice.peak_db / 20) / peak)
    if job.sample_rate and job.sample_rate != sr:
        wav, sr = resample(wav, sr, job.sample_rate), job.sample_rate
    if job.voice.tempo != 1.0:
        words = None  # sox's tempo moves the words
    return wav, sr, words


def words_file(audio: Path) -> Path:
    """The sidecar of an answer clip with its word timings (JSON list of [start_s, end_s])."""
    return audio.with_suffix(".words.json")


_worker: dict[str, object] = {}


def _init_worker(out_dir: str) -> None:
    _worker["out"], _worker["speaker"] = Path(out_dir), Speaker()


def _run_job(job: Job) -> tuple[str, float | None, str]:
    """Synthesize one clip to its file (and an answer's word timings beside it):
    (rel, seconds or None, error)."""
    try:
        wav, sr, words = render_clip(_worker["speaker"], job)  # type: ignore[arg-type]
        path = _worker["out"] / job.rel  # type: ignore[operator]
        if job.aligned:
            atomic_write_text(words_file(path), json.dumps(words))
        with atomic_path(path) as tmp:
            save_audio(tmp, wav, sr)
        return job.rel, len(wav) / sr, ""
    except Exception as e:  # one bad clip must not stop a 100k-item build
        return job.rel, None, f"{type(e).__name__}: {e}"


def _existing_seconds(path: Path, aligned: bool) -> float | None:
    """Duration of a finished clip (an answer is finished once its word timings are written)."""
    try:
        if aligned and not words_file(path).is_file():
            return None
        return float(sf.info(str(path)).duration)
    except Exception:
        return None


def answer_words(path: Path) -> list[list[float]] | None:
    try:
        return json.loads(words_file(path).read_text())
    except (OSError, ValueError):
        return None


def _synthesize(
    out_dir: Path, jobs: list[Job], workers: int, progress: bool
) -> tuple[dict[str, float], dict[str, str]]:
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for rel, secs, err in run_jobs(
        _run_job,
        jobs,
        workers=workers,
        init=_init_worker,
        init_args=(str(out_dir),),
        min_jobs=8,
        chunksize=8,
        desc="synth",
        unit="clip",
        progress=progress,
        smoothing=0.05,
    ):
        if secs is None:
            errors[rel] = err
        else:
            seconds[rel] = secs
    return seconds, errors


def build(out_dir: str | Path, cfg: SynthConfig, *, progress: bool = True) -> BuildReport:
    """Build (or finish building) the corpus in `out_dir`; returns sizes, hours and skips."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "audio").glob("*/*/.*.tmp*"):  # left by workers killed mid-write
        stale.unlink(missing_ok=True)
    planned = plan(cfg)

    jobs: dict[str, Job] = {}
    for items in planned.values():
        for p in items:
            jobs.setdefault(p.answer_file, Job(p.answer_file, p.qa.answer, ANSWER_VOICE, None, aligned=True))
    for items in planned.values():
        for p in items:
            if p.voice is not None:
                jobs.setdefault(p.question_file, Job(p.question_file, p.qa.question, p.voice, cfg.question_sr))

    seconds: dict[str, float] = {}
    todo = []
    for rel, job in jobs.items():
        s = _existing_seconds(out / rel, job.aligned) if (out / rel).exists() else None
        if s is None:
            todo.append(job)
        else:
            seconds[rel] = s
    report = BuildReport(reused=len(seconds))
    workers = cfg.workers or os.cpu_count() or 1
    log.info("%d clips to synthesize (%d already on disk), %d workers", len(todo), len(seconds), workers)
    made, errors = _synthesize(out, todo, workers, progress)
    seconds.update(made)
    report.synthesized = len(made)

    words = {
        p.answer_file: answer_words(out / p.answer_file)
        for items in planned.values()
        for p in items
        if p.answer_file in seconds
    }
    for split, items in planned.items():
        kept: list[Item] = []
        for p in items:
            bad = [rel for rel in (p.question_file, p.answer_file) if rel and rel not in seconds]
            if bad:
                report.skipped.add("synthesis failed", f"{p.id}: {errors.get(bad[0], 'unknown error')}")
                continue
            meta = {
                "skill": p.qa.skill or p.qa.combo.skill,
                "combo": p.qa.combo.key,
                "template": p.qa.template,
                "split": split,
                "answer_seconds": round(seconds[p.answer_file], 3),
            }
            if words.get(p.answer_file):
                meta["answer_words"] = words[p.answer_file]  # [start_s, end_s] per word of the answer
            if p.voice is not None:
                meta |= {
                    "voice": p.voice.label,
                    "voice_params": p.voice.params(),
                    "question_seconds": round(seconds[p.question_file], 3),
                }
            kept.append(
                Item(
                    p.id,
                    p.qa.question,
                    p.qa.answer,
                    out / p.question_file if p.voice else None,
                    out / p.answer_file,
                    "utterance" if split == TTS else "qa",
                    meta,
                )
            )
        write_manifest(out / f"{split}.jsonl", kept)
        report.splits[split] = {
            "items": len(kept),
            "question_hours": sum(it.meta.get("question_seconds", 0.0) for it in kept) / 3600,
            "answer_hours": sum(it.meta["answer_seconds"] for it in kept) / 3600,
            "skills": dict(sorted(Counter(it.meta["skill"] for it in kept).items())),
        }
    report.seconds = time.perf_counter() - t0
    answers = {p.answer_file for items in planned.values() for p in items if p.answer_file in seconds}
    splits = report.splits
    if cfg.only and (out / "corpus.json").is_file():  # the manifests not rebuilt keep their entries
        splits = {**json.loads((out / "corpus.json").read_text()).get("splits", {}), **splits}
    summary = {
        "settings": {k: v for k, v in asdict(cfg).items() if k != "workers"},
        "synth_version": SYNTH_VERSION,
        "splits": splits,
        "distinct_answers": len(answers),
        "answer_hours_on_disk": sum(seconds[a] for a in answers) / 3600,
        "skipped": dict(report.skipped.counts),
        "last_build": {
            "seconds": round(report.seconds, 1),
            "synthesized": report.synthesized,
            "reused": report.reused,
            "workers": workers,
        },
    }
    atomic_write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return report


def format_report(report: BuildReport, out_dir: Path) -> str:
    n_items = sum(s["items"] for s in report.splits.values())
    lines = [
        f"corpus in {out_dir}: {n_items} items (all manifests) in {report.seconds:.1f} s "
        f"({n_items / max(report.seconds, 1e-9):.1f} items/s; {report.synthesized} clips synthesized, "
        f"{report.reused} reused)"
    ]
    for split, s in report.splits.items():
        lines.append(
            f"  {split:<19} {s['items']:>7} items  questions {s['question_hours']:.2f} h  "
            f"answers {s['answer_hours']:.2f} h"
        )
    lines.append(f"  {report.skipped.summary()}")
    return "\n".join(lines)
