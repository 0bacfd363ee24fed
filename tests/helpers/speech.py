"""Real speech for tests: espeak-ng utterances, log-mel computed in memory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from flowomni.audio import MelConfig, MelSpectrogram, load_audio


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 175) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


class MemoryFeatures:
    """Feature source computing log-mel on first use (tests need no disk cache)."""

    def __init__(self, cfg: MelConfig) -> None:
        self.cfg, self.mel, self.cache = cfg, MelSpectrogram(cfg), {}

    def get(self, path: Path) -> np.ndarray:
        if path not in self.cache:
            wav = torch.from_numpy(load_audio(path, self.cfg.sample_rate))
            self.cache[path] = self.mel(wav).numpy()
        return self.cache[path]
