"""The voice-chat server end to end: real uvicorn servers on loopback, a real WebSocket client.

The model is tiny and random (flowomni.serving.testing): its text is gibberish, but with
`force_speech` every answer streams audio until `max_steps`, so the protocol's rules (order
of events, timings, errors, busy, barge-in, limits) can be checked exactly.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from flowomni.audio.io import load_audio
from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Engine
from flowomni.serving.app import create_app
from flowomni.serving.config import ServerConfig
from flowomni.serving.server import ServerThread
from flowomni.serving.testing import make_tiny_checkpoint
from flowomni.serving.vad_config import VadConfig

from helpers.server_calls import get_json
from helpers.speech import espeak

SHORT_STEPS = 40  # ~1.8 s of answer audio, well under a second to make
LONG_STEPS = 400  # several seconds of work: long enough to interrupt or to keep the queue full


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A spoken question at 16 kHz, float32."""
    path = espeak("What is two plus three?", tmp_path_factory.mktemp("q") / "q.wav")
    return load_audio(path, 16000)


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def start_server(engine: Engine, **cfg_kw: Any) -> ServerThread:
    cfg = ServerConfig(**cfg_kw)
    return ServerThread(create_app(engine, cfg), cfg).start()


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=SHORT_STEPS, seed=0))
    srv = start_server(
        engine,
        max_message_bytes=256 * 1024,
        max_turn_seconds=6.0,
        history_turns=2,
        max_concurrent=1,
        max_waiting=4,
        vad=VadConfig(silence_ms=300),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server(checkpoint: Path):
    """Long answers, one at a time and no queue: for barge-in and busy."""
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=LONG_STEPS, seed=0))
    srv = start_server(engine, max_concurrent=1, max_waiting=0, max_sessions=3)
    yield srv
    srv.stop()


