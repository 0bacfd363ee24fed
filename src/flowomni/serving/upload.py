"""Uploaded audio files, checked from their header before a sample is decoded.

A compressed file is small on the wire and large in memory: 878 KB of FLAC at 384 kHz x 8
channels decodes to 362 MB. So the rate, channel count and duration the header declares are
checked first, and decoding reads at most the allowed number of frames (a header that
under-declares its length gains nothing). Call `decode_upload` off the event loop: decoding
even an allowed file takes milliseconds of CPU.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from flowomni.audio.io import AudioError, validate
from flowomni.serving.config import ServerConfig
from flowomni.serving.protocol import MAX_RATE, MIN_RATE


def decode_upload(body: bytes, cfg: ServerConfig) -> tuple[np.ndarray, int]:
    """An uploaded audio file -> mono float32 samples and rate (AudioError when unusable)."""
    try:
        with sf.SoundFile(io.BytesIO(body)) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioError(f"uploaded audio at {rate} Hz: the sample rate must be {MIN_RATE}-{MAX_RATE} Hz")
            if channels > cfg.max_upload_channels:
                raise AudioError(
                    f"uploaded audio has {channels} channels: at most {cfg.max_upload_channels} "
                    "are accepted (mix it down)"
                )
            limit = int(cfg.max_turn_seconds * rate)
            if frames > limit:
                raise AudioError(f"question of {frames / rate:.1f} s is longer than {cfg.max_turn_seconds:g} s")
            wav = f.read(min(frames, limit) + 1, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:  # soundfile raises several types for corrupt/unknown data
        raise AudioError(f"uploaded audio cannot be decoded ({type(e).__name__}: {e})") from None
    if len(wav) > limit:
        raise AudioError(f"question is longer than {cfg.max_turn_seconds:g} s (its header said {frames / rate:.1f} s)")
    return validate(wav, rate, "uploaded audio"), rate
