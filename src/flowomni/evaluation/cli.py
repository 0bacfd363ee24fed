"""`flowomni eval CHECKPOINT [CHECKPOINT ...]`: score models on a test split; one report compares them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from flowomni.config import add_gen_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="checkpoint folders (several: one comparison report)")
    p.add_argument("--names", nargs="*", default=None, help="a short name per checkpoint (default: folder names)")
    p.add_argument(
        "--split", default="test", help="test | valid | ... : <corpus>/<split>.jsonl of the model's training data"
    )
    p.add_argument("--manifest", default=None, help="evaluate this manifest instead of --split")
    p.add_argument(
        "--voices",
        nargs="*",
        default=None,
        metavar="NAME=MANIFEST",
        help="the same questions in other voices (default: the corpus's test_seen_voices, "
        "test_shifted_voices and test_unseen_voices manifests that exist)",
    )
    p.add_argument("--limit", type=int, default=100, help="items per condition (0: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--snr", type=float, nargs="*", default=None, help="noise sweep SNRs in dB (default 20 10 5 0)")
    p.add_argument("--speed", type=float, nargs="*", default=None, help="speed sweep factors (default 0.8 0.9 1.1 1.2)")
    p.add_argument(
        "--no-sweeps",
        action="store_true",
        help="clean spoken questions only (no noise, speed, unseen-voice or written-question conditions)",
    )
    p.add_argument("--no-written", action="store_true", help="leave out the written-question condition")
    p.add_argument("--latency-items", type=int, default=8)
    p.add_argument(
        "--text-only",
        action="store_true",
        help="answers in text only (speech in, text out; no ASR, "
        "no latency): measures understanding alone, e.g. of a model trained without speech replies",
    )
    p.add_argument(
        "--asr-beam",
        type=int,
        default=1,
        help="beam of the independent ASR (1: greedy, every report's so far; 5: faster-whisper's "
        "default, which mishears 6.5 instead of 8.1 %% of the recorded answers' words)",
    )
    p.add_argument(
        "--asr",
        default=None,
        help="the listener: another installed Whisper by name (whisper-base) or CTranslate2 folder "
        "instead of Whisper tiny.en, e.g. to check a gain is not one ASR's quirk",
    )
    p.add_argument("--vocoder", default=None, help="override every model's vocoder")
    p.add_argument(
        "--previous",
        nargs="*",
        default=[],
        metavar="NAME=RESULTS_JSON[#ENTRY]",
        help="a model scored by an earlier eval (its report's results.json) joins this report, "
        "paired item by item, without being run again; #ENTRY picks the file's model of that name "
        "(default: NAME) and shows it as NAME, e.g. stage9=reports/v8/results.json#shipped",
    )
    p.add_argument("--out", default=None, help="report folder (default reports/eval_<names>)")
    from flowomni.inference.precision import DECODE_DTYPES

    p.add_argument(
        "--decode-dtype",
        default="auto",
        choices=DECODE_DTYPES,
        help="precision of the decode steps; batches get the one a streamed answer gets "
        "(auto: fp16 on CPU), so the scores are those of `flowomni chat`",
    )
    add_gen_option(
        p,
        "generation knobs for every model, as `flowomni chat --set` takes them, e.g. "
        "--gen guided_text=false (a spoken answer writes its own text, not its text reply's)",
    )
    p.add_argument("--json", action="store_true", help="print the results JSON to stdout")


def default_manifest(checkpoint: Path, split: str) -> Path:
    """<corpus>/<split>.jsonl next to the manifests the model was trained on."""
    import yaml

    cfg = yaml.safe_load((checkpoint / "config.yaml").read_text()) or {}
    train = (cfg.get("data") or {}).get("train_manifest")
    if not train:
        raise ValueError(f"{checkpoint}: its config names no training data; pass --manifest")
    return Path(train).parent / f"{split}.jsonl"


VOICE_SETS = {
    "training voices": "test_seen_voices.jsonl",
    "shifted voices": "test_shifted_voices.jsonl",
    "unseen voices": "test_unseen_voices.jsonl",
}


def voice_sets(given: list[str] | None, corpus: Path) -> dict[str, str]:
    """NAME=MANIFEST pairs, or the corpus's voice-set manifests that exist."""
    if given is None:
        return {name: str(corpus / f) for name, f in VOICE_SETS.items() if (corpus / f).is_file()}
    out = {}
    for pair in given:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--voices takes NAME=MANIFEST, got {pair!r}")
        out[name] = path
    return out


def without_rows(x: Any) -> Any:
    """The results without their per-item rows (the summary --json prints)."""
    if isinstance(x, dict):
        return {k: without_rows(v) for k, v in x.items() if k != "rows"}
    if isinstance(x, list):
        return [without_rows(v) for v in x]
    return x


