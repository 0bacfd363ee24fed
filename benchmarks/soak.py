"""Bounded soak of the voice-chat server: mixed valid and invalid requests on loopback.

Clients loop until `--minutes` have passed, each round picking one request kind:
valid spoken turn (WebSocket), valid written question (WebSocket), valid HTTP request,
and the invalid ones a real deployment sees: malformed JSON, unknown message types, audio
before `start`, oversize messages, odd-length PCM, an empty turn, random bytes posted as
audio, and hostile ones (issue 23): VAD settings out of range, an overlong history, a body of
a type any web page can post (text/plain), a foreign Host name (DNS rebinding). It reports
requests by kind, errors by code, server memory over time (RSS from
/health), and the check that matters: every valid request got a full answer (a `done`
that was not interrupted, with text or audio) and every invalid one got an error reply
while its session stayed usable (a ping after it is answered).

    python benchmarks/soak.py --json                  # 10 minutes, 3 clients, in-process server
    python benchmarks/soak.py --minutes 1 --random    # quick, random tiny model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import build_server, get_json, question_audio  # noqa: E402

from flowomni.config import add_set_option  # noqa: E402

from common import emit, environment  # noqa: E402

VALID = ("spoken_turn", "text_turn", "http_text")
INVALID = (
    "bad_json",
    "unknown_type",
    "audio_before_start",
    "oversize",
    "odd_pcm",
    "empty_turn",
    "http_garbage",
    "bad_vad",
    "http_long_history",
    "http_text_plain",
    "http_foreign_host",
)
# invalid HTTP requests: kind -> (body, headers, the status that refuses it)
HTTP_INVALID = {
    "http_long_history": (
        json.dumps({"text": "hi", "history": [["q" * 8000, "a" * 8000]]}).encode(),
        {"Content-Type": "application/json"},
        413,
    ),
    "http_text_plain": (b"RIFF\x24\x00\x00\x00WAVEfmt ", {"Content-Type": "text/plain"}, 415),
    "http_foreign_host": (
        json.dumps({"text": "hi"}).encode(),
        {"Content-Type": "application/json", "Host": "evil.example", "Origin": "http://evil.example"},
        403,
    ),
}


class Tally:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.failures: list[str] = []

    def fail(self, kind: str, why: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(f"{kind}: {why}")


async def recv_until(ws: Any, types: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Next JSON message of one of `types` (audio frames and other messages are skipped)."""
    deadline = time.perf_counter() + timeout
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.perf_counter()))
        if isinstance(msg, bytes):
            continue
        m = json.loads(msg)
        if m["type"] in types:
            return m


async def answered(ws: Any, kind: str, tally: Tally, timeout: float) -> None:
    m = await recv_until(ws, ("done", "error", "busy"), timeout)
    if m["type"] == "busy":
        tally.errors["busy"] += 1
        return
    if m["type"] == "error":
        tally.errors[m["code"]] += 1
        tally.fail(kind, f"error {m['code']}: {m['message']}")
        return
    if m["interrupted"] or not (m["text"] or m["audio_seconds"] > 0):
        tally.fail(kind, f"incomplete answer {m}")
        return
    tally.ok[kind] += 1


async def expect_error(ws: Any, kind: str, tally: Tally, timeout: float) -> None:
    m = await recv_until(ws, ("error",), timeout)
    tally.errors[m["code"]] += 1
    await ws.send(json.dumps({"type": "ping"}))
    await recv_until(ws, ("pong",), timeout)  # the session is still alive
    tally.ok[kind] += 1


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def one_round(kind: str, base: str, pcm: bytes, limits: dict[str, Any], tally: Tally, timeout: float) -> None:
    from websockets.asyncio.client import connect

    tally.sent[kind] += 1
    if kind.startswith("http"):
        body, headers, refusal = HTTP_INVALID.get(kind) or (
            (json.dumps({"text": "What is two plus three?"}).encode(), {"Content-Type": "application/json"}, 0)
            if kind == "http_text"
            else (random.randbytes(random.randint(1, 5000)), {"Content-Type": "audio/wav"}, 400)
        )
        status, reply = await asyncio.to_thread(http_post, base + "/v1/respond", body, headers)
        if kind == "http_text":
            if status == 200 and (reply.get("text") or reply.get("audio_seconds", 0) > 0):
                tally.ok[kind] += 1
            elif status == 503:
                tally.errors["busy"] += 1
            else:
                tally.fail(kind, f"HTTP {status} {reply}")
        else:
            tally.errors[f"http_{status}"] += 1
            if status == refusal:
                tally.ok[kind] += 1
            else:
                tally.fail(kind, f"got HTTP {status} {reply}, not {refusal}")
        return
    async with connect(base.replace("http", "ws", 1) + "/ws", max_size=None) as ws:
        if kind == "audio_before_start":
            await ws.send(pcm[:3200])
            return await expect_error(ws, kind, tally, timeout)
        if kind == "bad_vad":
            await ws.send(
                random.choice(
                    [
                        '{"type": "start", "mode": "vad", "vad": {"frame_ms": 0.0625}}',
                        '{"type": "start", "mode": "vad", "vad": {"preroll_ms": 1e12}}',
                        '{"type": "start", "mode": "vad", "vad": {"frame_ms": Infinity}}',
                    ]
                )
            )
            return await expect_error(ws, kind, tally, timeout)
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "ptt"}))
        await recv_until(ws, ("ready",), timeout)
        if kind == "spoken_turn":
            await ws.send(pcm)
            await ws.send(json.dumps({"type": "end_of_turn"}))
            await answered(ws, kind, tally, timeout)
        elif kind == "text_turn":
            await ws.send(json.dumps({"type": "text", "text": "What comes after Monday?"}))
            await answered(ws, kind, tally, timeout)
        elif kind == "bad_json":
            await ws.send("{not json" + "x" * random.randint(0, 100))
            await expect_error(ws, kind, tally, timeout)
        elif kind == "unknown_type":
            await ws.send(json.dumps({"type": random.choice(["hello", "", 7, None, "START"])}))
            await expect_error(ws, kind, tally, timeout)
        elif kind == "oversize":
            await ws.send(b"\x00" * (int(limits["max_message_bytes"]) + 2))
            await expect_error(ws, kind, tally, timeout)
        elif kind == "odd_pcm":
            await ws.send(pcm[:3201])
            await expect_error(ws, kind, tally, timeout)
        elif kind == "empty_turn":
            await ws.send(json.dumps({"type": "end_of_turn"}))
            await expect_error(ws, kind, tally, timeout)


