"""benchmarks/speech_wer_by_novelty.py: spoken answers split by whether training said their text."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from speech_wer_by_novelty import by_novelty, said_in_training  # noqa: E402

from flowomni.data.manifest import Item, write_manifest  # noqa: E402


def test_split_by_whether_training_said_the_text(tmp_path) -> None:
    write_manifest(tmp_path / "train.jsonl", [Item("t0", "What is two plus two?", "Two plus two is 4.")])
    write_manifest(tmp_path / "tts.jsonl", [Item("s0", "Say red hat.", "Say red hat.", kind="utterance")])
    known = said_in_training([str(tmp_path / "train.jsonl"), str(tmp_path / "tts.jsonl")])
    assert known == {"two plus two is four", "say red hat"}  # normalised: digits spelled out
    rows = [
        {"skill": "arithmetic", "text": "Two plus two is four.", "heard": "two plus two is four"},
        {"skill": "repeat", "text": "Old blue dog.", "heard": "old glue dog"},
        {"skill": "repeat", "text": "Old blue dog.", "heard": None},  # not spoken: left out
        {"skill": "repeat", "text": "", "heard": "um"},  # no text to say: left out
    ]
    got = by_novelty(rows, known)
    assert set(got) == {"familiar", "novel", "familiar / arithmetic", "novel / repeat"}
    assert got["familiar"]["speech_wer_vs_text"] == 0.0 and got["familiar"]["words"] == 5
    assert got["novel"]["items"] == 1 and got["novel"]["speech_wer_vs_text"] == pytest.approx(1 / 3)
