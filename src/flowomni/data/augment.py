"""Question-audio augmentation: noise at a given SNR, speed, tempo, pitch, loudness.

Two entry points share one implementation: `augment(wav, sr, spec, rng)` for an evaluator
working in memory, and `augment_manifest(...)` which writes an augmented copy of a
corpus's question audio plus a manifest pointing at it (answers untouched: the model's
reply should not change when the question gets harder to hear).

All noise is generated offline: white, pink (1/f) and babble-like (several speech-shaped,
syllable-rate modulated noise "talkers"). Tempo and pitch changes (a voice that speaks
slower or higher, not a tape played faster) use sox's WSOLA `tempo` and `pitch` effects.
`random_spec` draws the training-time augmentation of a question (AugmentConfig's ranges).
Everything is deterministic given the seed.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from flowomni.audio.io import AudioError, load_audio, save_audio
from flowomni.data.fsutil import atomic_path
from flowomni.data.manifest import Item, SkipStats, read_manifest, write_manifest

NOISE_KINDS = ("white", "pink", "babble")
PEAK_LIMIT = 0.99  # clipping guard: louder results are scaled down as a whole


@dataclass(frozen=True)
class AugmentSpec:
    noise_snr_db: float | None = None  # None: no noise
    noise_kind: str = "white"
    speed: float = 1.0  # 1.2: 20 % faster, duration / 1.2 (pitch moves with it, like tape)
    gain_db: float = 0.0
    tempo: float = 1.0  # 1.1: 10 % faster speech at the same pitch (sox tempo)
    pitch_cents: float = 0.0  # +300: three semitones higher at the same tempo (sox pitch)

    def __post_init__(self) -> None:
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {self.noise_kind!r}")
        if not 0.5 <= self.speed <= 2.0:
            raise ValueError(f"speed factor {self.speed} is outside 0.5-2.0")
        if not 0.5 <= self.tempo <= 2.0:
            raise ValueError(f"tempo factor {self.tempo} is outside 0.5-2.0")
        if not -1200 <= self.pitch_cents <= 1200:
            raise ValueError(f"pitch shift {self.pitch_cents} cents is outside +-1200")
        if self.noise_snr_db is not None and not math.isfinite(self.noise_snr_db):
            raise ValueError("noise SNR must be a finite number of dB")

    @property
    def label(self) -> str:
        parts = []
        if self.noise_snr_db is not None:
            parts.append(f"{self.noise_kind}{self.noise_snr_db:g}dB")
        if self.speed != 1.0:
            parts.append(f"speed{self.speed:g}")
        if self.tempo != 1.0:
            parts.append(f"tempo{self.tempo:g}")
        if self.pitch_cents:
            parts.append(f"pitch{self.pitch_cents:+g}c")
        if self.gain_db:
            parts.append(f"gain{self.gain_db:+g}dB")
        return "_".join(parts) or "clean"


@dataclass
class AugmentConfig:
    """Training-time augmentation of question audio: each clip gets `variants` versions (the
    first clean), each with every perturbation drawn independently from these ranges."""

    variants: int = 4  # versions per clip, clean one included (1: no augmentation)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (0.0, 30.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    p_speed: float = 0.4
    speed: tuple[float, float] = (0.85, 1.15)
    p_pitch: float = 0.5
    pitch_cents: tuple[float, float] = (-300.0, 300.0)
    gain_db: tuple[float, float] = (-20.0, 0.0)

    def __post_init__(self) -> None:
        if self.variants < 1:
            raise ValueError(f"augment.variants must be >= 1, got {self.variants}")
        for kind in self.noise_kinds:
            if kind not in NOISE_KINDS:
                raise ValueError(f"augment.noise_kinds: {kind!r} is not one of {NOISE_KINDS}")


def random_spec(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentSpec:
    """One draw of the training augmentation."""
    noise = rng.random() < cfg.p_noise
    return AugmentSpec(
        noise_snr_db=round(float(rng.uniform(*cfg.snr_db)), 1) if noise else None,
        noise_kind=str(rng.choice(list(cfg.noise_kinds))),
        speed=round(float(rng.uniform(*cfg.speed)), 3) if rng.random() < cfg.p_speed else 1.0,
        pitch_cents=round(float(rng.uniform(*cfg.pitch_cents))) if rng.random() < cfg.p_pitch else 0.0,
        gain_db=round(float(rng.uniform(*cfg.gain_db)), 1),
    )


def make_noise(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of `n` samples."""
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        spec[1:] /= np.sqrt(f[1:])  # power ~ 1/f
        spec[0] = 0
        noise = np.fft.irfft(spec, n)
    elif kind == "babble":
        # speech-band noise from 6 "talkers", each switched on and off at a syllable rate
        sos = butter(4, [300, min(3400, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
        t = np.arange(n) / sr
        noise = np.zeros(n)
        for _ in range(6):
            rate, phase = rng.uniform(3.0, 6.0), rng.uniform(0, 2 * np.pi)
            envelope = np.clip(np.sin(2 * np.pi * rate * t + phase), 0, None) ** 2
            noise += sosfilt(sos, rng.standard_normal(n)) * envelope
    else:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    rms = math.sqrt(float(np.mean(noise**2))) or 1.0
    return (noise / rms).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """`wav` + `noise` scaled so that 10 log10(P_speech / P_noise) = snr_db over the clip."""
    p_speech = float(np.mean(wav.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_speech == 0 or p_noise == 0:
        return wav.copy()
    scale = math.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (wav + scale * noise[: len(wav)]).astype(np.float32)


def change_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster by resampling: duration / factor, pitch * factor."""
    if factor == 1.0:
        return wav.copy()
    ratio = Fraction(1 / factor).limit_denominator(200)
    return resample_poly(wav, ratio.numerator, ratio.denominator).astype(np.float32)


def change_gain(wav: np.ndarray, gain_db: float) -> np.ndarray:
    return (wav * 10 ** (gain_db / 20)).astype(np.float32)


def limit_peak(wav: np.ndarray, peak: float = PEAK_LIMIT) -> np.ndarray:
    """Scale down (never clip) if the peak exceeds `peak`; keeps the SNR intact."""
    m = float(np.abs(wav).max()) if wav.size else 0.0
    return wav * (peak / m) if m > peak else wav


def sox_effects(wav: np.ndarray, sr: int, effects: list[str]) -> np.ndarray:
    """Run sox effects on float samples through pipes (no files); sox is a Debian dependency."""
    exe = shutil.which("sox")
    if exe is None:
        raise RuntimeError("sox is not installed (`make setup` installs it): needed for tempo and pitch changes")
    fmt = ["-t", "f32", "-r", str(sr), "-c", "1"]
    out = subprocess.run(
        [exe, "-q", *fmt, "-", *fmt, "-", *effects],
        input=np.ascontiguousarray(wav, dtype=np.float32).tobytes(),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


def change_tempo_pitch(wav: np.ndarray, sr: int, tempo: float, pitch_cents: float) -> np.ndarray:
    """Speak `tempo` times faster and `pitch_cents` higher, each without changing the other."""
    effects = []
    if pitch_cents:
        effects += ["pitch", f"{pitch_cents:g}"]
    if tempo != 1.0:
        effects += ["tempo", "-s", f"{tempo:g}"]
    return sox_effects(wav, sr, effects) if effects else wav.copy()


def augment(wav: np.ndarray, sr: int, spec: AugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """Tempo and pitch, speed, then gain, then noise (so the SNR is exact for the final speech),
    then the clipping guard."""
    out = change_tempo_pitch(np.asarray(wav, dtype=np.float32), sr, spec.tempo, spec.pitch_cents)
    out = change_speed(out, spec.speed)
    out = change_gain(out, spec.gain_db)
    if spec.noise_snr_db is not None:
        out = add_noise(out, spec.noise_snr_db, make_noise(spec.noise_kind, len(out), sr, rng))
    return limit_peak(out).astype(np.float32)


def _item_rng(seed: int, item_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha1(item_id.encode()).digest()[:8], "little")])


def augment_manifest(
    manifest: str | Path, out_dir: str | Path, spec: AugmentSpec, *, seed: int = 0
) -> tuple[Path, list[Item], SkipStats]:
    """Write augmented question audio for every item of `manifest` under `out_dir`, and
    `out_dir/<manifest name>` pointing at it.

    Answer audio is not copied: `out_dir/source` is a symlink to the original corpus
    folder, and answers are referenced through it (paths stay inside the new root).
    Items whose question audio is unreadable are skipped and counted.
    """
    manifest, out = Path(manifest), Path(out_dir)
    items, stats = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    source = out / "source"
    src_dir = manifest.absolute().parent
    if source.is_symlink() or source.exists():
        if Path(os.path.realpath(source)) != Path(os.path.realpath(src_dir)):
            raise FileExistsError(f"{source} exists and does not point to {src_dir}; use another OUT_DIR")
    else:
        source.symlink_to(src_dir, target_is_directory=True)

    def via_source(p: Path | None) -> Path | None:
        return None if p is None else source / os.path.relpath(p, src_dir)

    kept: list[Item] = []
    for item in items:
        if item.question_audio is None:
            stats.add("no question audio", item.id)
            continue
        try:
            wav = load_audio(item.question_audio)
        except AudioError as e:
            stats.add(e.reason, str(e))
            continue
        sr = int(sf.info(str(item.question_audio)).samplerate)
        aug = augment(wav, sr, spec, _item_rng(seed, item.id))
        h = hashlib.sha1(item.id.encode()).hexdigest()
        dst = out / "audio" / h[:2] / f"{h[:20]}.wav"
        with atomic_path(dst) as tmp:
            save_audio(tmp, aug, sr)
        meta = {**item.meta, "augment": spec.label, "augment_seed": seed, "question_seconds": round(len(aug) / sr, 3)}
        kept.append(
            Item(item.id, item.question_text, item.answer_text, dst, via_source(item.answer_audio), item.kind, meta)
        )
    out_manifest = out / manifest.name
    write_manifest(out_manifest, kept)
    return out_manifest, kept, stats