class Client:
    """A protocol client that records everything it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.log: list[dict[str, Any] | bytes] = []

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self, timeout: float = 20.0) -> dict[str, Any] | bytes:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        item = raw if isinstance(raw, bytes) else json.loads(raw)
        self.log.append(item)
        return item

    async def until(self, kind: str, timeout: float = 20.0) -> tuple[list[dict[str, Any]], bytes, dict[str, Any]]:
        """Receive until a JSON message of `kind`: (JSON messages before it, audio bytes, it)."""
        msgs, audio = [], bytearray()
        deadline = time.monotonic() + timeout
        while True:
            item = await self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(item, bytes):
                audio += item
            elif item["type"] == kind:
                return msgs, bytes(audio), item
            else:
                msgs.append(item)

    async def alive(self) -> None:
        """The session still answers (and nothing else is pending)."""
        await self.send(type="ping")
        assert await self.recv(5) == {"type": "pong"}

    async def start(self, **opts: Any) -> dict[str, Any]:
        await self.send(type="start", **opts)
        ready = await self.recv()
        assert isinstance(ready, dict) and ready["type"] == "ready", ready
        return ready


def session(srv: ServerThread, **kw: Any) -> Any:
    return connect(srv.ws_url, max_size=None, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def check_answer(msgs: list[dict[str, Any]], audio: bytes, done: dict[str, Any], turn: int) -> None:
    """The invariants every complete answer keeps."""
    texts = [m for m in msgs if m["type"] == "text"]
    assert texts and all(m["turn"] == turn for m in texts)
    assert "".join(m["text"] for m in texts) == done["text"] != ""
    assert done["turn"] == turn and done["interrupted"] is False
    assert len(audio) == 2 * done["audio_samples"] > 0
    assert done["audio_seconds"] == pytest.approx(done["audio_samples"] / 22050, abs=1e-3)
    t = done["timings"]
    for key in ("first_audio_ms", "first_text_ms", "total_ms", "rtf", "audio_seconds", "queue_ms"):
        assert isinstance(t[key], (int, float)) and t[key] >= 0, key
    assert t["first_text_ms"] <= t["total_ms"] and t["first_audio_ms"] <= t["total_ms"]
    assert t["rtf"] > 0 and t["engine"]["steps"] == SHORT_STEPS


# ---------------------------------------------------------------- turns


def test_whole_utterance_turn(server: ServerThread, question: np.ndarray) -> None:
    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            ready = await c.start(sample_rate=16000, mode="ptt")
            assert ready["output_sample_rate"] == 22050 and ready["output_format"] == "pcm_s16le"
            assert ready["limits"]["max_message_bytes"] == 256 * 1024
            await ws.send(pcm16(question))  # the whole utterance in one frame
            await c.send(type="end_of_turn")
            turn = await c.recv()
            assert turn["type"] == "turn" and turn["turn"] == 1 and turn["by"] == "client"
            assert turn["question_seconds"] == pytest.approx(len(question) / 16000, abs=1e-3)
            msgs, audio, done = await c.until("done")
            check_answer(msgs, audio, done, 1)
            assert done["history"] == 1
            # audio is real PCM, not zeros
            assert np.abs(np.frombuffer(audio, "<i2")).max() > 100
            await c.alive()

    run(go())


def test_streamed_pcm_turn_ended_by_vad(server: ServerThread, question: np.ndarray) -> None:
    silence = np.zeros(8000, np.float32)
    stream = pcm16(np.concatenate([silence, question, silence, silence]))

    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            await c.start(sample_rate=16000, mode="vad", vad={"silence_ms": 300})
            for i in range(0, len(stream), 640):  # 20 ms frames, as a microphone sends them
                await ws.send(stream[i : i + 640])
            msgs, _, turn = await c.until("turn")
            assert [m["state"] for m in msgs if m["type"] == "speech"] == ["start", "end"]
            assert turn["by"] == "vad"
            # the detector trimmed most of the silence around the question
            assert len(question) / 16000 - 0.3 < turn["question_seconds"] < len(question) / 16000 + 0.6
            msgs, audio, done = await c.until("done")
            check_answer(msgs, audio, done, turn["turn"])
            await c.alive()

    run(go())


def test_text_questions_keep_bounded_history_and_reset(server: ServerThread) -> None:
    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            seen = []
            for i in range(3):  # text works without `start` (default options)
                await c.send(type="text", text=f"What is {i} plus one?")
                msgs, audio, done = await c.until("done")
                assert msgs[0] == {"type": "turn", "turn": i + 1, "by": "text", "question_seconds": 0.0}
                check_answer(msgs[1:], audio, done, i + 1)
                seen.append(done["history"])
            assert seen == [1, 2, 2]  # history_turns=2
            await c.send(type="reset")
            assert await c.recv() == {"type": "reset"}
            await c.send(type="text", text="And now?")
            _, _, done = await c.until("done")
            assert done["history"] == 1 and done["turn"] == 4

    run(go())


def test_speak_false_gives_text_only(server: ServerThread) -> None:
    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            ready = await c.start(speak=False)
            assert ready["speak"] is False
            await c.send(type="text", text="Hello?")
            _, audio, done = await c.until("done")
            assert audio == b"" and done["audio_samples"] == 0 and done["text"]

    run(go())


# ---------------------------------------------------------------- barge-in and busy


def test_barge_in_stops_the_answer_promptly(slow_server: ServerThread) -> None:
    async def go() -> None:
        async with session(slow_server) as ws:
            c = Client(ws)
            await c.start()
            await c.send(type="text", text="Tell me a long story.")
            while not isinstance(await c.recv(), bytes):  # wait until it is speaking
                pass
            t0 = time.perf_counter()
            await c.send(type="interrupt")
            _, _, done = await c.until("done", timeout=5)
            assert time.perf_counter() - t0 < 1.0
            assert done["interrupted"] is True and done["turn"] == 1
            assert done["audio_samples"] < LONG_STEPS * 4 * 256 // 2  # far from the whole answer
            assert done["history"] == 0  # interrupted answers are not context
            await c.alive()  # and no audio of turn 1 arrives after its done

            # a new question while answering interrupts too
            await c.send(type="text", text="Another long story.")
            while not isinstance(await c.recv(), bytes):
                pass
            await c.send(type="text", text="Stop, a short question.")
            _, _, done = await c.until("done", timeout=5)
            assert done["turn"] == 2 and done["interrupted"] is True
            turn = await c.recv()
            assert turn["type"] == "turn" and turn["turn"] == 3
            await c.send(type="interrupt")
            _, _, done = await c.until("done", timeout=5)
            assert done["turn"] == 3 and done["interrupted"] is True
        # the worker threads really stopped: nothing is left running
        deadline = time.monotonic() + 5
        while get_json(slow_server.url + "/health")["queue"]["running"]:
            assert time.monotonic() < deadline, "generation kept running after barge-in"
            await asyncio.sleep(0.05)

    run(go())


def test_busy_when_the_queue_is_full(slow_server: ServerThread) -> None:
    async def go() -> None:
        async with session(slow_server) as a, session(slow_server) as b:
            ca, cb = Client(a), Client(b)
            await ca.send(type="text", text="A long answer, please.")
            assert (await ca.recv())["type"] == "turn"
            await cb.send(type="text", text="Me too?")
            busy = await cb.recv()
            assert busy["type"] == "busy" and "busy" in busy["message"] and busy["retry_after_ms"] > 0
            status, body, headers = post(
                slow_server.url + "/v1/respond", json.dumps({"text": "hi"}).encode(), "application/json"
            )
            assert status == 503 and json.loads(body)["error"]["code"] == "busy" and headers["Retry-After"] == "1"
            await cb.alive()
            await ca.send(type="interrupt")
            _, _, done = await ca.until("done", timeout=5)
            assert done["interrupted"]
            # once the slot is free again, b is served (turn numbers were not used by busy replies)
            for _ in range(100):
                if get_json(slow_server.url + "/health")["queue"]["running"] == 0:
                    break
                await asyncio.sleep(0.05)
            await cb.send(type="text", text="Now?")
            turn = await cb.recv()
            assert turn["type"] == "turn" and turn["turn"] == 1
            await cb.send(type="interrupt")
            await cb.until("done", timeout=5)

    run(go())


def test_websocket_from_another_site_is_refused(server: ServerThread) -> None:
    from websockets.exceptions import InvalidStatus

    async def go() -> None:
        with pytest.raises(InvalidStatus) as e:
            async with session(server, origin="http://evil.example"):
                pass
        assert e.value.response.status_code == 403
        async with session(server, origin=server.url) as ws:  # the server's own page is fine
            await Client(ws).alive()

    run(go())


def test_session_limit_gives_busy_and_close(slow_server: ServerThread) -> None:
    async def go() -> None:
        async with session(slow_server) as a, session(slow_server) as b, session(slow_server) as c:
            for ws in (a, b, c):
                await Client(ws).alive()
            async with session(slow_server) as d:
                msg = json.loads(await d.recv())
                assert msg["type"] == "busy" and "sessions" in msg["message"]
                with pytest.raises(ConnectionClosed) as e:
                    await d.recv()
                assert e.value.rcvd.code == 1013
            await Client(a).alive()

    run(go())


def test_concurrent_answers_are_decoded_in_one_batch(checkpoint: Path) -> None:
    """Three sessions asking at once: the decode loop steps their answers together (far fewer
    batch steps than the answers' steps added up), and each answer is complete."""
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=SHORT_STEPS, seed=0))
    with start_server(engine, max_concurrent=3) as srv:
        before = get_json(srv.url + "/health")["decode_loop"]

        async def ask(i: int) -> Any:
            async with session(srv) as ws:
                c = Client(ws)
                await c.start()
                await c.send(type="text", text=f"Question number {i}?")
                return await c.until("done")

        async def go() -> list[Any]:
            return await asyncio.gather(*(ask(i) for i in range(3)))

        for msgs, audio, done in run(go()):
            check_answer(msgs, audio, done, 1)
        after = get_json(srv.url + "/health")["decode_loop"]
    assert after["slots"] == 3 and after["running"] == after["waiting"] == 0
    assert after["steps"] - before["steps"] < 2 * SHORT_STEPS, (before, after)


