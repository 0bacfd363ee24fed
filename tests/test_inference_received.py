"""Received: the one bookkeeping of an answer's events (Engine.answer, chat, both server endpoints)."""

import numpy as np
import pytest

from flowomni.inference.answer_stream import AudioChunk, Done, Received, TextDelta


def events() -> list:
    return [
        TextDelta("Hel", 5.0),
        AudioChunk(np.ones(160, np.float32), 16000, 7.0),
        TextDelta("lo.", 9.0),
        AudioChunk(np.zeros(80, np.float32), 16000, 11.0),
        Done("Hello.", 0.015, {"rtf": 0.2}),
    ]


def test_received_keeps_text_audio_done_and_first_times() -> None:
    now = iter([1.0, 2.0, 3.0, 4.0])
    got = Received(clock=lambda: next(now))
    for ev in events():
        assert got.add(ev) is ev
    assert got.text == "Hello." and got.final().timings == {"rtf": 0.2}
    assert got.timings == {"first_text_ms": 1.0, "first_audio_ms": 2.0}  # later events keep the first times
    assert got.samples == 240 and got.sample_rate == 16000
    assert got.audio() is not None and got.audio().shape == (240,) and got.audio()[:160].all()


def test_received_counts_without_keeping_and_needs_done() -> None:
    got = Received(keep_audio=False)
    for ev in events()[:-1]:
        got.add(ev)
    assert got.text == "Hello." and got.samples == 240 and got.chunks == [] and got.audio() is None
    assert got.timings == {}  # no clock: no times
    with pytest.raises(RuntimeError, match="without Done"):
        got.final()
