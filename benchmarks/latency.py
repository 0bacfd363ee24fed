"""First-packet latency, per-step costs and real-time factor of streaming speech answers.

    python benchmarks/latency.py --json                      # the shipped model
    python benchmarks/latency.py --checkpoint runs/x/step_N  # any checkpoint
    python benchmarks/latency.py --config configs/tiny.yaml  # random weights, speech forced (costs only)
    python benchmarks/latency.py --config configs/paper_scale.yaml --device cuda --streams 32 --json

First packet = from the end of the question (the call) to the first audio samples ready,
covering features, encoder, prefill, decode steps, flow head and vocoder. In the same run,
the bare backbone's step over the same static KV cache (compiled as the speech step is, on a
GPU) is timed interleaved with the whole speech step (text head + state head + flow head +
feedback + backbone), for `speech_step / backbone_step`. `--streams N` also decodes N answers
at once through the engine's decode loop (as the server does) and reports each one's RTF.
Targets (issue 5, 2 CPU cores): ratio <= 1.3, first packet <= 150 ms, RTF <= 0.2; (issue 21,
paper-scale shapes on one H200): ratio <= 1.3, first packet <= 50 ms, RTF <= 0.07, 32 streams
each at RTF <= 0.5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.inference.decoder import GenerationConfig, Prompt  # noqa: E402
from flowomni.inference.engine import AudioChunk, Done, Engine  # noqa: E402
from flowomni.inference.precision import DECODE_DTYPES, streaming_dtype  # noqa: E402
from flowomni.model.flow_head import FLOW_METHODS  # noqa: E402
from flowomni.model.layout import Task  # noqa: E402

from common import describe, emit, environment, peak_rss_mb, random_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build_engine(args: argparse.Namespace) -> tuple[Engine, str]:
    gen = GenerationConfig(
        max_steps=args.max_steps,
        seed=0,
        flow_steps=args.flow_steps,
        flow_method=args.flow_method,
        decode_dtype=args.decode_dtype,
        guided_text=not args.unguided,
    )
    if args.config:
        return Engine(random_model(args.config, args.device), args.vocoder, gen=gen), f"random weights, {args.config}"
    engine = Engine.load(args.checkpoint, vocoder=args.vocoder, gen=gen, device=args.device)
    return engine, str(args.checkpoint or "shipped model")


def questions(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in args.questions] or sorted((REPO / "examples").glob("*.wav"))
    if not paths:
        raise SystemExit("no question recordings: pass --questions or create examples/*.wav")
    return paths


def group_ms(engine: Engine) -> float:
    """Milliseconds of audio in one mel group."""
    mel = engine.model.cfg.output_mel
    return engine.model.cfg.group * mel.hop_length / mel.sample_rate * 1000


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved_steps(engine: Engine, question: Path, n: int) -> tuple[list[float], list[float]]:
    """Up to n (speech step, bare backbone step) times in seconds, interleaved at the same
    context length, for the steps of one answer that drew a mel group."""
    dec = engine.decoder(engine.gen, 1)
    with dec.lock:
        bare = dec.bare_step()
        (ans,) = dec.join([Prompt(Task.S2S, audio_mel=engine.question_mel(question))])
        d = dec.state.h.shape[-1]
        e = torch.randn(len(dec.answers), d, device=dec.device).to(dec.state.h.dtype)  # a row per slot
        speech, backbone = [], []
        try:
            while not ans.done and len(speech) < n:
                sync()
                t0 = time.perf_counter()
                outs = dec.step()
                sync()
                t1 = time.perf_counter()
                if ans.done:
                    break
                bare(e)
                sync()
                t2 = time.perf_counter()
                out = outs.get(ans.id)
                if out is not None and out.group is not None:  # only steps that drew a mel group count
                    speech.append(t1 - t0)
                    backbone.append(t2 - t1)
        finally:
            dec.leave(ans)
            dec.step()  # lag mode: collect the step still in flight
    return speech, backbone


def step_ratio(engine: Engine, questions: list[Path], n: int, repeats: int) -> dict[str, float]:
    """Median speech step over median bare backbone step, pooled over every question x repeat
    (one short answer gives too few steps for a stable median on a shared machine)."""
    speech, bare = [], []
    for _ in range(repeats):
        for q in questions:
            s, b = interleaved_steps(engine, q, n)
            speech += s
            bare += b
    if not speech:
        raise SystemExit("the model never spoke; cannot time speech steps")
    s, b = statistics.median(speech), statistics.median(bare)
    return {
        "speech_step_ms": s * 1000,
        "backbone_step_ms": b * 1000,
        "speech_step_over_backbone_step": s / b,
        "steps_timed": len(speech),
    }


def concurrent_streams(engine: Engine, questions: list[Path], n: int) -> dict[str, object]:
    """n answers at once through the engine's decode loop (one batch, as the server runs them):
    each one's first packet and RTF, and how long a player starting at its first packet would
    have waited for audio (0: it streamed faster than real time)."""
    engine.start_loop(n)
    results: list[dict[str, float]] = [{} for _ in range(n)]
    ended = threading.Semaphore(0)

    def sink_for(i: int):  # noqa: ANN202 - called in the decode loop's thread: never block there
        r, state = results[i], {"audio_s": 0.0, "first": None}

        def sink(item: object) -> None:
            now = time.perf_counter()
            if isinstance(item, AudioChunk):
                if state["first"] is None:
                    state["first"] = now
                r["underrun_ms"] = (
                    r.get("underrun_ms", 0.0) + max(0.0, (now - state["first"]) - state["audio_s"]) * 1000
                )
                state["audio_s"] += len(item.pcm) / item.sample_rate
            elif isinstance(item, Done):
                r.update(
                    first_audio_ms=item.timings.get("first_audio_ms", float("nan")),
                    rtf=item.timings["rtf"],
                    audio_s=item.audio_seconds,
                )
            elif item is None:
                ended.release()

        return sink

    def run_all(sinks: list) -> None:  # noqa: ANN001
        for i, sink in enumerate(sinks):
            engine.submit(str(questions[i % len(questions)])).start(sink)
        for _ in sinks:
            ended.acquire()

    run_all([lambda item: ended.release() if item is None else None for _ in range(n)])  # compiling, first calls
    steps0 = engine.loop.stats()["steps"]
    run_all([sink_for(i) for i in range(n)])
    rtf = [r["rtf"] for r in results]
    return {
        "streams": n,
        "first_packet_ms": describe([r["first_audio_ms"] for r in results]),
        "rtf": describe(rtf),
        "max_rtf": max(rtf),
        "underrun_ms": describe([r.get("underrun_ms", 0.0) for r in results]),
        "batch_steps": engine.loop.stats()["steps"] - steps0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--config", default=None, help="random-weight model from this experiment config")
    p.add_argument("--vocoder", default=None)
    p.add_argument("--questions", nargs="*", default=[])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--flow-steps", type=int, default=None)
    p.add_argument("--flow-method", default=None, choices=FLOW_METHODS, help="default: the model's")
    p.add_argument(
        "--decode-dtype",
        default="auto",
        choices=DECODE_DTYPES,
        help="precision of the decode steps (auto: fp16 for batch-1 CPU steps)",
    )
    p.add_argument(
        "--unguided",
        action="store_true",
        help="spoken answers write their own text (no companion text reply decoding beside them)",
    )
    p.add_argument("--ratio-steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (the vocoder runs there too)")
    p.add_argument("--streams", type=int, default=0, help="also decode this many answers at once (decode loop)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine, what = build_engine(args)
    qs = questions(args)
    t0 = time.perf_counter()
    list(engine.respond(str(qs[0])))  # warm-up (allocator, lazy init; on a GPU, compiling the step)
    warmup_s = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeats):
        for q in qs:
            done = next(ev for ev in engine.respond(str(q)) if isinstance(ev, Done))
            t = done.timings
            runs.append({"question": q.name, "text": done.text, "audio_s": done.audio_seconds, **t})
    spoken = [r for r in runs if "first_audio_ms" in r]
    per_step = statistics.median(r["decode_ms"] / max(r["steps"], 1) for r in spoken) if spoken else None
    vocoder_ms_per_s = statistics.median(r["vocoder_ms"] / r["audio_s"] for r in spoken) if spoken else None
    result = {
        "model": what,
        "device": str(engine.device),
        "static_steps": engine.static,
        "compiled": engine.decoder(engine.gen, 1).compiled if engine.static else False,
        "warmup_s": warmup_s,
        "vocoder": engine.vocoder.name,
        "flow_method": args.flow_method or engine.model.cfg.flow.method,
        "flow_steps": args.flow_steps or engine.model.cfg.flow.steps,
        "decode_dtype": streaming_dtype(args.decode_dtype, engine.model),
        "guided_text": engine.gen.guided_text,
        "questions": len(qs),
        "answers_with_speech": f"{len(spoken)}/{len(runs)}",
        "first_packet_ms": describe([r["first_audio_ms"] for r in spoken]) if spoken else None,
        "first_text_ms": describe(texts)
        if (texts := [r["first_text_ms"] for r in runs if "first_text_ms" in r])
        else None,
        "rtf": describe([r["rtf"] for r in spoken]) if spoken else None,
        "prefill_ms": describe([r["prefill_ms"] for r in runs]),
        "decode_ms_per_step": per_step,
        "vocoder_ms_per_audio_s": vocoder_ms_per_s,
        **(ratio := step_ratio(engine, qs, args.ratio_steps, args.repeats)),
        # RTF of a long answer, where the prefill no longer counts: a speech step per mel group
        # plus the vocoder's share of the group's audio
        "steady_state_rtf": (ratio["speech_step_ms"] / group_ms(engine) + (vocoder_ms_per_s or 0) / 1000),
        **({"concurrent": concurrent_streams(engine, qs, args.streams)} if args.streams else {}),
        "targets": (
            {"first_packet_ms": 50, "rtf": 0.07, "speech_step_over_backbone_step": 1.3, "concurrent_32_each_rtf": 0.5}
            if engine.device.type == "cuda"
            else {"first_packet_ms": 150, "rtf": 0.2, "speech_step_over_backbone_step": 1.3}
        ),
        "answers": [{"question": r["question"], "text": r["text"]} for r in runs[: len(qs)]],
        "peak_rss_mb": peak_rss_mb(),
        "env": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
