"""Talk to a flowomni server through its OpenAI Realtime-compatible endpoint with the `openai` SDK.

Start a server (`flowomni serve`), then:

    python examples/realtime_client.py examples/question_2.wav -o answer.wav
    python examples/realtime_client.py --text "What is two plus three?" -o answer.wav
    python examples/realtime_client.py q.wav --url http://gpu-box:8000 --api-key KEY

The question (any WAV; it is sent as 24 kHz 16-bit PCM in 20 ms appends, then committed) is
answered in speech: the transcript is printed as it arrives and the audio written to `-o`.
The same code talks to any Realtime API server; only `--url` and the key change.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys

import numpy as np
import soundfile as sf
from openai import AsyncOpenAI
from scipy.signal import resample_poly

RATE = 24000  # the Realtime API's PCM rate, both ways


def pcm16_24k(path: str) -> bytes:
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = wav.mean(axis=1)
    if sr != RATE:
        g = np.gcd(sr, RATE)
        mono = resample_poly(mono, RATE // g, sr // g)
    return (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes()


async def ask(args: argparse.Namespace) -> int:
    ws_url = args.url.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/v1"
    client = AsyncOpenAI(
        api_key=args.api_key or os.environ.get("FLOWOMNI_API_KEY") or "none",
        base_url=args.url.rstrip("/") + "/v1",
        websocket_base_url=ws_url,
    )
    audio = bytearray()
    async with client.realtime.connect(model="flowomni", max_retries=0) as conn:
        # the client decides when the question ends: no server-side turn detection
        await conn.session.update(
            session={"type": "realtime", "output_modalities": ["audio"], "audio": {"input": {"turn_detection": None}}}
        )
        if args.text:
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": args.text}]}
            )
        else:
            pcm = pcm16_24k(args.question)
            step = 2 * RATE // 50  # 20 ms
            for i in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())
            await conn.input_audio_buffer.commit()
        await conn.response.create()
        async for event in conn:
            if event.type == "response.output_audio_transcript.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            elif event.type == "error":
                print(f"\nerror: {event.error.code}: {event.error.message}", file=sys.stderr)
                return 1
            elif event.type == "response.done":
                print()
                status, usage = event.response.status, event.response.usage
                if status != "completed":
                    print(f"response {status}", file=sys.stderr)
                    return 1
                break
    sf.write(args.output, np.frombuffer(bytes(audio), "<i2"), RATE, subtype="PCM_16")
    print(
        f"{len(audio) / 2 / RATE:.2f} s of answer audio -> {args.output} ({usage.output_tokens} output tokens)",
        file=sys.stderr,
    )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", nargs="?", help="a WAV file with the spoken question")
    p.add_argument("--text", help="ask in writing instead")
    p.add_argument("-o", "--output", default="answer.wav", help="where the spoken answer goes (24 kHz WAV)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    p.add_argument("--api-key", default=None, help="default: $FLOWOMNI_API_KEY")
    args = p.parse_args()
    if (args.question is None) == (args.text is None):
        p.error("give a question file or --text")
    return asyncio.run(ask(args))


if __name__ == "__main__":
    raise SystemExit(main())
