"""benchmarks/asr_decoding.py: the same clips heard with several decodings, compared paired."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from asr_decoding import Keeping, compare_decodings  # noqa: E402


def test_decodings_compared_on_the_same_answers() -> None:
    texts = ["Nine is bigger.", "Ten."]
    out = compare_decodings(texts, {1: ["nine is bigger", "then"], 5: ["9 is bigger.", "ten"]})
    assert out["beam_1"]["wer"] == 0.25 and out["beam_5"]["wer"] == 0.0
    assert out["beam_5"]["minus_beam_1"]["difference"] == -0.25
    assert "minus_beam_1" not in out["beam_1"]


def test_keeping_keeps_every_clip_it_hears() -> None:
    class Echo:
        def transcribe(self, wav, sr):
            return f"{len(wav)} at {sr}"

    k = Keeping(Echo())
    assert k.transcribe(np.zeros(3), 16000) == "3 at 16000"
    k.transcribe(np.zeros(5), 22050)
    assert [(len(w), sr) for w, sr in k.clips] == [(3, 16000), (5, 22050)]
