"""Reading and writing audio with clear errors.

Every problem becomes an `AudioError` whose message names the file and the problem and whose
`reason` says which kind it is (one vocabulary: what corpus builders, the feature cache and
`flowomni data check` count their skips by), so bad files are skipped and counted, never a
crash. `load_audio` tells apart a missing file, an empty one, one that is not audio at all
(text, random bytes), a WAV whose data was cut short (libsndfile reads those silently), a
corrupt file in a known format, silence, and one over a length limit.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
SILENCE_PEAK = 1e-4  # a clip whose peak stays below this is silence
# why audio is unusable (AudioError.reason, the keys of skip counts): the file ...
MISSING, EMPTY_FILE, UNREADABLE, NOT_AUDIO, TRUNCATED, TOO_LONG = (
    "missing file",
    "empty file",
    "unreadable file",
    "not audio",
    "truncated audio",
    "too long",
)
# ... or its samples
CORRUPT, EMPTY_AUDIO, SILENT = "corrupt audio", "empty audio", "silent audio"
_STREAMING_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000}  # WAV writers that never patch the header


class AudioError(ValueError):
    """An audio file or buffer that cannot be used; the message names it and the problem,
    `reason` the kind of problem (one of the reasons above)."""

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


def sniff_format(head: bytes) -> str | None:
    """Container named by a file's first bytes, or None if it is not a known audio format."""
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] in (b"FORM", b".snd", b"NIST"):
        return "other"
    return None


def wav_truncation(path: Path) -> str | None:
    """Detail string if a RIFF WAV's data chunk holds fewer bytes than its header promises."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF":
            return None  # RF64/RIFX: leave to libsndfile
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                have = size - pos - 8
                if chunk_size not in _STREAMING_SIZES and have < chunk_size:
                    return f"header promises {chunk_size} data bytes, file has {have}"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def check_file(path: Path, max_seconds: float | None = None) -> Any:
    """The header (soundfile's info) of an audio file that can be decoded, or AudioError with its reason: missing,
    empty, unreadable, not audio, truncated, corrupt header, no samples, too long."""
    try:
        if not path.is_file():
            raise AudioError(f"{path}: file not found", MISSING)
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: empty file (0 bytes)", EMPTY_FILE)
        with path.open("rb") as f:
            head = f.read(12)
        fmt = sniff_format(head)
        if fmt is None:
            looks_text = all(32 <= b < 127 or b in b"\t\r\n" for b in head)
            raise AudioError(
                f"{path}: not audio ({'looks like text' if looks_text else 'unknown file format'})", NOT_AUDIO
            )
        if fmt == "wav" and (detail := wav_truncation(path)):
            raise AudioError(f"{path}: truncated audio ({detail})", TRUNCATED)
    except OSError as e:  # a name too long for the file system, no permission, an I/O error
        raise AudioError(
            f"{str(path)[:200]}: unreadable file ({type(e).__name__}: {e.strerror or e})", UNREADABLE
        ) from e
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for corrupt/unknown data
        raise AudioError(f"{path}: cannot decode audio: cannot read its header ({type(e).__name__}: {e})") from e
    if info.frames == 0:
        raise AudioError(f"{path}: audio is empty (no samples)", EMPTY_AUDIO)
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(
            f"{path}: too long: {info.duration:.1f} s is longer than the limit of {max_seconds:.1f} s", TOO_LONG
        )
    return info


def load_audio(
    path: str | Path,
    target_sr: int | None = None,
    *,
    max_seconds: float | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode `path` to mono float32 at `target_sr` (native rate if None), or AudioError naming
    the file, the problem and (`reason`) its kind."""
    path = Path(path)
    check_file(path, max_seconds)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
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