# ---------------------------------------------------------------- bad input and limits


def test_malformed_messages_get_errors_and_the_session_stays_up(server: ServerThread) -> None:
    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)

            async def expect(code: str, raw: str | bytes) -> None:
                await ws.send(raw)
                err = await c.recv()
                assert err["type"] == "error" and err["code"] == code, err
                assert err["message"] and "turn" not in err
                await c.alive()

            await expect("not_started", pcm16(np.zeros(320)))
            await expect("not_started", json.dumps({"type": "end_of_turn"}))
            await expect("bad_json", "{not json")
            await expect("bad_message", "[1, 2, 3]")
            await expect("bad_message", json.dumps({"type": 7}))
            await expect("unknown_type", json.dumps({"type": "sing"}))
            await expect("bad_message", json.dumps({"type": "text"}))
            await expect("bad_message", json.dumps({"type": "text", "text": "   "}))
            await expect("bad_message", json.dumps({"type": "start", "sample_rate": 123}))
            await expect("bad_message", json.dumps({"type": "start", "sample_rate": "16k"}))
            await expect("bad_message", json.dumps({"type": "start", "format": "opus"}))
            await expect("bad_message", json.dumps({"type": "start", "mode": "always"}))
            await expect("bad_message", json.dumps({"type": "start", "vad": {"loudness": 3}}))
            await expect("bad_message", json.dumps({"type": "start", "colour": "red"}))
            await expect("text_too_long", json.dumps({"type": "text", "text": "x" * 501}))
            await c.start()
            await expect("bad_message", json.dumps({"type": "start", "mode": "vad", "vad": {"silence_ms": 0}}))
            await expect("bad_audio", b"\x00\x01\x02")  # odd byte count: not 16-bit PCM
            await expect("empty_turn", json.dumps({"type": "end_of_turn"}))
            assert "no speech" not in c.log[-2]["message"]  # the failed start left push-to-talk in place
            # silent audio is refused by the engine: the turn ends with an error that names it
            await ws.send(pcm16(np.zeros(16000)))
            await c.send(type="end_of_turn")
            msgs, _, err = await c.until("error")
            assert msgs[0]["type"] == "turn" and err["code"] == "bad_audio" and err["turn"] == msgs[0]["turn"]
            assert "silent" in err["message"]
            # and a good question still gets its answer
            await c.send(type="text", text="Still there?")
            msgs, audio, done = await c.until("done")
            check_answer(msgs[1:], audio, done, msgs[0]["turn"])

    run(go())


