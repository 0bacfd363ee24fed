"""The streaming engine: events, timings, text/speech modes, batches, errors, `flowomni chat`."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from flowomni.audio.mel import MelSpectrogram
from flowomni.checkpoint import save_checkpoint
from flowomni.config import to_dict
from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import AudioChunk, Done, Engine, TextDelta
from flowomni.model.flowomni import FlowOmni

from helpers.models import speaking_model


@pytest.fixture(scope="module")
def engine():
    return Engine(speaking_model(), "griffin-lim-8", gen=GenerationConfig(max_steps=24, seed=0))


def test_spoken_question_streams_text_and_audio_then_done(engine, spoken_items):
    events = list(engine.respond(str(spoken_items[0].question_audio)))
    assert isinstance(events[-1], Done)
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    done = events[-1]
    texts = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert texts == done.text
    # audio streams while decoding goes on: the first sound leaves long before the end
    assert len(chunks) >= 3 and chunks[0].t_ms < 0.6 * done.timings["total_ms"]
    n = sum(len(c.pcm) for c in chunks)
    assert n == done.mel.shape[0] * engine.vocoder.hop_length
    assert done.audio_seconds == pytest.approx(n / engine.vocoder.sample_rate)
    t = done.timings
    assert 0 < t["prefill_ms"] < t["first_audio_ms"] <= t["total_ms"]
    assert t["steps"] == 24 and t["rtf"] > 0 and t["vocoder_ms"] > 0
    assert [e.t_ms for e in events[:-1]] == sorted(e.t_ms for e in events[:-1])


def test_streamed_audio_equals_one_shot_vocoding_of_the_same_mel(engine):
    done_events = list(engine.respond(text="Hi?", gen=GenerationConfig(max_steps=24, seed=1)))
    pcm = np.concatenate([e.pcm for e in done_events if isinstance(e, AudioChunk)])
    one_shot = engine.vocoder(done_events[-1].mel).numpy()
    assert pcm.shape == one_shot.shape
    # Griffin-Lim's phase is its own choice, so compare spectra: chunk seams would show up
    # as broadband energy that the one-shot synthesis does not have
    spec = MelSpectrogram(engine.model.cfg.output_mel).magnitude
    a, b = spec(torch.from_numpy(pcm)), spec(torch.from_numpy(one_shot))
    assert float((a - b).norm() / b.norm()) < 0.35


def test_text_only_answers_are_silent(engine):
    events = list(engine.respond(text="What is two plus three?", speak=False))
    assert not any(isinstance(e, AudioChunk) for e in events)
    assert events[-1].audio_seconds == 0 and events[-1].mel is None


def test_array_input_needs_its_rate_and_is_resampled(engine, spoken_items):
    from flowomni.audio import load_audio

    wav = load_audio(spoken_items[0].question_audio)  # native espeak rate (22.05 kHz)
    with pytest.raises(ValueError, match="sample_rate"):
        list(engine.respond(wav))
    a = engine.question_mel(wav, sample_rate=22050)
    b = engine.question_mel(str(spoken_items[0].question_audio))
    torch.testing.assert_close(a, b)


def test_bad_inputs_are_clear_errors(engine, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(ValueError, match="not audio"):
        list(engine.respond(str(bad)))
    with pytest.raises(ValueError, match="exactly one"):
        list(engine.respond())
    with pytest.raises(ValueError, match="empty"):
        list(engine.respond(text="   "))
    with pytest.raises(ValueError, match="silent"):
        list(engine.respond(np.zeros(16000, dtype=np.float32), sample_rate=16000))


def test_batch_answers_match_streaming_answers(engine, spoken_items, monkeypatch):
    """A padded batch answers each question as streaming it alone does: the same text, the
    same mel (drawn without noise, flow_temperature 0: a batch draws its noise in another
    order) and audio of the same length and spectrum (the batch vocodes each answer in one
    piece, streaming in chunks: compared as in the test above). The stream's chunks follow its
    clock: a fake one (a producer far faster than real time) keeps them off the machine's load."""
    ticks = itertools.count()
    stream = engine.vocoder.stream
    monkeypatch.setattr(engine.vocoder, "stream", lambda *a, **k: stream(*a, clock=lambda: next(ticks) * 1e-4, **k))
    qs = [{"audio": str(spoken_items[0].question_audio)}, {"text": "Hi?"}]
    gen = GenerationConfig(max_steps=12, seed=3, flow_temperature=0.0, decode_dtype="float32")
    batch = engine.answer_batch(qs, gen=gen)
    spec = MelSpectrogram(engine.model.cfg.output_mel).magnitude
    for q, a in zip(qs, batch, strict=True):
        single = engine.answer(q.get("audio"), text=q.get("text"), gen=gen)
        assert a.text == single.text
        assert a.mel is not None and a.mel.shape[0] >= 8 * engine.model.cfg.group  # the model always speaks
        torch.testing.assert_close(a.mel, single.mel, atol=1e-4, rtol=1e-4)
        assert a.audio.shape == single.audio.shape
        x, y = spec(torch.from_numpy(a.audio)), spec(torch.from_numpy(single.audio))
        assert float((x - y).norm() / y.norm()) < 0.35


