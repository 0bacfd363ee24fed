"""/v1/realtime end to end, driven by the official `openai` SDK against real servers on loopback.

The model is tiny and random (flowomni.serving.testing): its words are gibberish, but every
answer streams text and audio until `max_steps`, so the protocol (event order, ids, audio
format, usage, errors, barge-in, busy) can be checked exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from flowomni.audio.io import load_audio
from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Engine
from flowomni.serving.app import create_app
from flowomni.serving.config import ServerConfig
from flowomni.serving.server import ServerThread
from flowomni.serving.testing import make_tiny_checkpoint
from flowomni.serving.vad_config import VadConfig

from helpers.server_calls import get_json

KEY = "sk-local-test"
SHORT_STEPS = 40  # ~1.8 s of answer audio
LONG_STEPS = 400  # long enough to talk over
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "question_2.wav"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("rt") / "model")


def serve(checkpoint: Path, steps: int, **cfg_kw: Any) -> ServerThread:
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=steps, seed=0))
    cfg = ServerConfig(api_key=KEY, **cfg_kw)
    return ServerThread(create_app(engine, cfg), cfg).start()


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    srv = serve(
        checkpoint, SHORT_STEPS, max_message_bytes=256 * 1024, max_turn_seconds=6.0, vad=VadConfig(silence_ms=300)
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server(checkpoint: Path):
    srv = serve(checkpoint, LONG_STEPS, max_concurrent=1, max_waiting=0)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def question() -> bytes:
    """examples/question_2.wav as the API wants it: PCM16 at 24 kHz."""
    return pcm16(load_audio(EXAMPLE, 24000))


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * round(24000 * seconds))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sdk_connect(srv: ServerThread, beta: bool = False) -> Any:
    client = AsyncOpenAI(
        api_key=KEY, base_url=srv.url + "/v1", websocket_base_url=srv.url.replace("http", "ws") + "/v1"
    )
    if beta:  # the SDK's beta client (it sends `OpenAI-Beta: realtime=v1`)
        return client.beta.realtime.connect(model="flowomni-tiny")
    return client.realtime.connect(model="flowomni-tiny", max_retries=0)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(conn: Any, kind: str, timeout: float = 30.0) -> list[Any]:
    """Events up to and including the first of `kind`."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        ev = await asyncio.wait_for(conn.recv(), max(0.01, deadline - time.monotonic()))
        seen.append(ev)
        if ev.type == kind:
            return seen


async def append_chunks(conn: Any, pcm: bytes, ms: int = 20) -> None:
    step = 48 * ms  # bytes per chunk at 24 kHz, 16-bit
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=b64(pcm[i : i + step]))


def check_response(
    events: list[Any], *, speak: bool = True, audio_prefix: str = "response.output_audio", steps: int = SHORT_STEPS
) -> tuple[bytes, str, Any]:
    """The invariants of one complete response: (its audio, its transcript, response.done)."""
    types = [e.type for e in events]
    done = events[-1]
    assert done.type == "response.done" and done.response.status == "completed", done
    rid = done.response.id
    assert types.index("response.created") < types.index("response.output_item.added")
    item = next(e for e in events if e.type == "response.output_item.added").item
    text_kind = f"{audio_prefix}_transcript" if speak else "response.output_text"
    deltas = [e for e in events if e.type == f"{text_kind}.delta"]
    audio_deltas = [e for e in events if e.type == f"{audio_prefix}.delta"]
    assert all(e.response_id == rid and e.item_id == item.id for e in deltas + audio_deltas)
    text = "".join(e.delta for e in deltas)
    final = next(e for e in events if e.type == f"{text_kind}.done")
    assert text and (final.transcript if speak else final.text) == text
    audio = b"".join(base64.b64decode(e.delta) for e in audio_deltas)
    usage = done.response.usage
    assert usage.output_tokens == usage.output_token_details.text_tokens + usage.output_token_details.audio_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens and usage.input_tokens > 0
    assert done.response.output[0].id == item.id
    if speak:
        assert f"{audio_prefix}.done" in types and len(audio) % 2 == 0
        # steps - 1 mel groups of 4 frames (the first step starts speech), 256 samples a frame at
        # 22.05 kHz, resampled to 24 kHz
        assert len(audio) // 2 == pytest.approx((steps - 1) * 4 * 256 * 24000 / 22050, abs=2)
        assert usage.output_token_details.audio_tokens == steps - 1
        assert np.abs(np.frombuffer(audio, "<i2")).max() > 100  # real sound, not zeros
    else:
        assert audio == b"" and usage.output_token_details.audio_tokens == 0
    return audio, text, done


