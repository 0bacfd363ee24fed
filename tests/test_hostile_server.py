"""The server against hostile clients (issue 23, findings 1-5): real uvicorn servers on
loopback, raw sockets where a well-behaved client library would not misbehave enough.

Each test reproduces what an outside audit got through: client VAD settings that stalled or
crashed the server, unbounded history, DNS rebinding and cross-site requests, slow clients
that were never dropped, and uploads decoded on the event loop before any limit applied.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from websockets.asyncio.client import connect

from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Engine
from flowomni.serving import cli
from flowomni.serving.app import create_app
from flowomni.serving.config import ServerConfig
from flowomni.serving.guards import HostOriginGuard
from flowomni.serving.limits import fit_history
from flowomni.serving.server import ServerThread
from flowomni.serving.testing import make_tiny_checkpoint

HEADER_S, BODY_S, MAX_CONNECTIONS = 0.5, 1.0, 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("hostile") / "model")


def start(engine: Any, **cfg_kw: Any) -> ServerThread:
    cfg = ServerConfig(**cfg_kw)
    return ServerThread(create_app(engine, cfg), cfg).start()


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=8, seed=0))
    srv = start(
        engine,
        max_prompt_positions=600,
        header_timeout_s=HEADER_S,
        body_timeout_s=BODY_S,
        max_connections=MAX_CONNECTIONS,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server(checkpoint: Path):
    """Answers long enough (~10 s) that a generation still running is unmistakable."""
    engine = Engine.load(checkpoint, gen=GenerationConfig(max_steps=100_000, seed=0))
    srv = start(engine, max_concurrent=1, max_waiting=1)
    yield srv
    srv.stop()


def request(
    srv: ServerThread,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(srv.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"raw": raw[:200]}


def timed_health(srv: ServerThread) -> float:
    t0 = time.perf_counter()
    status, _ = request(srv, "GET", "/health")
    assert status == 200
    return time.perf_counter() - t0


def raw_socket(srv: ServerThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def read_until_closed(s: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    t0, data = time.perf_counter(), b""
    s.settimeout(limit_s)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data, time.perf_counter() - t0
        data += chunk


def ws_messages(srv: ServerThread, frames: list[str | bytes], n_replies: int) -> list[dict[str, Any]]:
    """Send frames on one WebSocket and collect the JSON replies (then check it is still up)."""

    async def go() -> list[dict[str, Any]]:
        async with connect(srv.ws_url, max_size=None) as ws:
            out = []
            for f in frames:
                await ws.send(f)
            while len(out) < n_replies:
                msg = await asyncio.wait_for(ws.recv(), 20)
                if isinstance(msg, str):
                    out.append(json.loads(msg))
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            return out

    return asyncio.run(go())


# ---------------------------------------------------------------- 1: client VAD settings


@pytest.mark.parametrize(
    "raw, key, allowed",
    [
        ('{"type": "start", "mode": "vad", "vad": {"frame_ms": 0.0625}}', "vad.frame_ms", "5 to 100"),
        ('{"type": "start", "mode": "vad", "vad": {"preroll_ms": 1e12}}', "vad.preroll_ms", "0 to 2000"),
        ('{"type": "start", "mode": "vad", "vad": {"frame_ms": Infinity}}', "vad.frame_ms", "5 to 100"),
        ('{"type": "start", "mode": "vad", "vad": {"silence_ms": NaN}}', "vad.silence_ms", "50 to 10000"),
    ],
)
def test_vad_settings_out_of_range_are_refused_with_the_range(
    server: ServerThread, raw: str, key: str, allowed: str
) -> None:
    (err,) = ws_messages(server, [raw], 1)
    assert err["type"] == "error" and err["code"] == "bad_message", err
    assert key in err["message"] and allowed in err["message"], err


def test_costliest_allowed_vad_settings_keep_the_server_responsive(server: ServerThread) -> None:
    """The smallest frame and longest noise window at the top rate, fed a maximal message:
    once 29 s of event loop for a 96 KB message; /health must still answer promptly."""
    start = {"type": "start", "mode": "vad", "sample_rate": 48000, "vad": {"frame_ms": 5, "noise_window_ms": 10_000}}
    # 2 MB (21 s) of quiet noise: every frame is analysed, none starts a turn (an answer would share the CPU)
    noise = (np.random.default_rng(0).standard_normal(1_000_000) * 20).astype("<i2").tobytes()
    latencies: list[float] = []

    def poll() -> None:
        for _ in range(10):
            latencies.append(timed_health(server))
            time.sleep(0.05)

    async def go() -> None:
        async with connect(server.ws_url, max_size=None) as ws:
            await ws.send(json.dumps(start))
            assert json.loads(await ws.recv())["type"] == "ready"
            poller = threading.Thread(target=poll)
            poller.start()
            for _ in range(3):
                await ws.send(noise)
            await ws.send(json.dumps({"type": "ping"}))
            replies = []
            while not replies or replies[-1].get("type") != "pong":
                msg = await asyncio.wait_for(ws.recv(), 30)
                replies.append(json.loads(msg) if isinstance(msg, str) else {"audio": len(msg)})
            assert replies == [{"type": "pong"}], replies  # no speech was heard, nothing went wrong
            poller.join()

    asyncio.run(go())
    assert max(latencies) < 1.0, latencies


# ---------------------------------------------------------------- 2: history, prompt, abandoned answers


def test_history_and_prompt_length_are_limited(server: ServerThread) -> None:
    hist = [["q" * 8000, "a" * 8000]]  # the audit's 16 K characters
    t0 = time.perf_counter()
    status, out = request(
        server,
        "POST",
        "/v1/respond",
        json.dumps({"text": "hi", "history": hist}).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, out["error"]["code"]) == (413, "history_too_long") and "2000" in out["error"]["message"]
    assert time.perf_counter() - t0 < 5
    # within the history limit but over this server's prompt limit (600 positions): refused before the prefill
    status, out = request(
        server,
        "POST",
        "/v1/respond",
        json.dumps({"text": "hi", "history": [["q" * 500, "a" * 500]]}).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, out["error"]["code"]) == (413, "prompt_too_long") and "600" in out["error"]["message"]
    status, out = request(
        server,
        "POST",
        "/v1/respond",
        json.dumps({"text": "hi", "history": [["q", "a"]]}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and out["text"]


def test_a_session_keeps_only_the_history_that_fits() -> None:
    turns = [("q1", "a" * 900), ("q2", "b" * 900), ("q3", "c" * 900)]
    assert fit_history(turns, 2000) == turns[1:]
    assert fit_history(turns, 100) == [] and fit_history([], 10) == []


def test_answer_stops_when_the_http_client_goes_away(slow_server: ServerThread) -> None:
    body = json.dumps({"text": "What is two plus three?"}).encode()
    s = raw_socket(slow_server)
    s.sendall(
        b"POST /v1/respond HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    deadline = time.monotonic() + 20
    while request(slow_server, "GET", "/health")[1]["queue"]["running"] == 0:
        assert time.monotonic() < deadline, "the answer never started"
        time.sleep(0.05)
    time.sleep(0.3)
    s.close()  # the client hangs up mid-answer
    t0 = time.monotonic()
    while (queue := request(slow_server, "GET", "/health")[1]["queue"])["running"]:
        assert time.monotonic() - t0 < 5, f"the generation slot is still held: {queue}"
        time.sleep(0.05)


# ---------------------------------------------------------------- 3: Host and Origin


def handshake(srv: ServerThread, host: str, origin: str | None) -> int:
    """Status of a WebSocket handshake with these Host and Origin headers."""
    s = raw_socket(srv)
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = int(s.recv(1024).split(b" ")[1])
    s.close()
    return status


def wav_upload(seconds: float = 1.0, rate: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = np.repeat((0.3 * np.sin(2 * np.pi * 220 * t))[:, None], channels, axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt)
    return buf.getvalue()


def test_dns_rebinding_host_names_are_refused(server: ServerThread) -> None:
    evil = f"evil.example:{server.port}"
    assert handshake(server, evil, f"http://{evil}") == 403  # was 101
    status, out = request(
        server,
        "POST",
        "/v1/respond",
        json.dumps({"text": "hi"}).encode(),
        {"Host": evil, "Origin": f"http://{evil}", "Content-Type": "application/json"},
    )
    assert (status, out["error"]["code"]) == (403, "forbidden_host") and "--allow-host" in out["error"]["message"]
    assert request(server, "GET", "/health", headers={"Host": evil})[0] == 403
    # the names this machine is reached by still work, with or without their own page's origin
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}"):
        assert handshake(server, host, None) == 101
        assert handshake(server, host, f"http://{host}") == 101


def test_origins_are_compared_with_the_allowlist_not_the_host(server: ServerThread) -> None:
    own = f"127.0.0.1:{server.port}"
    assert handshake(server, own, "http://evil.example") == 403
    assert handshake(server, own, f"http://localhost:{server.port}") == 101  # another loopback name of this server
    assert handshake(server, own, "http://localhost:3000") == 403  # another local site (a dev server)
    assert handshake(server, own, "null") == 403  # sandboxed frames, file:// pages
    ok = {"Content-Type": "application/json"}
    assert request(server, "POST", "/v1/respond", b'{"text": "hi"}', {**ok, "Origin": "http://evil.example"})[0] == 403
    assert request(server, "POST", "/v1/respond", b'{"text": "hi"}', {**ok, "Origin": f"http://{own}"})[0] == 200


def test_cross_site_simple_request_types_are_refused(server: ServerThread) -> None:
    """A page can POST text/plain, forms and multipart anywhere without a preflight: a WAV sent
    as text/plain was answered; only JSON and audio types are accepted now."""
    wav = wav_upload()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        status, out = request(server, "POST", "/v1/respond", wav, {"Content-Type": ctype} if ctype else {})
        assert (status, out["error"]["code"]) == (415, "unsupported_media_type"), (ctype, out)
    assert request(server, "POST", "/v1/respond", wav, {"Content-Type": "audio/wav"})[0] == 200


def test_allow_host_adds_names_and_star_allows_any() -> None:
    import argparse

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    cfg = cli.server_config(p.parse_args(["--allow-host", "box.lan", "--allow-origin", "http://localhost:3000"]))
    assert cfg.allowed_hosts == ["box.lan"] and cfg.allowed_origins == ["http://localhost:3000"]
    guard = HostOriginGuard(lambda *a: None, cfg)
    assert {"localhost", "127.0.0.1", "::1", "box.lan"} <= guard.hosts and "evil.example" not in guard.hosts
    assert guard.origin_allowed("http://box.lan:8000", ("box.lan", 8000))
    assert guard.origin_allowed("http://localhost:3000", ("127.0.0.1", 8000))
    assert not guard.origin_allowed("http://box.lan:9000", ("box.lan", 8000))
    assert HostOriginGuard(lambda *a: None, ServerConfig(allowed_hosts=["*"])).any_host
    assert "10.0.0.5" in HostOriginGuard(lambda *a: None, ServerConfig(host="10.0.0.5")).hosts


# ---------------------------------------------------------------- 4: slow clients


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_slow_clients_are_dropped_without_tracebacks(server: ServerThread) -> None:
    handler = Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "flowomni.serving")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        silent = raw_socket(server)  # sends nothing at all
        data, took = read_until_closed(silent, 10)
        assert data.startswith(b"HTTP/1.1 408") and took < HEADER_S + 1.5, (data, took)

        drip = raw_socket(server)  # a header line every 0.2 s, never finishing
        drip.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.perf_counter()
        for i in range(50):
            if select.select([drip], [], [], 0.2)[0]:  # the server answered (408) or hung up
                break
            drip.sendall(f"X-Drip-{i}: x\r\n".encode())
        data, _ = read_until_closed(drip, 5)
        assert data.startswith(b"HTTP/1.1 408") and time.perf_counter() - t0 < HEADER_S + 1.5, data

        promise = raw_socket(server)  # 1 MB promised, 10 bytes sent
        promise.sendall(
            b"POST /v1/respond HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
            b"Content-Length: 1000000\r\n\r\n0123456789"
        )
        _, took = read_until_closed(promise, 10)
        assert took < BODY_S + 1.5, took
        time.sleep(0.2)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    tracebacks = [r for r in handler.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert timed_health(server) < 1.0


def test_connections_over_the_cap_are_refused_until_idle_ones_time_out(server: ServerThread) -> None:
    idle = [raw_socket(server) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.1)
    extra = raw_socket(server)
    data, _ = read_until_closed(extra, 5)
    assert data.startswith(b"HTTP/1.1 503"), data
    time.sleep(HEADER_S + 0.5)  # the idle ones are dropped by the header deadline
    assert timed_health(server) < 1.0
    for s in idle:
        s.close()


# ---------------------------------------------------------------- 5: uploads


@pytest.mark.parametrize(
    "rate, channels, fmt, words",
    [
        (384000, 8, "FLAC", "384000 Hz"),  # the audit's 878 KB FLAC that decoded to 362 MB
        (48000, 8, "FLAC", "8 channels"),
        (8000, 1, "WAV", "longer than 30 s"),
    ],
)
def test_uploads_are_checked_from_their_header(
    server: ServerThread, rate: int, channels: int, fmt: str, words: str
) -> None:
    seconds = 31.0 if words.startswith("longer") else 0.5
    status, out = request(
        server,
        "POST",
        "/v1/respond",
        wav_upload(seconds, rate, channels, fmt),
        {"Content-Type": f"audio/{fmt.lower()}"},
    )
    assert (status, out["error"]["code"]) == (400, "bad_audio") and words in out["error"]["message"], out


def test_uploads_are_decoded_off_the_event_loop(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    import flowomni.serving.app as app_module
    from flowomni.audio.io import AudioError

    def slow_decode(body: bytes, cfg: ServerConfig) -> Any:
        time.sleep(1.5)  # stands for a costly decode
        raise AudioError("not decoded")

    monkeypatch.setattr(app_module, "decode_upload", slow_decode)
    done: list[int] = []
    t = threading.Thread(
        target=lambda: done.append(
            request(server, "POST", "/v1/respond", wav_upload(), {"Content-Type": "audio/wav"})[0]
        )
    )
    t.start()
    time.sleep(0.3)
    assert timed_health(server) < 0.5  # was blocked for the whole decode
    t.join()
    assert done == [400]