def test_chat_cli_json(tmp_path, spoken_items):
    model = speaking_model()
    cfg = model.cfg
    cfg.vocoder = "griffin-lim-4"
    ckpt = save_checkpoint(
        tmp_path / "ckpt",
        model_state=model.checkpoint_state(),
        config_yaml=yaml.safe_dump({"model": to_dict(cfg)}),
        meta={"step": 0},
        files=model.checkpoint_files(),
        save_rng=False,
    )
    out = tmp_path / "answer.wav"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowomni.cli",
            "chat",
            str(spoken_items[1].question_audio),
            "--checkpoint",
            str(ckpt),
            "-o",
            str(out),
            "--json",
            "--set",
            "max_steps=10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {"text", "first_audio_ms", "rtf", "audio_seconds"} <= set(res)
    assert res["audio_seconds"] > 0 and out.stat().st_size > 1000
    r = subprocess.run(
        [sys.executable, "-m", "flowomni.cli", "chat", "--text", "hi", "--checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "nope" in r.stderr


def test_should_stop_ends_the_answer_within_a_step(engine):
    steps = []

    def stop() -> bool:
        steps.append(1)
        return len(steps) > 5

    events = list(engine.respond(text="Hi?", should_stop=stop))
    assert isinstance(events[-1], Done) and events[-1].timings["steps"] == 5


def test_exported_model_folder_is_self_contained(tmp_path):
    from flowomni.serving.testing import make_tiny_checkpoint
    from flowomni.training.export import export_model
    from flowomni.vocoder import load_vocoder

    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = export_model(
        ckpt,
        tmp_path / "moved" / "model",
        vocoder=str(root / "models/vocoder"),
        half=True,
        flow_steps=2,
        flow_method="euler",
        flow_temperature=0.5,
        cfg_scale=1.5,
    )
    assert (out / "vocoder" / "model.safetensors").is_file() and not (out / "optimizer.safetensors").exists()
    engine = Engine.load(out, gen=GenerationConfig(max_steps=6, seed=0))
    flow = engine.model.cfg.flow
    assert (flow.steps, flow.method, flow.temperature, flow.cfg_scale) == (2, "euler", 0.5, 1.5)  # the chosen sampler
    with pytest.raises(ValueError, match="flow-method"):
        export_model(ckpt, tmp_path / "other", flow_method="rk4")
    with pytest.raises(ValueError, match="no one-step student"):
        export_model(ckpt, tmp_path / "other", flow_method="student")
    assert not (tmp_path / "other").exists() and not (tmp_path / ".other.tmp").exists()
    with pytest.raises(ValueError, match="flow-temperature"):
        export_model(ckpt, tmp_path / "other", flow_temperature=-1.0)
    with pytest.raises(ValueError, match="cfg-scale"):
        export_model(ckpt, tmp_path / "other", cfg_scale=float("nan"))
    assert engine.vocoder.name.endswith("vocoder")
    assert isinstance(engine.vocoder, type(load_vocoder(str(out / "vocoder"), engine.model.cfg.output_mel)))
    done = list(engine.respond(text="Hi?"))[-1]
    assert isinstance(done, Done) and done.audio_seconds > 0


def test_an_engine_on_a_loaded_model_finds_the_vocoder_beside_it(tmp_path):
    """A model knows the folder it was loaded from, so the vocoder its config names relative
    to that folder is found however the Engine is made (it was `unknown vocoder 'vocoder'`
    unless the model came through FlowOmni.load)."""
    from flowomni.serving.testing import make_tiny_checkpoint
    from flowomni.training.export import export_model
    from flowomni.vocoder.vocos import NeuralVocoder

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = export_model(
        make_tiny_checkpoint(tmp_path / "ckpt"), tmp_path / "model", vocoder=str(root / "models/vocoder")
    )
    model = FlowOmni.from_checkpoint(out)
    assert model.cfg.vocoder == "vocoder" and model.checkpoint_path == out
    by_model, by_path = Engine(model), Engine.load(out)
    assert isinstance(by_model.vocoder, NeuralVocoder)
    assert by_model.vocoder.name == by_path.vocoder.name == str(out / "vocoder")
    assert FlowOmni(model.cfg, model.tokenizer).checkpoint_path is None  # a new model comes from no folder


def test_warm_up_answers_once_and_changes_no_later_answer(spoken_items):
    """`flowomni chat` and the server warm the engine before the first question: that answer must
    be the one a cold engine gives."""
    gen = GenerationConfig(max_steps=24, seed=0)
    warm, cold = Engine(speaking_model(), "griffin-lim-8", gen=gen), Engine(speaking_model(), "griffin-lim-8", gen=gen)
    assert warm.warm_up() > 0 and warm.loop is None  # no decode loop asked for, none started
    q = str(spoken_items[0].question_audio)
    a, b = warm.answer(q), cold.answer(q)
    assert a.text == b.text and a.timings["steps"] == 24
    torch.testing.assert_close(a.mel, b.mel)
