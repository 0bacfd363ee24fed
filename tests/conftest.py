"""Shared fixtures: a handful of real spoken utterances made with espeak-ng (fast, offline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flowomni.audio import MelConfig, MelSpectrogram, load_audio

# Tests run small models, often beside servers, subprocesses or other jobs on a 2-core
# machine: one intra-op thread avoids OpenMP oversubscription (measured 10-20x slowdowns).
torch.set_num_threads(1)

QA = [
    ("What is two plus three?", "Two plus three is five."),
    ("What comes after Monday?", "Tuesday comes after Monday."),
    ("What colour is the sky?", "The sky is blue."),
    ("Repeat after me: green apple.", "Green apple."),
]


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


@pytest.fixture(scope="session")
def spoken_items(tmp_path_factory: pytest.TempPathFactory) -> list[SimpleNamespace]:
    """Question/answer items with real speech: questions and answers in different voices."""
    root = tmp_path_factory.mktemp("spoken")
    items = []
    for i, (q, a) in enumerate(QA):
        qa = espeak(q, root / f"q{i}.wav", voice="en-gb" if i % 2 else "en-us")
        aa = espeak(a, root / f"a{i}.wav", voice="en-us", speed=190)
        items.append(
            SimpleNamespace(id=f"ex{i}", question_text=q, answer_text=a, question_audio=qa, answer_audio=aa, kind="qa")
        )
    return items
