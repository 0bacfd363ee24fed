"""Choosing a turn detector for one audio stream (its settings: vad_config.py)."""

from __future__ import annotations

from flowomni.serving.silero import SileroVAD
from flowomni.serving.vad import EnergyVAD
from flowomni.serving.vad_config import VadConfig, check_vad

Detector = EnergyVAD | SileroVAD


def make_vad(cfg: VadConfig, sample_rate: int) -> Detector:
    """A detector for one audio stream at `sample_rate`, after checking its settings."""
    check_vad(cfg)
    return SileroVAD(cfg, sample_rate) if cfg.kind == "silero" else EnergyVAD(cfg, sample_rate)
