"""benchmarks/accuracy_by_voice.py: voices reduced to their dialect, answers counted per dialect."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from accuracy_by_voice import by_voice, dialect, kind  # noqa: E402


def test_dialects_and_counts() -> None:
    assert dialect("espeak:en-gb-scotland+m3") == "en-gb-scotland"
    assert dialect("espeak:en-us") == "en-us"
    assert dialect("piper:joe-us tempo=0.9 pitch=+300") == "joe-us"
    voice_of = {"a": "en-us", "b": "en-us", "c": "joe-us", "d": "joe-us"}
    rows = [
        {"id": "a", "skill": "arithmetic", "exact": True},
        {"id": "b", "skill": "arithmetic", "exact": False},
        {"id": "c", "skill": "facts", "exact": True},
        {"id": "d", "skill": "facts_heldout", "exact": False},  # left out: no model can know it
    ]
    assert by_voice(rows, voice_of) == {
        "en-us": {"right": 1, "questions": 2, "accuracy": 0.5},
        "joe-us": {"right": 1, "questions": 1, "accuracy": 1.0},
    }


def test_voice_kinds_separate_unseen_accents_from_unseen_variants() -> None:
    assert kind("espeak:en-gb-scotland+m3") == "unseen accent"
    assert kind("espeak:en-gb-x-gbcwmd") == "unseen accent"
    assert kind("espeak:en-us+m7") == "training accent, unseen variant"
    assert kind("espeak:en-us+m3") == kind("espeak:en-029") == "training voice"
    assert kind("piper:joe-us tempo=0.9 pitch=+300") == "piper"
