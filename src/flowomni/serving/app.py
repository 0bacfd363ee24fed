"""The FastAPI app: the voice-chat WebSocket, a plain HTTP endpoint, health, the web page.

`create_app(engine_or_factory, config)` builds it in-process (tests, benchmarks); a factory
is called once at startup, off the event loop, so a server can bind before a big model is
in memory. One engine serves everyone through one bounded `WorkQueue`; its decode loop steps
the running answers (up to `max_concurrent`) together, in one batch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import logging
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect
from starlette.websockets import WebSocketDisconnect, WebSocketState

from flowomni.audio.io import AudioError
from flowomni.config import SettingError
from flowomni.inference.decoder import PromptTooLong
from flowomni.inference.engine import Received
from flowomni.serving import auth, realtime_events
from flowomni.serving import protocol as P
from flowomni.serving.config import ServerConfig
from flowomni.serving.guards import HostOriginGuard
from flowomni.serving.limits import history_chars
from flowomni.serving.queue import Busy, WorkQueue
from flowomni.serving.realtime import RealtimeSession
from flowomni.serving.session import Session, rounded
from flowomni.serving.upload import decode_upload

log = logging.getLogger("flowomni.serving")
STATIC = Path(__file__).parent / "static"

AUDIO_TYPES = ("audio/wav", "audio/x-wav", "audio/flac", "audio/ogg", "application/octet-stream")
# (text/plain, form and multipart bodies are what another site's page can POST without asking:
# they are refused, so an upload must say what it is)
TOO_LONG = ("too_large", "text_too_long", "history_too_long")  # HTTP 413
RESPOND_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["text"],
                "properties": {
                    "text": {"type": "string", "description": "the question"},
                    "speak": {"type": "boolean", "default": True, "description": "also answer in speech"},
                    "history": {
                        "type": "array",
                        "description": "earlier [question, answer] text pairs",
                        "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                    },
                },
            }
        },
        **{t: {"schema": {"type": "string", "format": "binary"}} for t in AUDIO_TYPES},
    },
}


def rss_mb() -> float | None:
    """This process's resident memory now (Linux), for /health and load tests."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def http_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def parse_json_question(body: bytes, cfg: ServerConfig) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise P.ProtocolError("bad_json", f"body is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
        raise P.ProtocolError("bad_message", 'body must be a JSON object with a non-empty string "text"')
    unknown = set(data) - {"text", "speak", "history"}
    if unknown:
        raise P.ProtocolError("bad_message", f"unknown field(s) {sorted(unknown)}")
    if len(data["text"]) > cfg.max_text_chars:
        raise P.ProtocolError(
            "text_too_long", f"question of {len(data['text'])} characters is over the limit of {cfg.max_text_chars}"
        )
    if not isinstance(data.get("speak", True), bool):
        raise P.ProtocolError("bad_message", '"speak" must be true or false')
    hist = data.get("history") or []
    if not (
        isinstance(hist, list)
        and all(isinstance(t, list) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in hist)
    ):
        raise P.ProtocolError("bad_message", '"history" must be a list of [question, answer] string pairs')
    data["history"] = [tuple(t) for t in hist[-cfg.history_turns :]] if cfg.history_turns else []
    if (n := history_chars(data["history"])) > cfg.max_history_chars:
        raise P.ProtocolError(
            "history_too_long",
            f"history of {n} characters (the last {cfg.history_turns} turns) "
            f"is over the limit of {cfg.max_history_chars}",
        )
    return data


