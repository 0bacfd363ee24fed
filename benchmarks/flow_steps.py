"""Quality vs speed of the flow head's ODE sampler: how many steps does a model need?

For each (method, steps, temperature, guidance scale) setting, on the same test questions and seeds:
- teacher-forced mel error: groups drawn for the true answer's hidden states vs the true
  groups (mean absolute log-mel difference, lower is better);
- free-running answers: spoken answers transcribed by the independent ASR, WER against the
  model's own text (intelligibility of what it says);
- cost: milliseconds per group drawn at batch 1 (the streaming case), in the dtype batch-1
  decode steps run in (`--decode-dtype`, see inference/precision.py).
The answers are decoded in that dtype too. `student:1` measures a one-step student
(`flowomni distill-flow`) against its teacher's setting.
The recommendation is the cheapest setting whose WER is within `--tolerance` of the best.
The temperature scales the ODE's starting noise: with a mean prior (`model.flow.prior: mean`)
temperature 0 starts every group on the regressed mean, so it is worth measuring with the steps.

    python benchmarks/flow_steps.py --checkpoint models/flowomni-tiny --json
    python benchmarks/flow_steps.py --checkpoint C --settings euler:1 midpoint:4 --temperatures 1 0 \
        --cfg-scales 1 2 --json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowomni.audio.io import load_audio  # noqa: E402
from flowomni.data.manifest import read_manifest  # noqa: E402
from flowomni.evaluation.asr import Transcriber  # noqa: E402
from flowomni.evaluation.text import normalize, wer  # noqa: E402
from flowomni.inference.decoder import GenerationConfig  # noqa: E402
from flowomni.inference.engine import Engine  # noqa: E402
from flowomni.inference.precision import DECODE_DTYPES, step_model, streaming_dtype  # noqa: E402
from flowomni.model.flow_head import FLOW_METHODS  # noqa: E402
from flowomni.training.dataset import teacher_forced_examples  # noqa: E402

from common import emit, environment  # noqa: E402

SETTINGS = [
    ("euler", 1),
    ("euler", 2),
    ("euler", 4),
    ("midpoint", 2),
    ("euler", 8),
    ("midpoint", 4),
    ("midpoint", 8),
    ("midpoint", 16),
]


def teacher_forced_error(
    engine: Engine, items: list, method: str, steps: int, temperature: float, cfg_scale: float
) -> float:
    """Mean |sampled - true| log-mel over the answers' groups, with the true context."""
    from flowomni.model.layout import Task

    m = engine.model
    ds, collate = teacher_forced_examples(m, items, Task.S2S.value)
    errs = []
    for i in range(len(ds)):
        batch = collate([ds[i]])
        pred, target = m.predict_groups(
            batch,
            steps=steps,
            method=method,
            temperature=temperature,
            cfg_scale=cfg_scale,
            generator=torch.Generator().manual_seed(i),
        )[0]
        errs.append(float((pred - target).abs().mean()))
    return sum(errs) / len(errs)


def parse_setting(text: str) -> tuple[str, int]:
    """ "euler:4" -> ("euler", 4), with an error that names the bad part."""
    method, _, steps = text.partition(":")
    if method not in FLOW_METHODS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected METHOD:STEPS with METHOD in {FLOW_METHODS} and STEPS >= 1"
        )
    return method, int(steps)


