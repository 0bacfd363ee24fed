"""Choosing and checking a turn detector: the one place VAD settings are bounded.

Settings arrive from clients (`start.vad` on /ws, `turn_detection` on /v1/realtime) as well
as from the server's config, so every value is checked against a range that keeps the
detector meaningful (a 0 ms silence would end a turn on every pause; a 60 s one never).
"""

from __future__ import annotations

from typing import Union

from flowomni.config import ConfigError, check_bounds
from flowomni.serving.config import VadConfig
from flowomni.serving.silero import SileroVAD
from flowomni.serving.vad import EnergyVAD

KINDS = ("silero", "energy")
BOUNDS = VadConfig.BOUNDS  # one table: server config, /ws `start.vad` and /v1/realtime `turn_detection`

Detector = Union[EnergyVAD, SileroVAD]


def check_vad(cfg: VadConfig) -> None:
    """ConfigError (a ValueError) naming the first setting that is out of range."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"vad.kind must be one of {list(KINDS)}, got {cfg.kind!r}")
    check_bounds(cfg, "vad")


def make_vad(cfg: VadConfig, sample_rate: int) -> Detector:
    """A detector for one audio stream at `sample_rate`, after checking its settings."""
    check_vad(cfg)
    return SileroVAD(cfg, sample_rate) if cfg.kind == "silero" else EnergyVAD(cfg, sample_rate)
