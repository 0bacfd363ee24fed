"""Shared fixtures: a handful of real spoken utterances made with espeak-ng (fast, offline)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from helpers.speech import espeak

# Tests run small models, often beside servers, subprocesses or other jobs on a 2-core
# machine: one intra-op thread avoids OpenMP oversubscription (measured 10-20x slowdowns).
torch.set_num_threads(1)

QA = [
    ("What is two plus three?", "Two plus three is five."),
    ("What comes after Monday?", "Tuesday comes after Monday."),
    ("What colour is the sky?", "The sky is blue."),
    ("Repeat after me: green apple.", "Green apple."),
]


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