# ---------------------------------------------------------------- the SDK as the client


def test_sdk_session_update_appended_audio_commit_and_response(server: ServerThread, question: bytes) -> None:
    async def go() -> None:
        async with sdk_connect(server) as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.audio.input.format.rate == 24000
            await conn.session.update(
                session={
                    "type": "realtime",
                    "instructions": "Answer briefly.",
                    "output_modalities": ["audio"],
                    "audio": {
                        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
                    },
                }
            )
            updated = await conn.recv()
            assert updated.type == "session.updated"
            assert updated.session.instructions == "Answer briefly." and updated.session.audio.output.voice == "marin"
            assert updated.session.audio.input.turn_detection is None
            await append_chunks(conn, question)  # 20 ms chunks
            await conn.input_audio_buffer.commit(event_id="c1")
            committed, *_ = events = await until(conn, "conversation.item.created")
            assert committed.type == "input_audio_buffer.committed"
            user = events[-1].item
            assert user.id == committed.item_id and user.role == "user" and user.content[0].type == "input_audio"
            await conn.response.create()
            events = await until(conn, "response.done")
            check_response(events)
            # the answer is now in the conversation, after the question
            added = next(e for e in events if e.type == "conversation.item.created")
            assert added.previous_item_id == user.id and added.item.role == "assistant"

    run(go())


def test_sdk_text_item_answered_in_speech(server: ServerThread) -> None:
    async def go() -> None:
        async with sdk_connect(server) as conn:
            await until(conn, "session.created")
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is two plus two?"}],
                }
            )
            created = (await until(conn, "conversation.item.created"))[-1]
            assert created.item.content[0].text == "What is two plus two?"
            await conn.response.create()
            _, text, done = check_response(await until(conn, "response.done"))
            # a text-only answer to the next question, with the first turn as context
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And three?"}]}
            )
            await conn.response.create(response={"output_modalities": ["text"]})
            events = await until(conn, "response.done")
            _, _, done2 = check_response(events, speak=False)
            ctx = done2.response.usage.input_token_details.text_tokens
            assert ctx == len("And three?") + len("What is two plus two?") + len(text)  # char tokenizer

    run(go())


def test_sdk_server_vad_turn_and_barge_in(slow_server: ServerThread, question: bytes) -> None:
    async def go() -> None:
        async with sdk_connect(slow_server) as conn:
            await until(conn, "session.created")
            await conn.session.update(
                session={
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {
                                "type": "server_vad",
                                "threshold": 0.5,
                                "silence_duration_ms": 400,
                                "prefix_padding_ms": 200,
                            }
                        }
                    },
                }
            )
            await until(conn, "session.updated")
            await append_chunks(conn, silence(0.5) + question + silence(0.8))
            events = await until(conn, "response.output_audio.delta")  # the VAD ended the turn and it answers
            types = [e.type for e in events]
            for kind in (
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "conversation.item.created",
                "response.created",
            ):
                assert kind in types, kind
            started, stopped = (
                next(e for e in events if e.type == t)
                for t in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped")
            )
            assert started.item_id == stopped.item_id
            assert 200 <= started.audio_start_ms <= 500 and stopped.audio_end_ms > started.audio_start_ms + 1000
            rid = next(e for e in events if e.type == "response.created").response.id
            await asyncio.sleep(0.3)  # the answer plays for a while ...
            await append_chunks(conn, question[: 24000 * 2])  # ... and the user talks over it
            t0 = time.perf_counter()
            events = await until(conn, "response.done", timeout=10)
            done = events[-1]
            assert time.perf_counter() - t0 < 3.0
            assert done.response.id == rid and done.response.status == "cancelled"
            assert done.response.status_details.reason == "turn_detected"
            assert done.response.usage.output_token_details.audio_tokens < LONG_STEPS // 2  # cut short
            # the answer's item is truncated at what had been played
            truncated = (await until(conn, "conversation.item.truncated"))[-1]
            assert truncated.item_id == done.response.output[0].id and 0 < truncated.audio_end_ms < 5000
            await conn.input_audio_buffer.clear()
            await until(conn, "input_audio_buffer.cleared")
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await until(conn, "session.updated")

    run(go())


def wait_idle(srv: ServerThread, timeout: float = 5.0) -> None:
    """Until the server has no session and no answer in flight: a closed session frees its
    slot (the one of a max_concurrent=1 server), or the next test would be refused as busy."""
    deadline = time.monotonic() + timeout
    while True:
        h = get_json(srv.url + "/health")
        loop = h["decode_loop"] or {"running": 0}
        if h["sessions"] == 0 and h["queue"]["running"] == 0 and loop["running"] == 0:
            return
        assert time.monotonic() < deadline, f"the server is still busy {timeout} s after its sessions closed: {h}"
        time.sleep(0.05)


