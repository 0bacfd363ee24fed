"""Audio file validation that names *why* a file is unusable, so skips can be counted by reason.

`flowomni.audio.io.load_audio` already turns decoder failures into `AudioError`; on top of
it this module tells apart a missing file, an empty file, a file that is not audio at all
(text, random bytes), a WAV whose data was cut short (libsndfile reads those silently), a
corrupt file in a known format, and silence. Every problem is an `AudioProblem`, a subclass
of `AudioError`, so existing `except AudioError` handlers keep working.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from flowomni.audio.io import CORRUPT, EMPTY_AUDIO, AudioError, load_audio, validate
from flowomni.data.manifest import SkipStats, read_manifest

# reasons (the keys of skip counts): these file-level ones, and the sample-level CORRUPT,
# EMPTY_AUDIO and SILENT of flowomni.audio.io
MISSING, EMPTY_FILE, NOT_AUDIO, TRUNCATED, TOO_LONG, UNREADABLE = (
    "missing file", "empty file", "not audio", "truncated audio", "too long", "unreadable file",
)
_STREAMING_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000}  # writers that never patch the header


class AudioProblem(AudioError):
    """An unusable audio file; `reason` is one of this module's reason strings."""

    def __init__(self, reason: str, path: str | Path, detail: str) -> None:
        super().__init__(f"{path}: {reason}: {detail}")
        self.reason = reason


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


def check_samples(wav: np.ndarray, sr: int, name: str | Path, *, allow_silent: bool = False) -> np.ndarray:
    """Decoded samples -> mono float32, or `AudioProblem` (empty, non-finite, silent, bad rate):
    `validate`'s checks, with its reason."""
    try:
        return validate(wav, sr, str(name), allow_silent=allow_silent)
    except AudioError as e:
        raise AudioProblem(e.reason, name, str(e).removeprefix(f"{name}: ")) from e


def load_checked(
    path: str | Path,
    target_sr: int | None = None,
    *,
    max_seconds: float | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Mono float32 samples at `target_sr` (native if None), or `AudioProblem` with a reason."""
    path = Path(path)
    try:
        if not path.is_file():
            raise AudioProblem(MISSING, path, "no such file")
        if path.stat().st_size == 0:
            raise AudioProblem(EMPTY_FILE, path, "0 bytes")
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as e:  # a name too long for the file system, no permission, an I/O error
        raise AudioProblem(UNREADABLE, str(path)[:200], f"{type(e).__name__}: {e.strerror or e}") from e
    fmt = sniff_format(head)
    if fmt is None:
        looks_text = all(32 <= b < 127 or b in b"\t\r\n" for b in head)
        raise AudioProblem(NOT_AUDIO, path, "looks like text" if looks_text else "unknown file format")
    if fmt == "wav" and (detail := wav_truncation(path)):
        raise AudioProblem(TRUNCATED, path, detail)
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise AudioProblem(CORRUPT, path, f"cannot read header ({e})") from e
    if info.frames == 0:
        raise AudioProblem(EMPTY_AUDIO, path, "no samples")
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioProblem(TOO_LONG, path, f"{info.duration:.1f} s > {max_seconds:.1f} s")
    try:
        wav = load_audio(path, target_sr, allow_silent=True)
    except AudioError as e:
        raise AudioProblem(e.reason, path, str(e)) from e
    return check_samples(wav, target_sr or info.samplerate, path, allow_silent=allow_silent)


def problem(path: str | Path, *, max_seconds: float | None = None) -> AudioProblem | None:
    """The problem of an audio file, or None if it is usable."""
    try:
        load_checked(path, max_seconds=max_seconds)
    except AudioProblem as e:
        return e
    return None


@dataclass
class CheckReport:
    items: int = 0
    ok_items: int = 0
    question_seconds: float = 0.0
    answer_seconds: float = 0.0
    lines: SkipStats = field(default_factory=SkipStats)  # manifest lines skipped
    problems: SkipStats = field(default_factory=SkipStats)  # audio files unusable

    def format(self, name: str | Path) -> str:
        return "\n".join([
            f"{name}: {self.items} items read, {self.ok_items} usable; "
            f"question audio {self.question_seconds / 3600:.2f} h, answer audio {self.answer_seconds / 3600:.2f} h",
            f"  manifest lines: {self.lines.summary()}",
            f"  audio files: {self.problems.summary()}",
        ])


def check_manifest(path: str | Path, *, max_seconds: float | None = None, progress: bool = True) -> CheckReport:
    """Decode every audio file a manifest names (each once); count problems by reason."""
    from tqdm import tqdm

    items, lines = read_manifest(path)
    report = CheckReport(items=len(items), lines=lines)
    seconds: dict[Path, float | None] = {}
    for it in tqdm(items, desc="check", unit="item", disable=not progress):
        ok = True
        for key in ("question_audio", "answer_audio"):
            p = getattr(it, key)
            if p is None:
                continue
            if p not in seconds:
                try:
                    wav = load_checked(p, max_seconds=max_seconds)
                    seconds[p] = len(wav) / sf.info(str(p)).samplerate
                except AudioProblem as e:
                    seconds[p] = None
                    report.problems.add(e.reason, str(e))
                except Exception as e:  # noqa: BLE001 - any failure is this file's, never the whole check's
                    seconds[p] = None
                    report.problems.add(UNREADABLE, f"{str(p)[:200]}: {type(e).__name__}: {e}")
            if seconds[p] is None:
                ok = False
            elif key == "question_audio":
                report.question_seconds += seconds[p] or 0.0
            else:
                report.answer_seconds += seconds[p] or 0.0
        report.ok_items += ok
    return report
