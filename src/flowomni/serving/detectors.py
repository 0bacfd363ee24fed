"""Choosing and checking a turn detector: the one place VAD settings are bounded.

Settings arrive from clients (`start.vad` on /ws, `turn_detection` on /v1/realtime) as well
as from the server's config, so every value is checked against a range that keeps the
detector meaningful (a 0 ms silence would end a turn on every pause; a 60 s one never).
"""

from __future__ import annotations

import math
from typing import Union

from flowomni.serving.config import VadConfig
from flowomni.serving.silero import SileroVAD
from flowomni.serving.vad import EnergyVAD

KINDS = ("silero", "energy")
BOUNDS: dict[str, tuple[float, float]] = {
    "threshold": (0.05, 0.95),
    "min_speech_ms": (0.0, 2000.0),
    "silence_ms": (100.0, 5000.0),
    "preroll_ms": (0.0, 2000.0),
    "frame_ms": (5.0, 100.0),
    "threshold_db": (-90.0, 0.0),
    "margin_db": (0.0, 40.0),
    "noise_window_ms": (200.0, 10000.0),
}

Detector = Union[EnergyVAD, SileroVAD]


def check_vad(cfg: VadConfig) -> None:
    """ValueError naming the first setting that is out of range."""
    if cfg.kind not in KINDS:
        raise ValueError(f"vad kind must be one of {list(KINDS)}, got {cfg.kind!r}")
    for key, (lo, hi) in BOUNDS.items():
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not lo <= value <= hi:
            raise ValueError(f"vad {key} must be a number from {lo:g} to {hi:g}, got {value!r}")


def make_vad(cfg: VadConfig, sample_rate: int) -> Detector:
    """A detector for one audio stream at `sample_rate`, after checking its settings."""
    check_vad(cfg)
    return SileroVAD(cfg, sample_rate) if cfg.kind == "silero" else EnergyVAD(cfg, sample_rate)
