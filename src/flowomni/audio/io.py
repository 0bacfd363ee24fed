"""Reading and writing audio with clear errors.

Every decoder failure becomes an `AudioError` whose message names the file and the problem,
so corpus builders and loaders can skip and count bad files instead of crashing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
SILENCE_PEAK = 1e-4  # a clip whose peak stays below this is silence
# kinds of problem with decoded samples (AudioError.reason; flowomni.data.check adds file-level ones)
CORRUPT, EMPTY_AUDIO, SILENT = "corrupt audio", "empty audio", "silent audio"


class AudioError(ValueError):
    """An audio file or buffer that cannot be used; the message names it and the problem,
    `reason` the kind of problem (what skip counts are keyed by)."""

    def __init__(self, message: str, reason: str = CORRUPT) -> None:
        super().__init__(message)
        self.reason = reason


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling (float32 in, float32 out)."""
    if orig_sr == target_sr:
        return wav.astype(np.float32, copy=False)
    g = math.gcd(orig_sr, target_sr)
    return resample_poly(wav, target_sr // g, orig_sr // g).astype(np.float32)


def validate(wav: np.ndarray, sr: int, name: str, *, allow_silent: bool = False) -> np.ndarray:
    """Mono float32 samples that are finite, non-empty and (unless allowed) not silent."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {sr} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:  # [samples, channels] -> mono
        wav = wav.mean(axis=1)
    if wav.ndim != 1:
        raise AudioError(f"{name}: expected mono or [samples, channels] audio, got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError(f"{name}: audio is empty", EMPTY_AUDIO)
    if not np.isfinite(wav).all():
        raise AudioError(f"{name}: audio contains NaN or Inf samples")
    if not allow_silent and float(np.abs(wav).max()) < SILENCE_PEAK:
        raise AudioError(f"{name}: audio is silent", SILENT)
    return wav


def load_audio(
    path: str | Path,
    target_sr: int | None = None,
    *,
    max_seconds: float | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode `path` to mono float32 at `target_sr` (native rate if None)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
        if max_seconds is not None and info.duration > max_seconds:
            raise AudioError(f"{path}: {info.duration:.1f} s is longer than the limit of {max_seconds:.1f} s")
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises several types for corrupt/unknown data
        raise AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from e
    wav = validate(wav, sr, str(path), allow_silent=allow_silent)
    return resample(wav, sr, target_sr) if target_sr else wav


def audio_duration(path: str | Path) -> float:
    """Seconds of audio a file's header declares (nothing is decoded)."""
    if not os.path.isfile(path):  # (False, not OSError, for a name too long for the file system)
        raise AudioError(f"{path}: file not found")
    try:
        return float(sf.info(str(path)).duration)
    except Exception as e:
        raise AudioError(f"{path}: cannot read audio header ({e})") from e


def save_audio(path: str | Path, wav: np.ndarray, sr: int) -> None:
    """Write 16-bit PCM WAV, clipping to [-1, 1]; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16")
