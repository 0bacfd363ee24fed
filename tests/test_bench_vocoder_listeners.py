"""benchmarks/vocoder_listeners.py: one mel per answer, every vocoder, every listener, paired."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from vocoder_listeners import listen, score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_scores_per_listener_with_paired_differences():
    dog = {"a/x": "little blue dog", "b/x": "little blue dot", "a/y": "", "b/y": "Little blue dog."}
    six = {"a/x": "5 plus 1 is 6", "b/x": "5 plus 1 is 6", "a/y": "five", "b/y": "5+1 is 6"}
    rows = [{"text": "Little blue dog.", **dog}, {"text": "Five plus one is six.", **six}]
    got = score(rows, ["a", "b"], ["x", "y"])
    assert got["x"]["a"]["wer"] == 0 and got["x"]["a"]["exact"] == 1.0
    assert got["x"]["b"]["wer"] == pytest.approx(1 / 8) and got["x"]["b"]["exact"] == 0.5
    assert got["x"]["b"]["minus_first"]["difference"] == pytest.approx(1 / 8)
    assert got["y"]["b"]["minus_first"]["difference"] < 0  # listener y hears b better
    assert "minus_first" not in got["y"]["a"]


@pytest.mark.slow
def test_the_same_vocoder_twice_is_heard_the_same():
    from flowomni.evaluation.asr import Transcriber
    from flowomni.inference.engine import Engine

    engine = Engine.load(str(ROOT / "models" / "flowomni-tiny"))
    items = [
        SimpleNamespace(id=f"q{i}", meta={"skill": "x"}, question_audio=ROOT / "examples" / f"question_{i}.wav")
        for i in (1, 4)
    ]
    rows = listen(engine, items, {"a": engine.vocoder, "b": engine.vocoder}, {"tiny": Transcriber()})
    assert len(rows) == 2 and all(r["a/tiny"] == r["b/tiny"] and r["a/tiny"] for r in rows)
    got = score(rows, ["a", "b"], ["tiny"])["tiny"]
    assert got["b"]["minus_first"]["difference"] == 0 and got["a"]["wer"] == got["b"]["wer"]
