"""Server parts on their own: energy VAD, the bounded work queue, protocol parsing, settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time

import numpy as np
import pytest

from flowomni.config import ConfigError
from flowomni.serving import cli
from flowomni.serving import protocol as P
from flowomni.serving.config import ServerConfig
from flowomni.serving.queue import Busy, WorkQueue
from flowomni.serving.vad import EnergyVAD, frame_db
from flowomni.serving.vad_config import VadConfig

SR = 16000


def tone(seconds: float, db: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (np.sqrt(2) * 10 ** (db / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, db: float, seed: int = 0) -> np.ndarray:
    return (10 ** (db / 20) * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def events(vad: EnergyVAD, x: np.ndarray, chunk: int = 320) -> list[tuple[str, float | None]]:
    out = []
    for i in range(0, len(x), chunk):
        for ev in vad.push(x[i : i + chunk]):
            out.append((ev.kind, None if ev.audio is None else len(ev.audio) / SR))
    return out


# ---------------------------------------------------------------- VAD


def test_frame_db_is_rms_level() -> None:
    assert frame_db(tone(0.1, -20)) == pytest.approx(-20, abs=0.1)
    assert frame_db(np.zeros(320)) < -100


def test_vad_segments_an_utterance_with_preroll_and_short_tail() -> None:
    cfg = VadConfig()
    vad = EnergyVAD(cfg, SR)
    burst = tone(0.6, -15)
    x = np.concatenate([noise(0.5, -70), burst, noise(1.0, -70, seed=1)])
    evs = events(vad, x)
    assert [k for k, _ in evs] == ["start", "end"]
    # preroll + burst + kept tail of the closing silence (0.15 s), to a frame
    assert evs[1][1] == pytest.approx(cfg.preroll_ms / 1000 + 0.6 + 0.15, abs=0.03)
    assert not vad.in_speech


def test_vad_utterance_holds_all_the_speech() -> None:
    vad = EnergyVAD(VadConfig(silence_ms=300), SR)
    x = np.concatenate(
        [
            np.zeros(8000, np.float32),
            tone(0.4, -20),
            np.zeros(4000, np.float32),
            tone(0.4, -20),
            np.zeros(16000, np.float32),
        ]
    )
    (_,), (ev,) = vad.push(x[:12000]), vad.push(x[12000:])  # a gap shorter than silence_ms does not end it
    assert ev.kind == "end"
    assert float(np.sum(ev.audio**2)) == pytest.approx(float(np.sum(x**2)), rel=1e-4)


def test_vad_ignores_clicks_quiet_noise_and_steady_hum() -> None:
    vad = EnergyVAD(VadConfig(), SR)
    click = np.concatenate([np.zeros(8000, np.float32), tone(0.03, -6), np.zeros(8000, np.float32)])
    assert events(vad, click) == []
    assert events(vad, noise(2.0, -55)) == []  # under threshold_db
    # a hum far above the threshold: once it has filled the noise window it is no longer speech
    vad = EnergyVAD(VadConfig(noise_window_ms=1000, silence_ms=300), SR)
    evs = events(vad, noise(4.0, -25))
    assert [k for k, _ in evs] == ["start", "end"] and evs[1][1] < 1.6
    assert events(vad, noise(3.0, -25, seed=2)) == []
    # ... while speech well above the hum is still heard
    assert [k for k, _ in events(vad, np.concatenate([tone(0.5, -5), noise(0.6, -25, seed=3)]))] == ["start", "end"]


def test_vad_chunking_does_not_matter_and_flush_ends_early() -> None:
    x = np.concatenate([noise(0.4, -70), tone(0.5, -15), noise(1.0, -70, seed=1)])
    a = events(EnergyVAD(VadConfig(), SR), x, chunk=97)
    b = events(EnergyVAD(VadConfig(), SR), x, chunk=4000)
    assert a == b and len(a) == 2
    vad = EnergyVAD(VadConfig(), SR)
    assert vad.flush() is None
    vad.push(np.concatenate([noise(0.4, -70), tone(0.5, -15)]))
    assert vad.in_speech and vad.speech_seconds > 0.5
    audio = vad.flush()
    assert audio is not None and len(audio) / SR > 0.5 and not vad.in_speech


def test_vad_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"vad.silence_ms: 0 is out of range \(allowed: 50 to 10000\)"):
        EnergyVAD(VadConfig(silence_ms=0), SR)


# ---------------------------------------------------------------- work queue


def test_queue_limits_concurrency_and_refuses_beyond_waiting() -> None:
    async def go() -> None:
        q = WorkQueue(max_concurrent=2, max_waiting=1)
        live, peak, lock = [0], [0], threading.Lock()

        def job():
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            try:
                for i in range(5):
                    time.sleep(0.02)
                    yield i
            finally:
                with lock:
                    live[0] -= 1

        async def consume(ticket):
            async with contextlib.aclosing(q.stream(ticket, lambda stop: job())) as it:
                return [i async for i in it]

        tickets = [q.admit() for _ in range(3)]
        with pytest.raises(Busy, match="2 answers running|0 answers running"):
            q.admit()
        assert q.refused == 1
        results = await asyncio.gather(*(consume(t) for t in tickets))
        assert results == [[0, 1, 2, 3, 4]] * 3
        assert peak[0] == 2
        # a slot is given back once its worker thread has returned, just after its last item
        await asyncio.wait_for(asyncio.gather(*(t.ended.wait() for t in tickets)), 5)
        assert (q.running, q.waiting) == (0, 0)
        q.shutdown()

    asyncio.run(go())


def test_queue_stops_the_worker_when_left_early_and_reraises_errors() -> None:
    async def go() -> None:
        q = WorkQueue(1, 0)
        produced, closed = [], threading.Event()

        def endless():
            try:
                i = 0
                while True:
                    produced.append(i)
                    yield i
                    i += 1
                    time.sleep(0.01)
            finally:
                closed.set()

        t = q.admit()
        async with contextlib.aclosing(q.stream(t, lambda stop: endless())) as it:
            async for i in it:
                if i == 3:
                    break
        await asyncio.wait_for(t.ended.wait(), 2)
        assert closed.is_set() and len(produced) < 10 and q.running == 0

        def failing():
            yield 1
            raise ValueError("bad question")

        t = q.admit()
        with pytest.raises(ValueError, match="bad question"):
            async with contextlib.aclosing(q.stream(t, lambda stop: failing())) as it:
                async for _ in it:
                    pass
        await asyncio.wait_for(t.ended.wait(), 2)
        # an admitted job that never runs gives its place back
        t = q.admit()
        with pytest.raises(Busy):
            q.admit()
        t.close()
        t.close()
        assert q.waiting == 0 and t.ended.is_set()
        q.admit().close()
        q.shutdown()

    asyncio.run(go())


# ---------------------------------------------------------------- protocol and settings


def test_pcm_conversions() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)
    raw = P.float_to_pcm16(x)
    assert np.frombuffer(raw, "<i2").tolist() == [0, 16384, -16384, 32767, -32768, 32767]
    assert np.allclose(P.pcm16_to_float(raw)[:3], x[:3])
    with pytest.raises(P.ProtocolError) as e:
        P.pcm16_to_float(b"\x00\x00\x00")
    assert e.value.code == "bad_audio"


@pytest.mark.parametrize(
    "raw, code",
    [
        ("nope", "bad_json"),
        ("3", "bad_message"),
        ('{"type": null}', "bad_message"),
        ('{"type": "x"}', "unknown_type"),
        ('{"type": "text", "text": 5}', "bad_message"),
    ],
)
def test_parse_message_errors(raw: str, code: str) -> None:
    with pytest.raises(P.ProtocolError) as e:
        P.parse_message(raw)
    assert e.value.code == code and e.value.message


def test_parse_start() -> None:
    keys = ("silence_ms",)
    opts = P.parse_start(
        {"type": "start", "sample_rate": 48000, "mode": "vad", "speak": False, "vad": {"silence_ms": 500}}, keys
    )
    assert (opts.sample_rate, opts.mode, opts.speak, opts.vad) == (48000, "vad", False, {"silence_ms": 500})
    assert P.parse_start({"type": "start"}, keys) == P.StartOptions()
    for bad in ({"sample_rate": True}, {"speak": 1}, {"vad": {"silence_ms": "long"}}, {"vad": []}):
        with pytest.raises(P.ProtocolError):
            P.parse_start({"type": "start", **bad}, keys)


def test_server_config_from_flags_and_overrides(tmp_path) -> None:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    (tmp_path / "s.yaml").write_text("max_waiting: 2\nvad:\n  silence_ms: 400\n")
    args = p.parse_args(
        [
            "--port",
            "9001",
            "--max-concurrent",
            "2",
            "--config",
            str(tmp_path / "s.yaml"),
            "--set",
            "vad.threshold_db=-50",
            "--set",
            "history_turns=1",
        ]
    )
    cfg = cli.server_config(args)
    assert (cfg.host, cfg.port, cfg.max_concurrent, cfg.max_waiting, cfg.history_turns) == ("127.0.0.1", 9001, 2, 2, 1)
    assert (cfg.vad.silence_ms, cfg.vad.threshold_db) == (400, -50)
    with pytest.raises(ConfigError, match="unknown"):
        cli.server_config(p.parse_args(["--set", "max_sesions=3"]))
    with pytest.raises(ConfigError, match="max_concurrent"):
        cli.server_config(p.parse_args(["--max-concurrent", "0"]))
    assert ServerConfig().host == "127.0.0.1"  # safe default: this machine only
