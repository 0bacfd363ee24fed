"""The shipped model answers the four example questions right, in text and in speech a listener
(the independent ASR) understands: issue 20's "make chat on a fresh clone" check, so a model
that regresses on them cannot be shipped unnoticed. The questions and answers are read from
examples/README.md's table."""

import re
from pathlib import Path

import numpy as np
import pytest

from flowomni.evaluation.text import exact_match

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "flowomni-tiny"


def examples() -> list[tuple[str, str]]:
    """(wav file, expected answer) from the examples README's table."""
    rows = re.findall(
        r"^\| `(question_\d\.wav)` \| [^|]+ \| ([^|]+) \|", (ROOT / "examples/README.md").read_text(), re.M
    )
    return [(name, answer.strip()) for name, answer in rows]


def test_the_table_lists_every_example() -> None:
    assert sorted(n for n, _ in examples()) == sorted(p.name for p in (ROOT / "examples").glob("question_*.wav"))


# Examples whose text is right but whose speech the independent ASR mishears, as strict expected
# failures naming what is heard (a mark fails once the answer is heard right, so the model card
# and this list get updated). Stage 9 had greedy tiny.en hear one "dog" as "dot"; stage 10, with
# the same vocoder, is heard right on all four by tiny.en and by Whisper base, and so is stage 11.
MISHEARD: dict[str, str] = {}


@pytest.fixture(scope="module")
def engine():
    from flowomni.inference.engine import Engine

    return Engine.load(str(MODEL))


@pytest.fixture(scope="module")
def spoken(engine) -> dict[str, tuple[str, np.ndarray, int]]:
    """file -> (text, audio, sample rate) of the shipped model's answer."""
    out = {}
    for name, _ in examples():
        got = engine.answer(str(ROOT / "examples" / name))
        out[name] = (got.text, got.audio, got.sample_rate)
    return out


def heard_by(listener: str | None, spoken) -> dict[str, tuple[str, str]]:
    """file -> (text, what `listener` (None: the eval's Whisper tiny.en) hears in its speech)."""
    from flowomni.evaluation.asr import Transcriber

    asr = Transcriber(listener)
    return {name: (text, asr.transcribe(audio, sr)) for name, (text, audio, sr) in spoken.items()}


@pytest.fixture(scope="module")
def answers(spoken) -> dict[str, tuple[str, str]]:
    return heard_by(None, spoken)


@pytest.fixture(scope="module")
def answers_base(spoken) -> dict[str, tuple[str, str]]:
    return heard_by("whisper-base", spoken)


@pytest.mark.slow
@pytest.mark.parametrize("name,expected", examples())
def test_shipped_model_answers_the_example(answers, name: str, expected: str) -> None:
    assert exact_match(expected, answers[name][0]), answers[name]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,expected",
    [
        pytest.param(n, e, marks=pytest.mark.xfail(strict=True, reason=MISHEARD[n])) if n in MISHEARD else (n, e)
        for n, e in examples()
    ],
)
def test_a_listener_understands_the_spoken_answer(answers, name: str, expected: str) -> None:
    assert exact_match(expected, answers[name][1]), answers[name]


@pytest.mark.slow
@pytest.mark.parametrize("name,expected", examples())
def test_a_second_listener_understands_the_spoken_answer(answers_base, name: str, expected: str) -> None:
    """Whisper base (requirements.lock) hears every example, those tiny.en mishears included."""
    assert exact_match(expected, answers_base[name][1]), answers_base[name]


def test_shipped_model_fits_in_50_mb() -> None:
    """Issue 20 caps the shipped folder at 50 MB; the frozen Whisper layers read from their wheel
    are not in it, so this counts every file the folder holds (tuned encoder layers included)."""
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert 0 < size <= 50_000_000, f"models/flowomni-tiny holds {size / 1e6:.1f} MB"