def test_sdk_response_cancel_and_malformed_events(slow_server: ServerThread) -> None:
    wait_idle(slow_server)  # the barge-in test's session (same server) may still be closing

    async def go() -> None:
        async with sdk_connect(slow_server) as conn:
            await until(conn, "session.created")
            await conn.send({"type": "no.such.event", "event_id": "evt_bad"})
            err = (await until(conn, "error"))[-1]
            assert err.error.code == "unknown_event" and err.error.event_id == "evt_bad"
            await conn.input_audio_buffer.append(audio="%%% not base64 %%%", event_id="evt_b64")
            err = (await until(conn, "error"))[-1]
            assert err.error.code == "invalid_audio" and err.error.event_id == "evt_b64"
            # the session goes on
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go on."}]}
            )
            await conn.response.create()
            await until(conn, "response.output_audio.delta")
            await conn.response.create(event_id="evt_twice")  # one response at a time
            err = (await until(conn, "error"))[-1]
            assert err.error.code == "conversation_already_has_active_response" and err.error.event_id == "evt_twice"
            t0 = time.perf_counter()
            await conn.response.cancel()
            done = (await until(conn, "response.done"))[-1]
            assert time.perf_counter() - t0 < 2.0
            assert done.response.status == "cancelled" and done.response.status_details.reason == "client_cancelled"

    run(go())


def test_sdk_beta_client_gets_beta_event_names(server: ServerThread) -> None:
    async def go() -> None:
        async with sdk_connect(server, beta=True) as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.input_audio_format == "pcm16"
            await conn.session.update(
                session={
                    "modalities": ["text", "audio"],
                    "input_audio_format": "pcm16",
                    "output_audio_format": "pcm16",
                    "turn_detection": None,
                    "voice": "alloy",
                }
            )
            updated = (await until(conn, "session.updated"))[-1]
            assert updated.session.voice == "alloy" and updated.session.turn_detection is None
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}
            )
            await conn.response.create()
            events = await until(conn, "response.done")
            types = {e.type for e in events}
            assert not any(t.startswith("response.output_audio") for t in types)
            assert "conversation.item.added" not in types  # GA-only events are left out
            check_response(events, audio_prefix="response.audio")

    run(go())


# ---------------------------------------------------------------- the server's rules, with a plain client


def ws_connect(srv: ServerThread, key: str | None = KEY, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(
        srv.url.replace("http", "ws") + "/v1/realtime?model=x", additional_headers=headers, max_size=None, **kw
    )


class Raw:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, **event: Any) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self, timeout: float = 20.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, kind: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        seen = []
        while True:
            seen.append(await self.recv(timeout))
            if seen[-1]["type"] == kind:
                return seen

    async def alive(self) -> None:
        """The session still answers: retrieving an unknown item gets its error."""
        await self.send(type="conversation.item.retrieve", item_id="nope", event_id="ping")
        err = await self.recv(5)
        assert err["type"] == "error" and err["error"]["event_id"] == "ping"


