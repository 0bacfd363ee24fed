"""benchmarks/encoder_hearing.py: Whisper's own transcript of the questions, per condition."""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from encoder_hearing import accuracy_by_hearing, heard, hearing  # noqa: E402

from flowomni.data.augment import AugmentSpec  # noqa: E402
from flowomni.data.manifest import Item  # noqa: E402


class RecordingASR:
    """Hears every question as its clip's first word; keeps the audio it was given."""

    def __init__(self, words: list[str]) -> None:
        self.words, self.audio = words, []

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        self.audio.append(wav)
        return self.words[len(self.audio) - 1]


def clips(tmp_path: Path, n: int) -> list[Item]:
    t = np.arange(16000) / 16000
    items = []
    for k in range(n):
        path = tmp_path / f"q{k}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32), 16000)
        items.append(Item(id=f"test-{k}", question_text=f"what is {k}", question_audio=path, answer_text="x"))
    return items


def test_noise_is_at_the_asked_snr_and_the_same_every_run(tmp_path: Path) -> None:
    items = clips(tmp_path, 2)
    spec = AugmentSpec(noise_snr_db=10.0)
    a, b, clean = RecordingASR(["a", "b"]), RecordingASR(["a", "b"]), RecordingASR(["a", "b"])
    heard(a, items, spec, seed=0)
    heard(b, items, spec, seed=0)
    heard(clean, items, None, seed=0)
    for x, y, c in zip(a.audio, b.audio, clean.audio):
        np.testing.assert_array_equal(x, y)
        noise = x - c
        snr = 10 * np.log10(np.mean(c.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert abs(snr - 10.0) < 0.1
    assert not np.array_equal(a.audio[0][:100] - clean.audio[0][:100], a.audio[1][:100] - clean.audio[1][:100])


def test_hearing_scores_the_transcripts_against_the_question() -> None:
    rows = [
        {"id": "1", "question": "What is five plus four?", "heard": "what is 5 plus 4"},
        {"id": "2", "question": "Count to three.", "heard": "count to tree"},
    ]
    got = hearing(rows)
    assert got["questions"] == 2 and got["heard_exactly"] == 0.5
    assert abs(got["question_wer"] - 1 / 8) < 1e-9


def test_model_accuracy_split_by_whether_whisper_heard_the_question() -> None:
    rows = [
        {"id": "1", "question": "one two", "heard": "one two"},
        {"id": "2", "question": "three", "heard": "tree"},
        {"id": "3", "question": "four", "heard": "four"},
        {"id": "4", "question": "capital", "heard": "capital"},
    ]
    answers = [
        {"id": "1", "skill": "repeat", "exact": True},
        {"id": "2", "skill": "repeat", "exact": True},
        {"id": "3", "skill": "repeat", "exact": False},
        {"id": "4", "skill": "facts_heldout", "exact": False},
    ]
    got = accuracy_by_hearing(rows, answers)
    assert got["heard exactly"] == {"questions": 2, "model_accuracy": 0.5}
    assert got["misheard"] == {"questions": 1, "model_accuracy": 1.0}
