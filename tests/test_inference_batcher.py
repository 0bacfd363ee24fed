"""The decode loop (answers in flight stepped together) and one answer's event stream."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_inference_engine import speaking_model

from flowomni.audio.mel import answer_mel_config
from flowomni.inference.answer_stream import AnswerStream, AudioChunk, Done, TextDelta
from flowomni.inference.decoder import GenerationConfig, StepOutput
from flowomni.inference.engine import Engine
from flowomni.model.tokenizer import CharTokenizer
from flowomni.vocoder import load_vocoder

SHIPPED_VOCODER = Path(__file__).resolve().parents[1] / "models" / "vocoder"


class Collector:
    """A job's sink: events, then maybe an error, then None (slot freed)."""

    def __init__(self, on_event=None) -> None:  # noqa: ANN001
        self.events, self.errors, self.ended = [], [], threading.Event()
        self.on_event = on_event

    def __call__(self, item) -> None:  # noqa: ANN001
        if item is None:
            self.ended.set()
        elif isinstance(item, BaseException):
            self.errors.append(item)
        else:
            self.events.append(item)
            if self.on_event is not None:
                self.on_event(item)

    def done(self) -> Done:
        assert self.ended.wait(120), "the answer never ended"
        assert isinstance(self.events[-1], Done), self.events[-1:]
        return self.events[-1]


@pytest.fixture(scope="module")
def engine():
    e = Engine(speaking_model(), "griffin-lim-4", gen=GenerationConfig(max_steps=16, seed=0))
    yield e
    e.stop_loop()


def test_answers_in_flight_are_stepped_together_and_each_is_its_own(engine, spoken_items):
    questions = [{"text": "Hi?"}, {"text": "What is two plus three?"}, {"audio": str(spoken_items[0].question_audio)}]
    loop = engine.start_loop(4)
    steps0 = loop.stats()["steps"]
    sinks = [Collector() for _ in questions]
    jobs = [engine.submit(q.get("audio"), text=q.get("text")) for q in questions]
    for job, sink in zip(jobs, sinks):
        job.start(sink)
    for q, sink in zip(questions, sinks):
        done = sink.done()
        alone = [e for e in engine.respond(q.get("audio"), text=q.get("text")) if isinstance(e, Done)][0]
        assert done.text == alone.text and done.timings["steps"] == 16
        torch.testing.assert_close(done.mel, alone.mel)
        assert "".join(e.text for e in sink.events if isinstance(e, TextDelta)) == done.text
        assert sum(len(e.pcm) for e in sink.events if isinstance(e, AudioChunk)) == done.mel.shape[0] * 256
    # three answers of 16 steps: one batch step per position (plus one for a late joiner), not 48
    assert loop.stats()["steps"] - steps0 <= 2 * 16
    assert loop.stats()["running"] == 0


def test_stopping_frees_the_slot_within_a_step(engine):
    loop = engine.start_loop(2)
    stop = threading.Event()
    seen = []

    def on_event(ev) -> None:  # noqa: ANN001
        seen.append(ev)
        if sum(isinstance(e, AudioChunk) for e in seen) == 1:
            stop.set()  # barge-in after the first audio

    sink = Collector(on_event)
    engine.submit(text="Hi?", should_stop=stop.is_set, gen=GenerationConfig(max_steps=200, seed=0)).start(sink)
    done = sink.done()
    assert done.timings["steps"] < 20 and loop.stats()["running"] == 0


def test_a_bad_question_fails_alone(engine):
    engine.start_loop(2)
    bad, good = Collector(), Collector()
    engine.submit(np.zeros(16000, dtype=np.float32), sample_rate=16000).start(bad)
    engine.submit(text="Hi?").start(good)
    assert good.done().timings["steps"] == 16
    assert bad.ended.wait(60) and len(bad.errors) == 1 and "silent" in str(bad.errors[0]) and not bad.events


def test_more_answers_than_slots_wait_for_one(engine):
    loop = engine.start_loop(2)
    sinks = [Collector() for _ in range(5)]
    for i, sink in enumerate(sinks):
        engine.submit(text=f"Question {i}?", gen=GenerationConfig(max_steps=6 + i, seed=i)).start(sink)
    for i, sink in enumerate(sinks):
        assert sink.done().timings["steps"] == 6 + i
    assert loop.stats() == {**loop.stats(), "running": 0, "waiting": 0}


@pytest.mark.parametrize("vocoder", ["griffin-lim", str(SHIPPED_VOCODER)])
def test_first_audio_leaves_once_the_vocoder_lookahead_is_covered(vocoder: str):
    """Every mel group goes to the vocoder stream, which answers as soon as one frame is past
    its lookahead: the first AudioChunk comes with group ceil((lookahead + 1) / 4)."""
    voc = load_vocoder(vocoder, answer_mel_config())
    out = AnswerStream(CharTokenizer(), voc, True, 0.0)
    first = None
    for i in range(1, 12):
        events = list(out.feed(StepOutput(None, torch.randn(4, 80) - 5, False, False)))
        if first is None and any(isinstance(e, AudioChunk) for e in events):
            first = i
    assert first == -(-(voc.lookahead_frames + 1) // 4), (first, voc.lookahead_frames)
    done = list(out.finish({}))[-1]
    assert isinstance(done, Done) and done.mel.shape == (44, 80)
    assert done.audio_seconds == pytest.approx(44 * 256 / 22050)


def test_warm_up_goes_through_the_running_decode_loop_and_leaves_it_empty(engine):
    loop = engine.start_loop(2)
    steps0 = loop.stats()["steps"]
    assert engine.warm_up(steps=6) > 0
    assert loop.stats()["steps"] - steps0 == 6 and loop.stats()["running"] == 0