def group_cost_ms(engine: Engine, method: str, steps: int, cfg_scale: float, dtype: str, repeats: int = 50) -> float:
    """Milliseconds per group at batch 1 with the model's copy in `dtype` (a torch dtype name);
    guidance (cfg_scale != 1) doubles the rows."""
    m = step_model(engine.model, getattr(torch, dtype))
    h = torch.randn(1, m.state_emb.embedding_dim, dtype=getattr(torch, dtype))
    for _ in range(5):
        m.speech.flow.sample(h, steps=steps, method=method, cfg_scale=cfg_scale)
    t0 = time.perf_counter()
    for _ in range(repeats):
        m.speech.flow.sample(h, steps=steps, method=method, cfg_scale=cfg_scale)
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--manifest", default="data/spoken_qa/test.jsonl")
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--tolerance", type=float, default=0.02, help="WER allowed above the best setting's")
    p.add_argument("--vocoder", default=None)
    p.add_argument(
        "--settings",
        nargs="*",
        type=parse_setting,
        default=SETTINGS,
        metavar="METHOD:STEPS",
        help="ODE settings to measure (default: " + " ".join(f"{m}:{n}" for m, n in SETTINGS) + ")",
    )
    p.add_argument(
        "--temperatures",
        nargs="*",
        type=float,
        default=[None],
        help="flow temperatures to measure with every setting (default: the model's)",
    )
    p.add_argument(
        "--cfg-scales",
        nargs="*",
        type=float,
        default=[None],
        help="classifier-free guidance scales to measure with every setting (default: the model's)",
    )
    p.add_argument(
        "--decode-dtype",
        default="auto",
        choices=DECODE_DTYPES,
        help="precision of the decode steps (auto: fp16 for batch-1 CPU steps, as in chat)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    engine = Engine.load(args.checkpoint, vocoder=args.vocoder)
    items, _ = read_manifest(args.manifest)
    items = items[: args.items]
    asr = Transcriber()
    sr = engine.model.cfg.input_mel.sample_rate
    questions = [{"audio": load_audio(i.question_audio, sr), "sample_rate": sr} for i in items]
    rows = []
    flow_cfg = engine.model.cfg.flow
    # answers are decoded as a batch: give it the dtype a single streamed answer would get
    batch_dtype = streaming_dtype(args.decode_dtype, engine.model)
    # every cost first: once the ASR has run in a process, torch decodes slower for the rest of
    # it (flowomni.evaluation.evaluate.run_all); the cost depends on the scale only through
    # guided or not
    scales = sorted({flow_cfg.cfg_scale if c is None else c for c in args.cfg_scales})
    by_guided = {s != 1.0: s for s in scales}
    costs = {
        (method, steps, guided): group_cost_ms(engine, method, steps, scale, batch_dtype)
        for method, steps in args.settings
        for guided, scale in by_guided.items()
    }
    for method, steps in args.settings:
        for temperature, cfg_scale in itertools.product(args.temperatures, args.cfg_scales):
            temperature = flow_cfg.temperature if temperature is None else temperature
            scale = flow_cfg.cfg_scale if cfg_scale is None else cfg_scale
            guided = scale != 1.0
            gen = GenerationConfig(
                seed=0,
                flow_steps=steps,
                flow_method=method,
                flow_temperature=temperature,
                cfg_scale=scale,
                decode_dtype=batch_dtype,
            )
            answers = engine.answer_batch(questions, gen=gen)
            said = [a for a in answers if a.audio is not None and normalize(a.text)]
            heard = [asr.transcribe(a.audio, a.sample_rate) for a in said]
            rows.append(
                {
                    "method": method,
                    "steps": steps,
                    "temperature": temperature,
                    "cfg_scale": scale,
                    "evals_per_group": steps * (2 if method == "midpoint" else 1) * (2 if guided else 1),
                    "ms_per_group": costs[method, steps, guided],
                    "teacher_forced_mel_l1": teacher_forced_error(engine, items, method, steps, temperature, scale),
                    "speech_wer_vs_own_text": wer([a.text for a in said], heard) if said else None,
                    "spoken_answers": len(said),
                }
            )
            print(rows[-1], file=sys.stderr)
    scored = [r for r in rows if r["speech_wer_vs_own_text"] is not None]
    best = min(r["speech_wer_vs_own_text"] for r in scored) if scored else None
    ok = [r for r in scored if r["speech_wer_vs_own_text"] <= best + args.tolerance]
    pick = min(ok, key=lambda r: (r["ms_per_group"], r["speech_wer_vs_own_text"])) if ok else None
    emit(
        {
            "checkpoint": str(args.checkpoint or "shipped model"),
            "items": len(items),
            "vocoder": engine.vocoder.name,
            "settings": rows,
            "recommended": pick and {k: pick[k] for k in ("method", "steps", "temperature", "cfg_scale")},
            "tolerance": args.tolerance,
            "decode_dtype": batch_dtype,
            "env": environment(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