def test_oversize_messages(server: ServerThread) -> None:
    limit = 256 * 1024

    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            await c.start()
            await ws.send(b"\x00" * (limit + 2))
            err = await c.recv()
            assert err["code"] == "too_large" and str(limit) in err["message"]
            await ws.send(json.dumps({"type": "text", "text": "a" * (limit + 10)}))
            assert (await c.recv())["code"] == "too_large"
            await c.alive()
            # far over the limit the transport itself closes the socket (1009) ...
            await ws.send(b"\x00" * (5 * limit))
            with pytest.raises(ConnectionClosed) as e:
                await c.recv()
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009
        # ... and the server carries on
        async with session(server) as ws:
            await Client(ws).alive()

    run(go())


def test_turn_length_limit(server: ServerThread) -> None:
    async def go() -> None:
        async with session(server) as ws:
            c = Client(ws)
            await c.start(sample_rate=16000)
            second = pcm16(np.random.default_rng(0).uniform(-0.3, 0.3, 16000))
            for _ in range(7):  # 7 s > max_turn_seconds = 6
                await ws.send(second)
            err = await c.recv()
            assert err["code"] == "turn_too_long" and "6 s" in err["message"]
            await ws.send(second)  # the rest of the too-long turn is ignored ...
            await c.send(type="end_of_turn")  # ... and its end is not a turn
            await c.alive()
            await ws.send(second)  # the next turn works
            await c.send(type="end_of_turn")
            msgs, audio, done = await c.until("done")
            assert msgs[0]["turn"] == 1 and done["turn"] == 1

    run(go())