async def soak(base: str, pcm: bytes, args: argparse.Namespace) -> dict[str, Any]:
    limits = get_json(base + "/health").get("limits") or {"max_message_bytes": 2 * 1024 * 1024}
    tally = Tally()
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    stop_at = t0 + args.minutes * 60

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < stop_at:
            kind = rng.choice(VALID) if rng.random() < args.valid_share else rng.choice(INVALID)
            try:
                await one_round(kind, base, pcm, limits, tally, args.turn_timeout)
            except Exception as e:  # noqa: BLE001 - a soak counts failures instead of stopping
                tally.fail(kind, f"{type(e).__name__}: {e}")

    async def sample_memory() -> None:
        while time.perf_counter() < stop_at:
            h = await asyncio.to_thread(get_json, base + "/health")
            rss.append((time.perf_counter() - t0, float(h.get("rss_mb", 0.0))))
            await asyncio.sleep(5)

    await asyncio.gather(sample_memory(), *(client(i) for i in range(args.clients)))
    valid_sent = sum(tally.sent[k] for k in VALID)
    valid_ok = sum(tally.ok[k] for k in VALID)
    half = [m for t, m in rss if t >= (rss[-1][0] / 2)] if rss else []
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "requests": sum(tally.sent.values()),
        "sent_by_kind": dict(tally.sent),
        "handled_by_kind": dict(tally.ok),
        "errors_by_code": dict(tally.errors),
        "valid_requests": valid_sent,
        "valid_full_answers": valid_ok,
        "busy_replies": tally.errors.get("busy", 0),
        "every_valid_request_answered": valid_ok + tally.errors.get("busy", 0) == valid_sent,
        "failures": tally.failures,
        "rss_mb": {
            "first": rss[0][1] if rss else None,
            "last": rss[-1][1] if rss else None,
            "max": max(m for _, m in rss) if rss else None,
            "growth_second_half": (max(half) - min(half)) if half else None,
            "samples": len(rss),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--valid-share", type=float, default=0.5)
    p.add_argument("--turn-timeout", type=float, default=120)
    p.add_argument("--url", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--random", action="store_true", help="tiny random model (costs only)")
    p.add_argument("--config", default=None, help="random-weight model of this experiment config (costs only)")
    p.add_argument("--vocoder", default=None, help="override the model's vocoder")
    p.add_argument("--device", default="cpu", help="in-process server's device: cpu, cuda, ...")
    p.add_argument("--max-steps", type=int, default=None)
    add_set_option(p, "in-process server settings, e.g. --set max_concurrent=2")
    p.add_argument("--questions", nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not (0 < args.minutes <= 120 and 1 <= args.clients <= 32):
        p.error("keep it bounded: 0 < --minutes <= 120, 1 <= --clients <= 32")
    random.seed(args.seed)
    with tempfile.TemporaryDirectory() as tmpdir:
        q = question_audio(args.questions, Path(tmpdir))[0]
        pcm = (np.clip(q, -1, 1) * 32767).astype("<i2").tobytes()
        srv = None
        if args.url:
            base, model = args.url.rstrip("/"), "remote server"
        else:
            srv, model = build_server(args, Path(tmpdir))
            base = srv.url
        try:
            result = asyncio.run(soak(base, pcm, args))
        finally:
            if srv is not None:
                srv.stop()
    emit({"model": model, **result, "env": environment()}, args.json)


if __name__ == "__main__":
    main()