def content_kind(request: Request) -> str:
    """ "json" or "audio" from the Content-Type; anything else is refused (415)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return "json"
    if ctype.startswith("audio/") or ctype == "application/octet-stream":
        return "audio"
    raise P.ProtocolError(
        "unsupported_media_type",
        f"Content-Type {ctype or '(none)'!r} is not accepted: send "
        "application/json, or audio with its type (e.g. audio/wav)",
    )


class ClientGone(Exception):
    """The HTTP client closed its connection before its request was answered."""


async def until_disconnected(request: Request) -> None:
    """Returns once the client has gone (after the body, the only message left to receive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise P.ProtocolError("too_large", f"body of {declared} bytes is over the limit of {limit}")
    chunks, n = [], 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise P.ProtocolError("too_large", f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # the client gave up mid-body (or missed body_timeout_s): nobody to answer
        raise ClientGone() from None
    return b"".join(chunks)


def create_app(engine_or_factory: Any, config: ServerConfig | None = None) -> FastAPI:
    """The server app around an `Engine` (or a no-argument callable that loads one)."""
    cfg = config or ServerConfig()
    cfg.check()
    queue = WorkQueue(cfg.max_concurrent, cfg.max_waiting)
    state: dict[str, Any] = {"engine": None, "sessions": 0, "started": time.time()}
    if hasattr(engine_or_factory, "respond"):
        state["engine"] = engine_or_factory

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state["engine"] is None:
            factory: Callable[[], Any] = engine_or_factory
            state["engine"] = await asyncio.to_thread(factory)
        engine = state["engine"]
        if getattr(engine, "static", False):  # one decode loop steps every running answer together
            await asyncio.to_thread(engine.start_loop, cfg.max_concurrent)
        try:  # the first user's answer starts as fast as the next ones
            await asyncio.to_thread(engine.warm_up)
        except Exception as e:  # noqa: BLE001 - a setup fault: each answer will report it; the server stays up
            log.warning("warm-up answer failed (%s: %s); answers will fail the same way", type(e).__name__, e)
        yield
        queue.shutdown()

    app = FastAPI(
        title="flowomni",
        version="0.1.0",
        lifespan=lifespan,
        description="Flow-Omni voice chat: WebSocket protocol at /ws and an OpenAI Realtime-compatible "
        "WebSocket at /v1/realtime (both documented at /protocol), one-shot answers at "
        "POST /v1/respond, the web page at /.",
    )
    app.state.cfg, app.state.queue, app.state.server = cfg, queue, state
    app.add_middleware(HostOriginGuard, cfg=cfg)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/protocol", response_class=PlainTextResponse, summary="The WebSocket protocols, as text")
    async def protocol_doc() -> str:
        return f"{P.__doc__}\n\n{realtime_events.__doc__}"

    @app.get("/health", summary="Liveness, load and limits")
    async def health() -> dict[str, Any]:
        engine = state["engine"]
        loop = getattr(engine, "loop", None)
        return {
            "status": "ok" if engine is not None else "loading",
            "sessions": state["sessions"],
            "max_sessions": cfg.max_sessions,
            "queue": queue.stats(),
            "decode_loop": loop.stats() if loop is not None else None,
            "output_sample_rate": engine.vocoder.sample_rate if engine is not None else None,
            "limits": cfg.limits(),
            "rss_mb": rss_mb(),
            "uptime_s": round(time.time() - state["started"], 1),
        }

    @app.post(
        "/v1/respond",
        summary="Answer one question (audio file or JSON text)",
        openapi_extra={"requestBody": RESPOND_BODY},
        responses={
            200: {
                "description": "JSON answer (format=json) or the spoken answer as WAV "
                "(format=wav; text in the X-Flowomni-Text header, URL-encoded)",
                "content": {"audio/wav": {}},
            },
            400: {"description": "bad audio or request"},
            413: {"description": "over a limit"},
            403: {"description": "Host or Origin not allowed"},
            415: {"description": "Content-Type neither JSON nor audio"},
            500: {"description": "the server failed, or cannot answer as it is set up (its fault)"},
            503: {"description": "busy: too many answers running and waiting"},
        },
    )
    async def respond(request: Request, format: str = "json", speak: bool | None = None) -> Response:
        t_end = time.perf_counter()
        if not auth.authorized(request.headers, cfg.api_key):
            return http_error(401, "invalid_api_key", "missing or wrong API key: send Authorization: Bearer <key>")
        if format not in ("json", "wav"):
            return http_error(400, "bad_message", f"format must be json or wav, got {format!r}")
        try:
            kind = content_kind(request)
            body = await read_body(request, cfg.max_message_bytes)
            t_end = time.perf_counter()
            if kind == "json":
                q = parse_json_question(body, cfg)
                kwargs = {
                    "text": q["text"].strip(),
                    "speak": q.get("speak", True) if speak is None else speak,
                    "history": q["history"] or None,
                }
                audio = None
            else:
                if not body:
                    raise AudioError("the request body is empty: send an audio file or JSON")
                audio, sr = await asyncio.to_thread(decode_upload, body, cfg)
                kwargs = {"sample_rate": sr, "speak": True if speak is None else speak}
        except P.ProtocolError as e:
            status = 415 if e.code == "unsupported_media_type" else 413 if e.code in TOO_LONG else 400
            return http_error(status, e.code, e.message)
        except AudioError as e:
            return http_error(400, "bad_audio", str(e))
        except ClientGone:
            log.info("HTTP client went away during its upload")
            return Response(status_code=400)
        engine = state["engine"]
        kwargs["gen"] = dataclasses.replace(engine.gen, max_prompt_positions=cfg.max_prompt_positions)
        try:
            ticket = queue.admit()
        except Busy as e:
            return http_error(503, "busy", str(e), {"Retry-After": "1"})

        def ms() -> float:
            return (time.perf_counter() - t_end) * 1000

        got = Received(clock=ms)

        async def generate() -> None:
            async with contextlib.aclosing(
                queue.stream(
                    ticket,
                    lambda stop: engine.submit(audio, should_stop=stop.is_set, **kwargs),
                    lambda w: got.timings.update(queue_ms=w * 1000),
                )
            ) as events:
                async for ev in events:
                    got.add(ev)

        try:
            await unless_disconnected(request, generate())
        except ClientGone:  # the worker was told to stop: the slot is free within one decoding step
            log.info("HTTP client went away: its answer was stopped")
            return Response(status_code=400)
        except PromptTooLong as e:
            return http_error(413, "prompt_too_long", str(e))
        except AudioError as e:
            return http_error(400, "bad_audio", str(e))
        except SettingError as e:  # the server's setup, not the request: its error, not the client's
            log.error("HTTP answer: %s", e)
            return http_error(500, "internal", f"the server cannot answer as it is set up: {e}")
        except ValueError as e:
            return http_error(400, "bad_message", str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("HTTP answer failed")
            return http_error(500, "internal", f"the answer failed ({type(e).__name__}); see the server log")
        finally:
            ticket.close()
        done = got.final()
        sr = engine.vocoder.sample_rate
        pcm = got.audio() if got.chunks else np.zeros(0, np.float32)
        timings = rounded(
            {**got.timings, "total_ms": ms(), "audio_seconds": done.audio_seconds, "rtf": done.timings.get("rtf", 0.0)}
        )
        if format == "wav":
            return Response(
                wav_bytes(pcm, sr),
                media_type="audio/wav",
                headers={"X-Flowomni-Text": urllib.parse.quote(done.text), "X-Flowomni-Timings": json.dumps(timings)},
            )
        return JSONResponse(
            {
                "text": done.text,
                "audio_seconds": round(done.audio_seconds, 3),
                "sample_rate": sr,
                "timings": {**timings, "engine": rounded(done.timings)},
                "audio_wav_base64": base64.b64encode(wav_bytes(pcm, sr)).decode() if got.chunks else None,
            }
        )

    @app.websocket("/ws")
    async def chat(ws: WebSocket) -> None:  # (Host and Origin were checked by HostOriginGuard)
        await serve_socket(ws, cfg, state, lambda: Session(state["engine"], queue, cfg, ws.send_json, ws.send_bytes))

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket, model: str | None = None) -> None:
        beta = "realtime=v1" in (ws.headers.get("openai-beta") or "")  # what the SDK's beta client sends
        await serve_socket(
            ws, cfg, state, lambda: RealtimeSession(state["engine"], queue, cfg, ws.send_json, beta=beta, model=model)
        )

    return app


async def serve_socket(
    ws: WebSocket, cfg: ServerConfig, state: dict[str, Any], make_session: Callable[[], Session]
) -> None:
    """Admit one WebSocket (the API key, the session limit; Host and Origin were checked by
    HostOriginGuard), then serve its session until either side ends it."""
    if not auth.authorized(ws.headers, cfg.api_key):
        await ws.send_denial_response(
            http_error(401, "invalid_api_key", "missing or wrong API key: send Authorization: Bearer <key>")
        )
        return
    await ws.accept(subprotocol=auth.chosen_protocol(ws.headers))
    session = make_session()
    if state["sessions"] >= cfg.max_sessions:
        await session.refuse_busy(f"server busy: all {cfg.max_sessions} sessions are in use")
        await ws.close(code=1013)
        return
    state["sessions"] += 1
    try:
        await session.open()
        await serve_session(ws, session, cfg)
    except WebSocketDisconnect:
        pass
    finally:
        state["sessions"] -= 1
        await session.close()
        if ws.client_state == WebSocketState.CONNECTED and ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=session.close_code or 1000)


async def unless_disconnected(request: Request, work: Any) -> None:
    """Run `work` (a coroutine) unless the client goes first: then cancel it, raise ClientGone."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        gone = not task.done()
        if gone:
            task.cancel()
            await asyncio.wait({task})
    if gone:
        raise ClientGone()
    task.result()


async def serve_session(ws: WebSocket, session: Session, cfg: ServerConfig) -> None:
    """Feed one socket's messages to its session until either side ends it."""
    while session.close_code is None:
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=cfg.idle_timeout_s)
        except TimeoutError:
            if session.answer is not None:  # quiet while listening to an answer is not idle
                continue
            await session.error("idle_timeout", f"no message for {cfg.idle_timeout_s:g} s: closing")
            session.close_code = 1000
            break
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        if msg.get("text") is not None:
            await session.handle_text(msg["text"])
        elif msg.get("bytes") is not None:
            await session.handle_bytes(msg["bytes"])