def test_idle_timeout_and_turn_limit(checkpoint: Path) -> None:
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, seed=0))
    with start_server(engine, idle_timeout_s=0.5, max_session_turns=2) as srv:

        async def go() -> None:
            async with session(srv) as ws:
                c = Client(ws)
                err = await c.recv(5)
                assert err["code"] == "idle_timeout"
                with pytest.raises(ConnectionClosed):
                    await c.recv(5)
            async with session(srv) as ws:
                c = Client(ws)
                for _ in range(2):
                    await c.send(type="text", text="hi")
                    await c.until("done")
                await c.send(type="text", text="hi")
                err = await c.recv()
                assert err["code"] == "session_limit" and "2 turns" in err["message"]
                with pytest.raises(ConnectionClosed) as e:
                    await c.recv(5)
                assert e.value.rcvd.code == 1008

        run(go())


# ---------------------------------------------------------------- HTTP


def post(url: str, body: bytes, ctype: str) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def test_http_endpoints(server: ServerThread, question: np.ndarray) -> None:
    health = get_json(server.url + "/health")
    assert health["status"] == "ok" and health["queue"]["max_concurrent"] == 1 and health["output_sample_rate"] == 22050
    page = urllib.request.urlopen(server.url + "/").read().decode()
    assert "/static/app.js" in page and "<canvas" in page
    js = urllib.request.urlopen(server.url + "/static/app.js").read().decode()
    assert "audioWorklet" in js and "flowomniStats" in js
    assert "end_of_turn" in urllib.request.urlopen(server.url + "/protocol").read().decode()
    api = get_json(server.url + "/openapi.json")
    assert {"/v1/respond", "/health"} <= set(api["paths"])
    assert "audio/wav" in api["paths"]["/v1/respond"]["post"]["requestBody"]["content"]
    assert urllib.request.urlopen(server.url + "/docs").status == 200

    buf = io.BytesIO()
    sf.write(buf, question, 16000, format="WAV", subtype="PCM_16")
    status, body, _ = post(server.url + "/v1/respond", buf.getvalue(), "audio/wav")
    assert status == 200, body
    out = json.loads(body)
    assert (
        out["text"] and out["sample_rate"] == 22050 and out["timings"]["first_audio_ms"] <= out["timings"]["total_ms"]
    )
    wav, sr = sf.read(io.BytesIO(base64.b64decode(out["audio_wav_base64"])))
    assert sr == 22050 and len(wav) / sr == pytest.approx(out["audio_seconds"], abs=1e-3) and np.abs(wav).max() > 0

    status, body, headers = post(
        server.url + "/v1/respond?format=wav",
        json.dumps({"text": "What is two plus three?", "history": [["hi", "hello"]]}).encode(),
        "application/json",
    )
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(body))
    assert sr == 22050 and len(wav) > 0
    assert urllib.parse.unquote(headers["X-Flowomni-Text"])
    assert json.loads(headers["X-Flowomni-Timings"])["total_ms"] > 0

    status, body, _ = post(
        server.url + "/v1/respond", json.dumps({"text": "hi", "speak": False}).encode(), "application/json"
    )
    assert status == 200 and json.loads(body)["audio_wav_base64"] is None

    for body, ctype, code, err in [
        (b"not audio at all", "audio/wav", 400, "bad_audio"),
        (b"", "audio/wav", 400, "bad_audio"),
        (b"{oops", "application/json", 400, "bad_json"),
        (json.dumps({"question": "hi"}).encode(), "application/json", 400, "bad_message"),
        (json.dumps({"text": "hi", "history": "no"}).encode(), "application/json", 400, "bad_message"),
        (b"\x00" * (256 * 1024 + 1), "audio/wav", 413, "too_large"),
    ]:
        status, out, _ = post(server.url + "/v1/respond", body, ctype)
        assert (status, json.loads(out)["error"]["code"]) == (code, err)
    assert get_json(server.url + "/health")["status"] == "ok"