def test_bad_input_gets_error_events_and_the_session_goes_on(server: ServerThread, caplog: Any) -> None:
    limit = 256 * 1024

    async def go() -> None:
        async with ws_connect(server) as ws:
            c = Raw(ws)
            assert (await c.recv())["type"] == "session.created"

            async def expect(code: str, raw: str | bytes, param: str | None = None) -> dict[str, Any]:
                await ws.send(raw)
                err = await c.recv()
                assert err["type"] == "error" and err["error"]["code"] == code, err
                assert err["error"]["message"] and err["event_id"].startswith("event_")
                if param is not None:
                    assert err["error"]["param"] == param
                if isinstance(raw, str) and raw.startswith("{") and "event_id" in raw:
                    assert err["error"]["event_id"] == json.loads(raw)["event_id"]
                await c.alive()
                return err

            def ev(**e: Any) -> str:
                return json.dumps({"event_id": "evt_1", **e})

            await expect("invalid_json", "{nope")
            await expect("invalid_event", "[1, 2]")
            await expect("unknown_event", ev(type="response.sing"), "type")
            await expect("unsupported_event", ev(type="output_audio_buffer.clear"))
            await expect("invalid_event", b"\x00\x01")  # binary frames are not part of the protocol
            await expect("invalid_audio", ev(type="input_audio_buffer.append", audio="***"), "audio")
            await expect("invalid_audio", ev(type="input_audio_buffer.append", audio=b64(b"\x00\x01\x02")))
            await expect("invalid_audio", ev(type="input_audio_buffer.append"))
            await expect("too_large", ev(type="input_audio_buffer.append", audio=b64(bytes(limit))))
            # formats other than 24 kHz PCM16
            await expect(
                "unsupported_audio_format",
                ev(
                    type="session.update",
                    session={"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
                ),
            )
            await expect(
                "unsupported_audio_format",
                ev(
                    type="session.update",
                    session={"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}},
                ),
            )
            await expect(
                "unsupported_audio_format", ev(type="session.update", session={"input_audio_format": "g711_ulaw"})
            )
            # VAD settings out of their bounds name the setting
            err = await expect(
                "invalid_value",
                ev(
                    type="session.update", session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 20}}
                ),
            )
            assert "100" in err["error"]["message"] and err["error"]["param"].endswith("silence_duration_ms")
            await expect(
                "invalid_value",
                ev(type="session.update", session={"turn_detection": {"type": "server_vad", "threshold": 1.5}}),
            )
            await expect(
                "unsupported_turn_detection",
                ev(type="session.update", session={"turn_detection": {"type": "semantic_vad"}}),
            )
            await expect("unknown_parameter", ev(type="session.update", session={"colour": "red"}))
            # unsupported features
            await expect(
                "unsupported_item",
                ev(type="conversation.item.create", item={"type": "function_call", "name": "f", "arguments": "{}"}),
            )
            await expect(
                "unsupported_content",
                ev(
                    type="conversation.item.create",
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "data:"}],
                    },
                ),
            )
            await expect(
                "text_too_long",
                ev(
                    type="conversation.item.create",
                    item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 501}]},
                ),
            )
            # events out of order
            await expect("input_audio_buffer_commit_empty", ev(type="input_audio_buffer.commit"))
            await expect("no_user_item", ev(type="response.create"))
            await expect("response_cancel_not_active", ev(type="response.cancel"))
            await expect(
                "item_not_found",
                ev(type="conversation.item.truncate", item_id="item_x", content_index=0, audio_end_ms=10),
            )
            await expect(
                "item_not_found",
                ev(
                    type="conversation.item.create",
                    previous_item_id="item_x",
                    item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                ),
            )
            # a silent question is refused by the engine: its response fails, and says why
            await c.send(type="session.update", session={"turn_detection": None})
            await c.until("session.updated")
            await c.send(type="input_audio_buffer.append", audio=b64(silence(0.5)))
            await c.send(type="input_audio_buffer.commit")
            await c.until("conversation.item.created")
            await c.send(type="response.create")
            done = (await c.until("response.done"))[-1]["response"]
            assert done["status"] == "failed" and done["status_details"]["error"]["code"] == "bad_audio"
            assert "silent" in done["status_details"]["error"]["message"]
            # too much audio in the buffer without a commit (max_turn_seconds = 6): the append is refused
            second = b64(pcm16(np.random.default_rng(0).uniform(-0.3, 0.3, 24000)))
            for _ in range(6):
                await c.send(type="input_audio_buffer.append", audio=second)
            await expect("turn_too_long", ev(type="input_audio_buffer.append", audio=second))
            # tools in a session.update are named in an error; the rest of it applies
            await c.send(
                type="session.update",
                event_id="evt_tools",
                session={"instructions": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": "auto"},
            )
            err, updated = await c.recv(), await c.recv()
            assert err["error"]["code"] == "unsupported_parameter" and "session.tools" in err["error"]["message"]
            assert err["error"]["event_id"] == "evt_tools"
            assert updated["type"] == "session.updated" and updated["session"]["instructions"] == "hi"
            # and after all that, a question is answered: the 6 s buffered still commit
            await c.send(type="input_audio_buffer.commit")
            await c.until("conversation.item.created")
            await c.send(type="response.create")
            done = (await c.until("response.done"))[-1]
            assert done["response"]["status"] == "completed"

    with caplog.at_level(logging.WARNING):
        run(go())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


def test_truncate_delete_and_retrieve(server: ServerThread) -> None:
    async def go() -> None:
        async with ws_connect(server) as ws:
            c = Raw(ws)
            await c.recv()
            await c.send(
                type="conversation.item.create",
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there."}]},
            )
            await c.send(type="response.create")
            events = await c.until("response.done")
            item = events[-1]["response"]["output"][0]
            transcript = item["content"][0]["transcript"]
            total_ms = round(
                1000
                * sum(
                    len(base64.b64decode(e["delta"])) // 2 for e in events if e["type"] == "response.output_audio.delta"
                )
                / 24000
            )
            await c.send(
                type="conversation.item.truncate",
                item_id=item["id"],
                content_index=0,
                audio_end_ms=total_ms + 100,
                event_id="late",
            )
            err = await c.recv()
            assert err["error"]["code"] == "invalid_value" and err["error"]["event_id"] == "late"
            await c.send(
                type="conversation.item.truncate", item_id=item["id"], content_index=0, audio_end_ms=total_ms // 2
            )
            truncated = await c.recv()
            assert truncated == {**truncated, "type": "conversation.item.truncated", "audio_end_ms": total_ms // 2}
            await c.send(type="conversation.item.retrieve", item_id=item["id"])
            got = (await c.recv())["item"]["content"][0]["transcript"]
            assert len(got) < len(transcript) and transcript.startswith(got)  # the words that were heard
            await c.send(type="conversation.item.delete", item_id=item["id"])
            deleted = await c.recv()
            assert deleted["type"] == "conversation.item.deleted" and deleted["item_id"] == item["id"]
            await c.send(type="conversation.item.retrieve", item_id=item["id"], event_id="gone")
            err = await c.recv()
            assert err["error"]["code"] == "item_not_found" and err["error"]["event_id"] == "gone"

    run(go())


def test_busy_origin_and_api_key(slow_server: ServerThread) -> None:
    async def go() -> None:
        with pytest.raises(InvalidStatus) as e:
            async with ws_connect(slow_server, key=None):
                pass
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            async with ws_connect(slow_server, key="wrong"):
                pass
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            async with ws_connect(slow_server, origin="http://evil.example"):
                pass
        assert e.value.response.status_code == 403
        # a browser offers the key as a subprotocol, beside the one it speaks
        async with connect(
            slow_server.url.replace("http", "ws") + "/v1/realtime",
            subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"],
        ) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(await ws.recv())["type"] == "session.created"
        # so does /ws, where the web page offers it as a subprotocol (opened as /#key=KEY)
        ws_url = slow_server.url.replace("http", "ws") + "/ws"
        with pytest.raises(InvalidStatus) as e:
            async with connect(ws_url):
                pass
        assert e.value.response.status_code == 401
        async with connect(ws_url, subprotocols=["flowomni", f"openai-insecure-api-key.{KEY}"]) as ws:
            assert ws.subprotocol == "flowomni"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
        # the HTTP endpoint wants the key too; /protocol documents both WebSocket protocols
        import urllib.error
        import urllib.request

        def post(headers: dict[str, str]) -> int:
            req = urllib.request.Request(
                slow_server.url + "/v1/respond?speak=false",
                data=b'{"text": "hi"}',
                headers={"Content-Type": "application/json", **headers},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert post({}) == 401 and post({"Authorization": f"Bearer {KEY}"}) == 200
        doc = urllib.request.urlopen(slow_server.url + "/protocol").read().decode()
        assert "/v1/realtime" in doc and "function calls" in doc and "end_of_turn" in doc
        # one answer at a time and no queue: a second session's response gets `busy`
        async with ws_connect(slow_server) as a, ws_connect(slow_server) as b:
            ca, cb = Raw(a), Raw(b)
            for c in (ca, cb):
                await c.recv()
                await c.send(
                    type="conversation.item.create",
                    item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Long one."}]},
                )
                await c.until("conversation.item.created")
            await ca.send(type="response.create")
            await ca.until("response.created")
            await cb.send(type="response.create", event_id="second")
            err = (await cb.until("error"))[-1]
            assert err["error"]["code"] == "busy" and err["error"]["event_id"] == "second"
            await cb.alive()
            await ca.send(type="response.cancel")
            await ca.until("response.done")

    run(go())


def test_example_client_prints_the_transcript_and_writes_the_answer(server: ServerThread, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import soundfile as sf

    out = tmp_path / "answer.wav"
    env = {**os.environ, "FLOWOMNI_API_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE.parent / "realtime_client.py"), str(EXAMPLE), "-o", str(out), "--url", server.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    transcript = proc.stdout.strip()
    assert len(transcript) >= SHORT_STEPS - 2  # one character a step (the random model never stops early)
    wav, sr = sf.read(out)
    assert sr == 24000 and len(wav) == pytest.approx((SHORT_STEPS - 1) * 4 * 256 * 24000 / 22050, abs=2)
    assert "answer.wav" in proc.stderr
