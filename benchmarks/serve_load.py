"""Load test of the voice-chat server: N concurrent WebSocket clients on loopback.

Each client opens a session and asks `--turns` spoken questions one after another (the
whole utterance as 40 ms PCM frames, then `end_of_turn`), reading the streamed answer.
First packet = from sending `end_of_turn` to receiving the first audio frame, as the client
sees it (so it includes queueing behind other clients). Busy replies are counted and the
turn is retried after the advertised delay; errors are counted by code. Everything is
bounded: `--clients` <= 64, `--turns` <= 50, and the whole run stops after `--max-seconds`.

    python benchmarks/serve_load.py --json                         # in-process server, defaults
    python benchmarks/serve_load.py --clients 1 4 --rounds 3 --json   # 1 vs 4 clients, interleaved, same server
    python benchmarks/serve_load.py --clients 8 --turns 2 --set max_concurrent=2 --set max_waiting=2
    python benchmarks/serve_load.py --url http://127.0.0.1:8000    # a running `flowomni serve`
    python benchmarks/serve_load.py --device cuda --config configs/paper_scale.yaml --clients 1 32 --json

The in-process server uses the shipped model when there is one, else (or with `--random`) a
tiny random model whose answers are forced to speak for `--max-steps` steps, or (`--config`)
a random model of that experiment config's shapes, speech forced (costs only).

Several `--clients` values run against the same server in turn, `--rounds` times, so load
drifts hit all alike; `first_packet_p50_over_one_client` compares each with the first value.
Streaming is judged as a player would: it starts with the first audio packet and plays in real
time; `underrun_ms` is how long it would have waited for the next packet (0: the answer
streamed faster than real time), `stream_rtf` the time from first to last packet over the
answer's audio seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.audio.io import load_audio  # noqa: E402
from flowomni.config import add_set_option  # noqa: E402

from common import describe, emit, environment, peak_rss_mb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FRAME_S = 0.04


def question_audio(paths: list[str], tmp: Path) -> list[np.ndarray]:
    """16 kHz questions: the given files, examples/*.wav, or one made with espeak-ng."""
    files = [Path(p) for p in paths] or sorted((REPO / "examples").glob("*.wav"))
    if not files:
        import subprocess

        files = [tmp / "q.wav"]
        subprocess.run(["espeak-ng", "-w", str(files[0]), "What is two plus three?"], check=True)
    return [load_audio(f, 16000) for f in files]


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def client(
    ws_url: str, questions: list[np.ndarray], turns: int, idx: int, out: dict[str, Any], turn_timeout: float
) -> None:
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "ptt"}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            out["errors"][ready.get("code", ready["type"])] += 1
            return
        out_rate = ready["output_sample_rate"]
        done_turns = 0
        while done_turns < turns:
            q = questions[(idx + done_turns) % len(questions)]
            pcm = (np.clip(q, -1, 1) * 32767).astype("<i2").tobytes()
            step = int(16000 * FRAME_S) * 2
            for i in range(0, len(pcm), step):
                await ws.send(pcm[i : i + step])
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "end_of_turn"}))
            first_audio = first_text = None
            audio_s, underrun, first_at = 0.0, 0.0, None
            while True:
                msg = await asyncio.wait_for(ws.recv(), turn_timeout)
                now = time.perf_counter()
                if isinstance(msg, bytes):
                    first_audio = first_audio if first_audio is not None else (now - t0) * 1000
                    first_at = first_at if first_at is not None else now
                    underrun += max(0.0, (now - first_at) - audio_s)  # the player ran dry before this packet
                    audio_s += len(msg) / 2 / out_rate
                    out["audio_bytes"] += len(msg)
                    continue
                m = json.loads(msg)
                if m["type"] == "text" and first_text is None:
                    first_text = (now - t0) * 1000
                elif m["type"] == "busy":
                    out["busy"] += 1
                    await asyncio.sleep(m.get("retry_after_ms", 1000) / 1000)
                    break  # ask the same question again
                elif m["type"] == "error":
                    out["errors"][m["code"]] += 1
                    done_turns += 1
                    break
                elif m["type"] == "done":
                    done_turns += 1
                    out["turns"] += 1
                    out["audio_seconds"] += m["audio_seconds"]
                    if first_audio is not None:
                        out["first_audio_ms"].append(first_audio)
                        out["server_first_audio_ms"].append(m["timings"]["first_audio_ms"])
                        out["underrun_ms"].append(underrun * 1000)
                        if audio_s:
                            out["stream_rtf"].append((now - first_at) / audio_s)
                    else:
                        out["no_audio"] += 1
                    if first_text is not None:
                        out["first_text_ms"].append(first_text)
                    out["total_ms"].append((now - t0) * 1000)
                    break


async def run_clients(
    ws_url: str, questions: list[np.ndarray], args: argparse.Namespace, clients: int
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "turns": 0,
        "busy": 0,
        "no_audio": 0,
        "audio_bytes": 0,
        "audio_seconds": 0.0,
        "errors": Counter(),
        "first_audio_ms": [],
        "server_first_audio_ms": [],
        "first_text_ms": [],
        "total_ms": [],
        "underrun_ms": [],
        "stream_rtf": [],
    }

    async def one(i: int) -> None:
        try:
            await client(ws_url, questions, args.turns, i, out, args.turn_timeout)
        except TimeoutError:
            out["errors"]["client_timeout"] += 1
        except Exception as e:  # noqa: BLE001 - a load test reports failures, it does not stop at them
            out["errors"][type(e).__name__] += 1

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=args.max_seconds)
    for t in pending:
        t.cancel()
    if pending:
        out["errors"]["run_time_limit"] += len(pending)
        await asyncio.wait(pending)
    out["wall_s"] = time.perf_counter() - t0
    return out


def build_server(args: argparse.Namespace, tmp: Path) -> tuple[Any, str]:
    from flowomni.config import apply_overrides, from_dict, to_dict
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine
    from flowomni.paths import SHIPPED_MODEL
    from flowomni.serving.app import create_app
    from flowomni.serving.config import ServerConfig
    from flowomni.serving.server import ServerThread

    cfg = from_dict(ServerConfig, apply_overrides(to_dict(ServerConfig()), args.overrides))
    checkpoint = args.checkpoint or (None if (SHIPPED_MODEL / "model.safetensors").is_file() else "")
    if args.config:
        from common import random_model

        engine = Engine(
            random_model(args.config, args.device),
            args.vocoder,
            gen=GenerationConfig(max_steps=args.max_steps or 120, seed=0),
        )
        model = f"random weights, {args.config}, speech forced for {engine.gen.max_steps} steps"
    elif args.random or checkpoint == "":
        from flowomni.serving.testing import make_tiny_checkpoint

        engine = Engine.load(
            make_tiny_checkpoint(tmp / "model"),
            device=args.device,
            gen=GenerationConfig(max_steps=args.max_steps or 60, seed=0),
        )
        model = f"random tiny model, speech forced for {engine.gen.max_steps} steps"
    else:
        gen = GenerationConfig(seed=0, **({"max_steps": args.max_steps} if args.max_steps else {}))
        engine = Engine.load(checkpoint, gen=gen, device=args.device, vocoder=args.vocoder)
        model = str(checkpoint or SHIPPED_MODEL.relative_to(REPO))
    srv = ServerThread(create_app(engine, cfg), cfg).start()
    return srv, model


def stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    d = describe(xs)
    return {"p50": round(d["median"], 1), "p95": round(d["p95"], 1), "max": round(max(xs), 1), "n": d["n"]}


def merge(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """One client count's rounds together."""
    total: dict[str, Any] = {"errors": Counter(), "wall_s": 0.0}
    for out in outs:
        for k, v in out.items():
            if k == "errors":
                total["errors"].update(v)
            elif isinstance(v, list):
                total.setdefault(k, []).extend(v)
            else:
                total[k] = total.get(k, 0) + v
    return total


def summarize(out: dict[str, Any], clients: int) -> dict[str, Any]:
    return {
        "clients": clients,
        "turns_done": out["turns"],
        "first_packet_ms": stats(out["first_audio_ms"]),
        "server_first_audio_ms": stats(out["server_first_audio_ms"]),
        "first_text_ms": stats(out["first_text_ms"]),
        "turn_total_ms": stats(out["total_ms"]),
        "stream_rtf": stats(out["stream_rtf"]),
        "underrun_ms": stats(out["underrun_ms"]),
        "turns_with_underrun": sum(u > 0 for u in out["underrun_ms"]),
        "throughput_turns_per_s": round(out["turns"] / out["wall_s"], 3),
        "audio_seconds_per_s": round(out["audio_seconds"] / out["wall_s"], 3),
        "wall_s": round(out["wall_s"], 2),
        "busy": out["busy"],
        "answers_without_audio": out["no_audio"],
        "errors": dict(out["errors"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--clients", type=int, nargs="+", default=[4], help="concurrent clients; several: run each in turn")
    p.add_argument("--rounds", type=int, default=1, help="times each --clients value runs (interleaved)")
    p.add_argument("--turns", type=int, default=3, help="questions per client")
    p.add_argument("--max-seconds", type=float, default=300, help="stop each run after this long")
    p.add_argument("--turn-timeout", type=float, default=120, help="give up on one answer after this long")
    p.add_argument("--url", default=None, help="a running server (http://host:port); default: start one here")
    p.add_argument("--checkpoint", default=None, help="in-process server's model (default: shipped model)")
    p.add_argument("--random", action="store_true", help="use a tiny random model (costs only)")
    p.add_argument("--config", default=None, help="random-weight model of this experiment config (costs only)")
    p.add_argument("--vocoder", default=None, help="override the model's vocoder")
    p.add_argument("--device", default="cpu", help="in-process server's device: cpu, cuda, ...")
    p.add_argument("--max-steps", type=int, default=None, help="generation cap per answer")
    add_set_option(p, "in-process server settings, e.g. --set max_concurrent=2")
    p.add_argument("--questions", nargs="*", default=[], help="question recordings (default examples/*.wav)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the in-process server")
    p.add_argument("--no-warmup", action="store_true", help="skip the unmeasured first turn (lazy init, compiling)")
    args = p.parse_args()
    if not (
        all(1 <= c <= 64 for c in args.clients)
        and 1 <= args.turns <= 50
        and 0 < args.max_seconds <= 3600
        and 1 <= args.rounds <= 20
    ):
        p.error(
            "keep it bounded: 1 <= --clients <= 64, 1 <= --turns <= 50, 0 < --max-seconds <= 3600, 1 <= --rounds <= 20"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    outs: dict[int, list[dict[str, Any]]] = {c: [] for c in args.clients}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        questions = question_audio(args.questions, tmp)
        srv = None
        if args.url:
            base, model = args.url.rstrip("/"), "remote server"
        else:
            srv, model = build_server(args, tmp)
            base = srv.url
        ws_url = base.replace("http", "ws", 1) + "/ws"
        try:
            if not args.no_warmup:
                warm = argparse.Namespace(**{**vars(args), "turns": 1})
                asyncio.run(run_clients(ws_url, questions, warm, max(args.clients)))
            before = get_json(base + "/health")
            for _ in range(args.rounds):
                for c in args.clients:
                    outs[c].append(asyncio.run(run_clients(ws_url, questions, args, c)))
            after = get_json(base + "/health")
            for _ in range(50):  # the last answers free their slots just after their `done` went out
                if after["queue"]["running"] == 0:
                    break
                time.sleep(0.1)
                after = get_json(base + "/health")
        finally:
            if srv is not None:
                srv.stop()

    runs = {c: summarize(merge(o), c) for c, o in outs.items()}
    first = runs[args.clients[0]]["first_packet_ms"]
    result: dict[str, Any] = {
        "benchmark": "serve_load",
        "model": model,
        "device": args.device if srv is not None else None,
        "turns_per_client": args.turns,
        "rounds": args.rounds,
        "server": {k: before.get(k) for k in ("max_sessions", "queue", "limits", "decode_loop")},
    }
    if len(runs) == 1:
        result.update(runs[args.clients[0]])
    else:
        result["runs"] = {str(c): r for c, r in runs.items()}
        result["first_packet_p50_over_first"] = {
            str(c): round(r["first_packet_ms"]["p50"] / first["p50"], 3) if r["first_packet_ms"] and first else None
            for c, r in runs.items()
        }
    result.update(
        {
            "server_rss_mb": {"before": before.get("rss_mb"), "after": after.get("rss_mb")},
            "server_queue_after": after["queue"],
            **({"peak_rss_mb_this_process": round(peak_rss_mb(), 1)} if srv is not None else {}),
            "environment": environment(),
        }
    )
    emit(result, args.json)


if __name__ == "__main__":
    main()
