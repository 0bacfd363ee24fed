"""Turn-detection settings, and the one place they are bounded.

Settings arrive from clients (`start.vad` on /ws, `turn_detection` on /v1/realtime) as well
as from the server's config, so every value is checked against a range that keeps the
detector meaningful (a 0 ms silence would end a turn on every pause; a 60 s one never).
The detectors (vad.py, silero.py) and the server config all read this module; it reads none
of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from flowomni.config import Bounds, ConfigError, check_bounds

KINDS = ("silero", "energy")


@dataclass
class VadConfig:
    """Server-side turn detection (hands-free mode): Silero (silero.py) or frame energy (vad.py).
    Clients may set these per session (`start.vad` on /ws, `turn_detection` on /v1/realtime),
    within BOUNDS: a 1-sample frame or an hour of pre-roll would cost the whole server CPU or
    memory, a 0 ms silence would end a turn at every pause."""

    BOUNDS: ClassVar[Bounds] = {
        "threshold": (0.05, 0.95),
        "frame_ms": (5, 100),
        "threshold_db": (-120, 0),
        "margin_db": (0, 60),
        "noise_window_ms": (100, 10_000),
        "min_speech_ms": (0, 2000),
        "silence_ms": (50, 10_000),
        "preroll_ms": (0, 2000),
    }

    kind: str = "silero"  # "silero" (a small neural detector) or "energy" (the fallback; no model)
    threshold: float = 0.5  # silero: speech probability that starts speech (it ends below threshold - 0.15)
    frame_ms: float = 20.0  # analysis frame (energy; silero's frame is 32 ms)
    threshold_db: float = -45.0  # a frame louder than this (dBFS RMS) may be speech ...
    margin_db: float = 12.0  # ... and this far above the noise floor: the quietest frame of
    noise_window_ms: float = 2000.0  # ... this window (steady noise stops being speech after it)
    min_speech_ms: float = 120.0  # this much loud audio in a row starts speech (clicks do not)
    silence_ms: float = 700.0  # this much quiet after speech ends the turn
    preroll_ms: float = 300.0  # audio kept from before the detected start (soft onsets)


def check_vad(cfg: VadConfig) -> None:
    """ConfigError (a ValueError) naming the first setting that is out of range."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"vad.kind must be one of {list(KINDS)}, got {cfg.kind!r}")
    check_bounds(cfg, "vad")