def test_flowomni_serve_command(checkpoint: Path) -> None:
    """The real CLI: binds loopback by default, serves /health, stops cleanly on SIGTERM."""
    import signal
    import subprocess
    import sys

    from flowomni.serving.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowomni.cli",
            "serve",
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(port),
            "--gen",
            "max_steps=8",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = get_json(f"http://127.0.0.1:{port}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "flowomni serve did not come up"
                time.sleep(0.2)
        assert health["status"] == "ok" and health["max_sessions"] == 8
        status, body, _ = post(
            f"http://127.0.0.1:{port}/v1/respond", json.dumps({"text": "hi"}).encode(), "application/json"
        )
        assert status == 200 and json.loads(body)["timings"]["engine"]["steps"] == 8
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert f"http://127.0.0.1:{port}/" in out and "Traceback" not in out


def test_engine_factory_is_loaded_at_startup(checkpoint: Path) -> None:
    calls = []

    def load() -> Engine:
        calls.append(1)
        return Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, seed=0))

    with start_server(load) as srv:
        assert calls == [1] and get_json(srv.url + "/health")["status"] == "ok"
        status, body, _ = post(srv.url + "/v1/respond", json.dumps({"text": "hi"}).encode(), "application/json")
        assert status == 200 and json.loads(body)["text"]
    assert calls == [1]


def test_the_server_warms_its_decode_loop_before_the_first_request(checkpoint: Path) -> None:
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, seed=0))
    with start_server(engine, max_concurrent=2) as srv:
        assert get_json(srv.url + "/health")["status"] == "ok"
        assert engine.loop.stats()["steps"] >= 1 and engine.loop.stats()["running"] == 0


def test_bad_checkpoint_is_a_clear_cli_error(tmp_path: Path) -> None:
    from flowomni.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "missing")]) == 2


@pytest.fixture(scope="module")
def shipped_server():
    from flowomni.paths import shipped_model_path

    try:
        path = shipped_model_path()
    except FileNotFoundError as e:
        pytest.skip(f"no shipped model ({e})")
    srv = start_server(Engine.load(path, gen=GenerationConfig(seed=0)))
    yield srv
    srv.stop()


def test_shipped_model_answers_over_the_socket(shipped_server: ServerThread, question: np.ndarray) -> None:
    """A spoken turn answered right, then a written turn that carries it as context: the socket
    gives the answer the engine gives for that question and history. (Whether history helps or
    hurts the model's answers is measured over many questions, not one: benchmarks/history_context.py.)"""
    from flowomni.paths import shipped_model_path

    answers = []

    async def go() -> None:
        async with session(shipped_server) as ws:
            c = Client(ws)
            await c.start(sample_rate=16000)
            await ws.send(pcm16(question))
            await c.send(type="end_of_turn")
            msgs, audio, done = await c.until("done", timeout=60)
            assert "five" in done["text"].lower() or "5" in done["text"], done["text"]
            assert done["audio_samples"] > 0 and len(audio) == 2 * done["audio_samples"]
            answers.append(done["text"])
            await c.send(type="text", text="What is two plus three?")
            _, _, done = await c.until("done", timeout=60)
            assert done["history"] == 2 and done["text"], done
            answers.append(done["text"])

    run(go())
    engine = Engine.load(shipped_model_path(), gen=GenerationConfig(seed=0))
    assert answers[1] == engine.answer(text="What is two plus three?", history=[("", answers[0])]).text


@pytest.mark.slow
def test_serve_load_benchmark_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    out = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--json",
            "--random",
            "--max-steps",
            "8",
            "--clients",
            "3",
            "--turns",
            "2",
            "--set",
            "max_concurrent=1",
            "--set",
            "max_waiting=1",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    # 3 clients, 1 running + 1 waiting: turns that meet `busy` are retried, so all complete
    assert r["turns_done"] == 6 and r["errors"] == {} and r["first_packet_ms"]["n"] == 6
    assert r["first_packet_ms"]["p50"] <= r["first_packet_ms"]["p95"]
    assert r["server_rss_mb"]["after"] > 0 and r["server_queue_after"]["running"] == 0