def previous_results(pairs: list[str], taken: list[str]) -> dict[str, dict[str, Any]]:
    """NAME=RESULTS_JSON[#ENTRY] -> the results of the file's model ENTRY (default NAME) from an
    earlier eval, under NAME (ValueError if absent). A file often holds several models (one run
    and the --previous it was paired with), and the name that fits this report may differ."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, target = pair.partition("=")
        path, _, entry = target.partition("#")
        if not sep or not name or not path:
            raise ValueError(f"--previous takes NAME=RESULTS_JSON[#ENTRY], got {pair!r}")
        entry = entry or name
        if name in taken or name in out:
            raise ValueError(f"--previous: the name {name!r} is already in this report")
        try:
            earlier = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--previous: cannot read {path}: {e}") from None
        if not isinstance(earlier, dict) or not isinstance(earlier.get(entry), dict) or "clean" not in earlier[entry]:
            names = ", ".join(earlier) if isinstance(earlier, dict) else "none"
            raise ValueError(f"--previous: {path} has no results of a model {entry!r} (it has: {names})")
        out[name] = {**earlier[entry], "from_results": path if entry == name else f"{path}#{entry}"}
    return out


def run(args: argparse.Namespace) -> int:
    from flowomni.checkpoint import CheckpointError
    from flowomni.config import apply_overrides, from_dict
    from flowomni.evaluation.evaluate import EvalConfig, Evaluator, run_all
    from flowomni.evaluation.report import write_report
    from flowomni.inference.decoder import GenerationConfig
    from flowomni.inference.engine import Engine
    from flowomni.inference.precision import streaming_dtype

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ckpts = [Path(c) for c in args.checkpoints]
    names = args.names or [c.name if not c.name.startswith("step_") else c.parent.name for c in ckpts]
    if len(names) != len(ckpts):
        print("flowomni eval: give one --names entry per checkpoint", file=sys.stderr)
        return 2
    try:
        previous = previous_results(args.previous, names)
    except ValueError as e:
        print(f"flowomni eval: {e}", file=sys.stderr)
        return 2
    evaluators, meta = {}, {}
    for name, ckpt in zip(names, ckpts):
        try:
            manifest = Path(args.manifest) if args.manifest else default_manifest(ckpt, args.split)
            cfg = EvalConfig(
                manifest=str(manifest),
                limit=args.limit,
                batch_size=args.batch_size,
                latency_items=args.latency_items,
                asr_beam=args.asr_beam,
                asr_model=args.asr,
                voice_sets={} if args.no_sweeps else voice_sets(args.voices, manifest.parent),
            )
            cfg.text_questions = not (args.no_sweeps or args.no_written)
            cfg.speak = not args.text_only
            if args.snr is not None or args.no_sweeps:
                cfg.snrs = [] if args.no_sweeps else args.snr
            if args.speed is not None or args.no_sweeps:
                cfg.speeds = [] if args.no_sweeps else args.speed
            engine = Engine.load(ckpt, vocoder=args.vocoder)
            gen = dataclasses.replace(engine.gen, decode_dtype=streaming_dtype(args.decode_dtype, engine.model))
            engine.gen = from_dict(
                GenerationConfig, apply_overrides(dataclasses.asdict(gen), args.gen_overrides), "generation"
            )
            evaluators[name] = Evaluator(engine, cfg)
            meta[name] = {
                "checkpoint": str(ckpt),
                "vocoder": engine.vocoder.name,
                "decode_dtype": engine.gen.decode_dtype,
                "guided_text": engine.gen.guided_text,
            }
        except (CheckpointError, FileNotFoundError, ValueError) as e:  # (ConfigError is a ValueError)
            print(f"flowomni eval: {ckpt}: {e}", file=sys.stderr)
            return 2
    try:
        results = {name: {**meta[name], **res} for name, res in run_all(evaluators).items()}
    except (FileNotFoundError, ValueError) as e:
        print(f"flowomni eval: {e}", file=sys.stderr)
        return 2
    examples = {name: ev.examples for name, ev in evaluators.items()}
    for name in names:
        c = results[name]["clean"]
        print(
            f"{name}: accuracy {c.get('accuracy', 0):.3f}, speech WER vs reference "
            f"{c.get('speech_wer_vs_reference')}, latency {results[name]['latency']}",
            file=sys.stderr,
        )
    results.update(previous)  # after the models run here: the first of those is the pairs' reference
    out = Path(args.out or f"reports/eval_{'_vs_'.join(names)}")
    command = "flowomni eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    path = write_report(results, examples, out, command)
    print(f"report: {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({n: without_rows(r) for n, r in results.items()}, default=str))
    return 0
