"""First-packet latency, per-step costs and real-time factor of streaming speech answers.

    python benchmarks/latency.py --json                      # the shipped model
    python benchmarks/latency.py --checkpoint runs/x/step_N  # any checkpoint
    python benchmarks/latency.py --config configs/tiny.yaml  # random weights, speech forced (costs only)

First packet = from the end of the question (the call) to the first audio samples ready,
covering features, encoder, prefill, decode steps, flow head and vocoder. In the same run,
the bare backbone's incremental step is timed on the same context, interleaved with the full
speech step (text head + state head + flow head + feedback + backbone), for
`speech_step / backbone_step`. Targets (issue 5): ratio <= 1.3, first packet <= 150 ms,
RTF <= 0.2 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe, emit, environment, peak_rss_mb  # noqa: E402

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt  # noqa: E402
from flowomni.inference.engine import Done, Engine  # noqa: E402
from flowomni.inference.precision import DECODE_DTYPES, streaming_dtype  # noqa: E402
from flowomni.model.flow_head import FLOW_METHODS  # noqa: E402
from flowomni.model.layout import Task  # noqa: E402
from flowomni.serving.testing import force_speech_states  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build_engine(args: argparse.Namespace) -> tuple[Engine, str]:
    gen = GenerationConfig(max_steps=args.max_steps, seed=0, flow_steps=args.flow_steps, flow_method=args.flow_method,
                           decode_dtype=args.decode_dtype)
    if args.config:
        from flowomni.config import load_config
        from flowomni.model.flowomni import FlowOmni
        from flowomni.model.tokenizer import build_tokenizer
        from flowomni.training.experiment import ExperimentConfig

        cfg = load_config(ExperimentConfig, args.config).model
        torch.manual_seed(0)
        model = FlowOmni(cfg, build_tokenizer(cfg.tokenizer)).eval()
        force_speech_states(model)  # random weights never decide to speak
        return Engine(model, args.vocoder, gen=gen), f"random weights, {args.config}"
    engine = Engine.load(args.checkpoint, vocoder=args.vocoder, gen=gen)
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


def interleaved_steps(engine: Engine, question: Path, n: int) -> tuple[list[float], list[float], list[float]]:
    """Up to n (speech step, bare backbone step, flow head) times in seconds, interleaved at the
    same context length, for the steps of one answer that drew a mel group."""
    import time

    dec = Decoder(engine.model, [Prompt(Task.S2S, audio_mel=engine.question_mel(question))], engine.gen)
    while not bool(dec.started[0]) and not dec.done:  # get into the speaking part
        dec.step()
    ctx = torch.cat(dec.embeds, dim=1)
    m = dec.step_model  # the bare backbone runs in the dtype the speech steps run in
    with torch.no_grad():
        out = m.backbone(ctx, dec.mask, position_ids=dec.pos_all, use_cache=True)
    cache, pos = out.past_key_values, dec.pos_all[:, -1:] + 1
    mask = dec.mask.clone()
    x = (torch.randn(1, 1, ctx.shape[-1]) * ctx.float().std()).to(ctx.dtype)
    speech, bare, flow = [], [], []
    for _ in range(n):
        if dec.done:
            break
        f0 = dec.timings.flow_s
        t0 = time.perf_counter()
        outs = dec.step()
        speech.append(time.perf_counter() - t0)
        flow.append(dec.timings.flow_s - f0)
        mask = torch.cat([mask, mask[:, :1]], dim=1)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = m.backbone(x, mask, position_ids=pos, past_key_values=cache, use_cache=True)
        bare.append(time.perf_counter() - t0)
        cache, pos = out.past_key_values, pos + 1
        if outs[0].group is None:  # only steps that drew a mel group count as speech steps
            speech.pop(), bare.pop(), flow.pop()
    return speech, bare, flow


def step_ratio(engine: Engine, questions: list[Path], n: int, repeats: int) -> dict[str, float]:
    """Median speech step over median bare backbone step, pooled over every question x repeat
    (one short answer gives too few steps for a stable median on a shared machine)."""
    speech, bare, flow = [], [], []
    for _ in range(repeats):
        for q in questions:
            s, b, f = interleaved_steps(engine, q, n)
            speech += s
            bare += b
            flow += f
    if not speech:
        raise SystemExit("the model never spoke; cannot time speech steps")
    s, b = statistics.median(speech), statistics.median(bare)
    return {"speech_step_ms": s * 1000, "backbone_step_ms": b * 1000, "flow_ms_per_step": statistics.median(flow) * 1000,
            "speech_step_over_backbone_step": s / b, "steps_timed": len(speech)}


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
    p.add_argument("--decode-dtype", default="auto", choices=DECODE_DTYPES,
                   help="precision of the decode steps (auto: fp16 for batch-1 CPU steps)")
    p.add_argument("--ratio-steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine, what = build_engine(args)
    qs = questions(args)
    list(engine.respond(str(qs[0])))  # warm-up (allocator, lazy init)
    runs = []
    for _ in range(args.repeats):
        for q in qs:
            done = next(ev for ev in engine.respond(str(q)) if isinstance(ev, Done))
            t = done.timings
            runs.append({"question": q.name, "text": done.text, "audio_s": done.audio_seconds, **t})
    spoken = [r for r in runs if "first_audio_ms" in r]
    per = {k: statistics.median(r[k] / max(r["steps"], 1) for r in spoken) for k in ("backbone_ms", "flow_ms")} if spoken else {}
    vocoder_ms_per_s = statistics.median(r["vocoder_ms"] / r["audio_s"] for r in spoken) if spoken else None
    result = {
        "model": what,
        "vocoder": engine.vocoder.name,
        "flow_method": args.flow_method or engine.model.cfg.flow.method,
        "flow_steps": args.flow_steps or engine.model.cfg.flow.steps,
        "decode_dtype": streaming_dtype(args.decode_dtype, engine.model),
        "questions": len(qs),
        "answers_with_speech": f"{len(spoken)}/{len(runs)}",
        "first_packet_ms": describe([r["first_audio_ms"] for r in spoken]) if spoken else None,
        "first_text_ms": describe(texts) if (texts := [r["first_text_ms"] for r in runs if "first_text_ms" in r]) else None,
        "rtf": describe([r["rtf"] for r in spoken]) if spoken else None,
        "prefill_ms": describe([r["prefill_ms"] for r in runs]),
        "backbone_ms_per_step": per.get("backbone_ms"),
        "flow_ms_per_step": per.get("flow_ms"),
        "vocoder_ms_per_audio_s": vocoder_ms_per_s,
        **(ratio := step_ratio(engine, qs, args.ratio_steps, args.repeats)),
        # RTF of a long answer, where the prefill no longer counts: a speech step per mel group
        # plus the vocoder's share of the group's audio
        "steady_state_rtf": (ratio["speech_step_ms"] / group_ms(engine)
                             + (vocoder_ms_per_s or 0) / 1000),
        "targets": {"first_packet_ms": 150, "rtf": 0.2, "speech_step_over_backbone_step": 1.3},
        "answers": [{"question": r["question"], "text": r["text"]} for r in runs[: len(qs)]],
        "peak_rss_mb": peak_rss_mb(),
        "env": environment(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
